"""Grid-cell scaffold memory: MESH and Vector-HaSH (Sharma, Chandra & Fiete 2022; Chandra et al. 2025).

A memory whose *keys are fixed* and whose content is attached to them by
heteroassociation. Three layers, in the row-vector convention of :mod:`kvmem.memory`:

- **grid** g (entorhinal grid cells): M modules with pairwise coprime periods
  lambda_1 ... lambda_M. In 1-D, module i is a one-hot vector of lambda_i units that codes the
  phase x mod lambda_i of a position x; in 2-D it is one-hot over lambda_i^2 units coding
  (x mod lambda_i, y mod lambda_i). By the Chinese remainder theorem the L = prod lambda_i
  positions of an axis (L^dim positions in all) have distinct grid states, although the
  layer has only N_g = sum lambda_i^dim units.
- **hippocampus** h (place cells): a fixed random projection of the grid state through a
  nonlinearity, h = f(g W_hg^T) with W_hg ~ N(0, 1) of shape [N_h, N_g] and
  f(x) = relu(x - theta) (Vector-HaSH) or sign(x) (MESH).
- **sensory** s (neocortex): the content, e.g. +-1 patterns of D_s entries.

The grid and hippocampal layers form the *scaffold*: the return weights W_gh (hippocampus to
grid, [N_g, N_h]) are fitted once over all L^dim scaffold states, by the pseudo-inverse
(W_gh^T = H^+ G, G and H the grid and hippocampal states as rows) or Hebbian
(W_gh = G^T H / L^dim), and then never change. A module-wise winner-take-all (the grid
modules' attractor dynamics) cleans the grid state up:

    g <- WTA_module(h W_gh^T),   h <- f(g W_hg^T)                          (scaffold loop)

and every scaffold state is a fixed point of this loop (for enough hippocampal cells;
tested). Content is stored by heteroassociation between hippocampus and sensory layer, in
both directions, with one of three rules:

- ``"hebbian"``: W_sh += sum_mu s_mu^T h_mu / N_h and W_hs += sum_mu h_mu^T s_mu / D_s;
- ``"pseudo_inverse"``: W_sh = (H^+ S)^T and W_hs = (S^+ H)^T over every stored pair
  (H, S: the stored hippocampal states and sensory patterns as rows), recomputed each write;
- ``"online_pseudo_inverse"``: the same matrices built one pair at a time by Greville's
  (1960) recursion, which keeps only two D x D matrices per direction, never the patterns
  (see :func:`online_pinv_step`; equal to ``"pseudo_inverse"`` up to rounding, tested).

Recall from a (noisy, partial) sensory cue runs sensory -> hippocampus -> grid (clean-up) ->
hippocampus -> sensory:

    h~ = r(s W_hs^T),   g = WTA(h~ W_gh^T),   h = f(g W_hg^T),   s^ = o(h W_sh^T)

with r = relu (or sign) and o = identity (or sign, for +-1 content). Because the grid code is
error-correcting and the keys never move, storing more patterns only blurs the content
(the sensory readout), it never destroys the addresses: there is no memory cliff.

Sequences use path integration: a velocity v shifts every module's phase cyclically,
g_t+1 = P_v g_t (a permutation of each module; :func:`path_integrate`), so items written
at consecutive positions of a path are recalled by stepping the grid state from the start
position, which is itself found from a cue of the first item.

In the key-value reading of the review (Gershman, Fiete & Irie 2025, Box 1) the cleaned-up
grid state is the query, the rows of W_hg are fixed random keys, the hippocampal activity is
the attention alpha = f(K q) and W_sh holds the values: :meth:`ScaffoldMemory.read` reads the
value stored at a scaffold address (the key space is the scaffold) and
:meth:`ScaffoldMemory.recall` is the content-addressable read.

Example:
    >>> import torch
    >>> from kvmem.bio.scaffold import ScaffoldMemory
    >>> mem = ScaffoldMemory(periods=(3, 4, 5), dim=1, num_hidden=120, output="sign")
    >>> gen = torch.Generator().manual_seed(0)
    >>> s = torch.randint(0, 2, (20, 100), generator=gen).float() * 2 - 1
    >>> keys = mem.keys_at(torch.arange(20)[:, None])      # positions 0..19 of the scaffold
    >>> mem.write(keys, s)
    >>> torch.equal(mem.read(keys), s)                     # key-value read at the addresses
    True
    >>> cue = s.clone(); cue[:, :10] *= -1                 # 10% of every cue flipped
    >>> torch.equal(mem.recall(cue), s)                    # content-addressable recall
    True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .._checks import as_tensor, check_int, check_positive, make_generator
from ..memory.base import Memory, ReadResult, register_memory

__all__ = [
    "ScaffoldMemory",
    "ScaffoldRecall",
    "ScaffoldSequence",
    "grid_code",
    "grid_position",
    "grid_states",
    "module_wta",
    "num_grid_cells",
    "num_positions",
    "online_pinv",
    "online_pinv_init",
    "online_pinv_step",
    "path_integrate",
    "scaffold_path",
]

NONLINEARITIES = ("relu", "sign")
RETURN_RULES = ("pseudo_inverse", "hebbian")
WRITE_RULES = ("hebbian", "pseudo_inverse", "online_pseudo_inverse")
OUTPUTS = ("identity", "sign")
#: The return weights are fitted over every scaffold state; beyond this many, refuse.
MAX_STATES = 1_000_000
#: Relative residual below which Greville's recursion treats an input as linearly dependent.
PINV_TOL = 1e-8


# -- the grid code ---------------------------------------------------------------------


def _check_dim(dim: Any) -> int:
    if isinstance(dim, bool) or not isinstance(dim, int):
        raise TypeError(f"dim: expected 1 or 2 (an int), got {type(dim).__name__}")
    if dim not in (1, 2):
        raise ValueError(f"dim: expected 1 or 2 (1-D or 2-D grid modules), got {dim}")
    return dim


def _check_periods(periods: Any) -> tuple[int, ...]:
    """Pairwise coprime integer periods >= 2, as a tuple."""
    if isinstance(periods, torch.Tensor):
        periods = periods.tolist()
    if not isinstance(periods, (list, tuple)) or len(periods) == 0:
        raise TypeError(f"periods: expected a non-empty list or tuple of integers, got {periods!r}")
    out = []
    for p in periods:
        if isinstance(p, bool) or not isinstance(p, int):
            raise TypeError(f"periods: expected integers, got {periods!r}")
        if p < 2:
            raise ValueError(f"periods: every period must be >= 2, got {periods!r}")
        out.append(int(p))
    for i in range(len(out)):
        for j in range(i + 1, len(out)):
            if math.gcd(out[i], out[j]) != 1:
                raise ValueError(
                    f"periods: expected pairwise coprime periods (gcd 1), got {tuple(out)}: "
                    f"gcd({out[i]}, {out[j]}) = {math.gcd(out[i], out[j])}"
                )
    return tuple(out)


def num_positions(periods: Any, dim: int = 1) -> int:
    """How many distinct scaffold states the modules code: (prod lambda_i)^dim.

    Example:
        >>> num_positions((3, 4, 5)), num_positions((3, 4, 5), dim=2)
        (60, 3600)
    """
    return math.prod(_check_periods(periods)) ** _check_dim(dim)


def num_grid_cells(periods: Any, dim: int = 1) -> int:
    """N_g = sum lambda_i^dim, the size of the grid layer.

    Example:
        >>> num_grid_cells((3, 4, 5)), num_grid_cells((3, 4, 5), dim=2)
        (12, 50)
    """
    dim = _check_dim(dim)
    return sum(p**dim for p in _check_periods(periods))


def _positions(positions: Any, dim: int, name: str = "positions") -> torch.Tensor:
    """Integer positions ``[..., dim]`` as a long tensor."""
    if isinstance(positions, (list, tuple, int)) and not isinstance(positions, bool):
        positions = torch.as_tensor(positions)
    if isinstance(positions, np.ndarray):
        positions = torch.from_numpy(positions)
    if not isinstance(positions, torch.Tensor):
        raise TypeError(f"{name}: expected integer positions (tensor, array or list), got {type(positions).__name__}")
    if positions.is_floating_point() or positions.is_complex() or positions.dtype == torch.bool:
        raise TypeError(f"{name}: expected an integer tensor, got dtype {positions.dtype}")
    if positions.dim() == 0 or positions.shape[-1] != dim:
        raise ValueError(f"{name}: expected shape [..., {dim}] (one coordinate per axis), got {tuple(positions.shape)}")
    return positions.long()


def _module_phases(periods: tuple[int, ...], dim: int, device: torch.device) -> list[tuple[torch.Tensor, ...]]:
    """Per module, the phase of each of its units along each axis (unit j <-> phases)."""
    out = []
    for p in periods:
        j = torch.arange(p**dim, device=device)
        out.append((j,) if dim == 1 else (torch.div(j, p, rounding_mode="floor"), j % p))
    return out


def grid_code(positions: Any, periods: Any, dim: int = 1, *, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Grid states of integer positions: one-hot phase per module, modules concatenated.

    Module i (period lambda) has lambda^dim units; for position x (1-D) unit x mod lambda is
    on, for (x, y) (2-D) unit (x mod lambda) lambda + (y mod lambda). Negative positions
    wrap around.

    Args:
        positions: integers ``[..., dim]``.
        periods: pairwise coprime module periods.
        dim: 1 or 2.
        dtype: floating dtype of the result (default: torch's default).

    Returns:
        ``[..., N_g]`` with exactly one 1 per module, on the positions' device.

    Example:
        >>> grid_code([[7]], (3, 4)).tolist()                     # 7 mod 3 = 1, 7 mod 4 = 3
        [[0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0]]
    """
    periods = _check_periods(periods)
    dim = _check_dim(dim)
    pos = _positions(positions, dim)
    dtype = dtype or torch.get_default_dtype()
    blocks = []
    for p in periods:
        phase = pos % p
        idx = phase[..., 0] if dim == 1 else phase[..., 0] * p + phase[..., 1]
        blocks.append(torch.nn.functional.one_hot(idx, p**dim).to(dtype))
    return torch.cat(blocks, dim=-1)


def grid_states(periods: Any, dim: int = 1, *, dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Every scaffold state and its position, positions in row-major order.

    Returns:
        ``(states [L^dim, N_g], positions [L^dim, dim])`` with L = prod periods.

    Example:
        >>> states, pos = grid_states((2, 3))
        >>> states.shape, pos[:3, 0].tolist()
        (torch.Size([6, 5]), [0, 1, 2])
    """
    periods = _check_periods(periods)
    dim = _check_dim(dim)
    n = num_positions(periods, dim)
    if n > MAX_STATES:
        raise ValueError(f"periods: {n} scaffold states (more than {MAX_STATES}); choose smaller periods or dim=1")
    axis = torch.arange(math.prod(periods))
    pos = axis[:, None] if dim == 1 else torch.cartesian_prod(axis, axis)
    return grid_code(pos, periods, dim, dtype=dtype), pos


def _check_grid(g: Any, periods: tuple[int, ...], dim: int, name: str) -> torch.Tensor:
    g = as_tensor(g, name)
    n_g = sum(p**dim for p in periods)
    if g.shape[-1] != n_g:
        raise ValueError(f"{name}: expected shape [..., {n_g}] (N_g = sum of period^dim), got {tuple(g.shape)}")
    return g


def module_wta(g: Any, periods: Any, dim: int = 1) -> torch.Tensor:
    """Module-wise winner-take-all: one-hot at the largest unit of each module.

    Ties go to the module's lowest-index unit (deterministic).

    Args:
        g: grid activity ``[..., N_g]``.
        periods, dim: the modules.

    Returns:
        ``[..., N_g]`` with one 1 per module.

    Example:
        >>> module_wta(torch.tensor([0.2, 0.9, 0.1, 0.0, 0.3, 0.3, 0.0]), (3, 4)).tolist()
        [0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0]
    """
    periods = _check_periods(periods)
    dim = _check_dim(dim)
    g = _check_grid(g, periods, dim, "g")
    out = torch.zeros_like(g)
    start = 0
    for p in periods:
        n = p**dim
        # argmax returns the first maximal index, which is the tie rule.
        win = g[..., start : start + n].argmax(dim=-1, keepdim=True)
        out[..., start : start + n].scatter_(-1, win, 1.0)
        start += n
    return out


def grid_position(g: Any, periods: Any, dim: int = 1) -> torch.Tensor:
    """Decode grid activity to a position by the Chinese remainder theorem.

    Each module's winning unit (module-wise WTA) gives the phases; the position along each
    axis is the unique x in [0, L) with x = phase_i (mod lambda_i) for every module.

    Args:
        g: grid activity ``[..., N_g]``.

    Returns:
        long ``[..., dim]`` in [0, L).

    Example:
        >>> grid_position(grid_code([[7], [59]], (3, 4, 5)), (3, 4, 5)).tolist()
        [[7], [59]]
    """
    periods = _check_periods(periods)
    dim = _check_dim(dim)
    g = _check_grid(g, periods, dim, "g")
    big = math.prod(periods)
    coeffs = [(big // p) * pow(big // p, -1, p) for p in periods]
    out = torch.zeros(*g.shape[:-1], dim, dtype=torch.long, device=g.device)
    start = 0
    for p, c in zip(periods, coeffs):
        n = p**dim
        win = g[..., start : start + n].argmax(dim=-1)
        phases = (win,) if dim == 1 else (torch.div(win, p, rounding_mode="floor"), win % p)
        for axis, ph in enumerate(phases):
            out[..., axis] = (out[..., axis] + ph * c) % big
        start += n
    return out


def path_integrate(g: Any, velocity: Any, periods: Any, dim: int = 1) -> torch.Tensor:
    """Shift every module's phase by a velocity: a module-wise cyclic permutation.

    Unit (a) of a 1-D module of period lambda takes the activity of unit (a - v) mod lambda;
    in 2-D unit (a, b) takes that of ((a - v_x) mod lambda, (b - v_y) mod lambda). So
    ``path_integrate(grid_code(x), v) == grid_code(x + v)``, and any activity vector (not
    only a scaffold state) is permuted exactly.

    Args:
        g: grid activity ``[..., N_g]``.
        velocity: integer displacement ``[..., dim]`` (an int for dim=1 or a tuple is also
            accepted); leading dimensions broadcast with ``g``'s.

    Returns:
        ``[*broadcast, N_g]``.

    Example:
        >>> g = grid_code([[58]], (3, 4, 5))
        >>> torch.equal(path_integrate(g, 5, (3, 4, 5)), grid_code([[63]], (3, 4, 5)))
        True
    """
    periods = _check_periods(periods)
    dim = _check_dim(dim)
    g = _check_grid(g, periods, dim, "g")
    if isinstance(velocity, int) and not isinstance(velocity, bool):
        velocity = [velocity] * dim
    v = _positions(velocity, dim, "velocity").to(g.device)
    return _shift(g, v, periods, dim)


def _shift(g: torch.Tensor, v: torch.Tensor, periods: tuple[int, ...], dim: int) -> torch.Tensor:
    """:func:`path_integrate` on checked input (the loops of sequence replay call this)."""
    lead = torch.Size(np.broadcast_shapes(tuple(g.shape[:-1]), tuple(v.shape[:-1])))
    v = v.expand(*lead, dim)
    src = []
    start = 0
    for p, phases in zip(periods, _module_phases(periods, dim, g.device)):
        if dim == 1:
            idx = (phases[0] - v[..., 0:1]) % p
        else:
            idx = ((phases[0] - v[..., 0:1]) % p) * p + (phases[1] - v[..., 1:2]) % p
        src.append(idx + start)
        start += p**dim
    return torch.gather(g.expand(*lead, g.shape[-1]), -1, torch.cat(src, dim=-1))


def scaffold_path(periods: Any, dim: int = 1, length: int = 2, start: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A path through ``length`` distinct scaffold positions and its velocities.

    1-D: x_t = x_0 + t. 2-D: a boustrophedon ("lawnmower") path: along the second axis for L
    steps, one step along the first axis, back along the second, and so on, so that
    consecutive positions are neighbours and none repeats until all L^2 are visited.

    Args:
        length: number of positions, 1 <= length <= L^dim.
        start: the first position ``[dim]`` (default the origin).

    Returns:
        ``(positions [length, dim] taken mod L, velocities [length - 1, dim])``.

    Example:
        >>> pos, vel = scaffold_path((2, 3), dim=2, length=8)
        >>> pos.tolist()
        [[0, 0], [0, 1], [0, 2], [0, 3], [0, 4], [0, 5], [1, 5], [1, 4]]
        >>> vel[5].tolist()
        [1, 0]
    """
    periods = _check_periods(periods)
    dim = _check_dim(dim)
    total = num_positions(periods, dim)
    length = check_int(length, "length", minimum=1)
    if length > total:
        raise ValueError(f"length: a path visits at most {total} distinct positions (L^dim), got {length}")
    big = math.prod(periods)
    origin = torch.zeros(dim, dtype=torch.long) if start is None else _positions(start, dim, "start").reshape(dim)
    t = torch.arange(length)
    if dim == 1:
        rel = t[:, None]
    else:
        row = torch.div(t, big, rounding_mode="floor")
        col = torch.where(row % 2 == 0, t % big, big - 1 - t % big)
        rel = torch.stack([row, col], dim=-1)
    velocities = rel[1:] - rel[:-1]
    return (rel + origin) % big, velocities


# -- pseudo-inverses ---------------------------------------------------------------------


def _pinv(a: torch.Tensor) -> torch.Tensor:
    """Moore-Penrose pseudo-inverse ``[..., n, m] -> [..., m, n]`` in float64.

    Through the smaller Gram matrix and its (eigendecomposition-based) pseudo-inverse,
    A^+ = (A^T A)^+ A^T or A^T (A A^T)^+, which is exact algebra and about twice as fast as
    an SVD of A for the batches of tall or wide matrices written here; the squared condition
    number stays far inside float64 for these matrices (checked against torch.linalg.pinv).
    """
    a = a.double()
    if a.shape[-2] >= a.shape[-1]:
        return torch.linalg.pinv(a.mT @ a, hermitian=True) @ a.mT
    return a.mT @ torch.linalg.pinv(a @ a.mT, hermitian=True)


# -- online pseudo-inverse (Greville 1960) ---------------------------------------------


def online_pinv_init(
    in_dim: int,
    out_dim: int,
    batch_shape: tuple[int, ...] = (),
    *,
    dtype: torch.dtype = torch.float64,
    device: Any = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The empty state of :func:`online_pinv_step`: (W = 0, Gram pinv = 0, residual projector = I).

    Returns:
        ``(W [*batch, out_dim, in_dim], G [*batch, in_dim, in_dim], R [*batch, in_dim, in_dim])``.
    """
    in_dim = check_int(in_dim, "in_dim")
    out_dim = check_int(out_dim, "out_dim")
    w = torch.zeros(*batch_shape, out_dim, in_dim, dtype=dtype, device=device)
    gram = torch.zeros(*batch_shape, in_dim, in_dim, dtype=dtype, device=device)
    resid = torch.eye(in_dim, dtype=dtype, device=device).expand(*batch_shape, in_dim, in_dim).clone()
    return w, gram, resid


def online_pinv_step(
    w: torch.Tensor, gram: torch.Tensor, resid: torch.Tensor, a: torch.Tensor, y: torch.Tensor, tol: float = PINV_TOL
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Add one pair (input a, target y) to the least-squares map W = Y A^+ (Greville 1960).

    With A = [a_1 ... a_k] (inputs as columns), the state is W = Y A^+, G = (A A^T)^+ and
    R = I - A A^+ (the projector onto the complement of span A). For a new input a:

        c = R a,   b = c^T / (c^T c)                 if |c| > tol |a|   (a is new)
                   b = (G a)^T / (1 + a^T G a)        otherwise          (a in span A)
        W <- W + (y - W a) b
        G <- G - (G a) b - b^T (G a)^T + (1 + a^T G a) b^T b
        R <- R - c c^T / (c^T c)                      (new inputs only)

    which is Greville's column-by-column pseudo-inverse update written for the weights
    alone: the stored pairs are never needed again. The cost per pair is O(D^2).

    Args:
        w: ``[..., Dy, Da]``; gram, resid: ``[..., Da, Da]`` (from :func:`online_pinv_init`).
        a: inputs ``[..., Da]``; y: targets ``[..., Dy]`` (one pair per batch entry).
        tol: relative residual |c| / |a| below which a counts as linearly dependent.

    Returns:
        the new ``(w, gram, resid)``.
    """
    ga = (gram @ a.unsqueeze(-1)).squeeze(-1)
    c = (resid @ a.unsqueeze(-1)).squeeze(-1)
    cc = (c * c).sum(-1, keepdim=True)
    aa = (a * a).sum(-1, keepdim=True)
    aga = (a * ga).sum(-1, keepdim=True)
    new = cc > (tol**2) * aa
    b = torch.where(new, c / torch.where(new, cc, torch.ones_like(cc)), ga / (1.0 + aga))
    err = y - (w @ a.unsqueeze(-1)).squeeze(-1)
    w = w + err.unsqueeze(-1) * b.unsqueeze(-2)
    cross = ga.unsqueeze(-1) * b.unsqueeze(-2)
    gram = gram - cross - cross.transpose(-1, -2) + (1.0 + aga).unsqueeze(-1) * (b.unsqueeze(-1) * b.unsqueeze(-2))
    proj = c.unsqueeze(-1) * c.unsqueeze(-2) / torch.where(new, cc, torch.ones_like(cc)).unsqueeze(-1)
    resid = resid - torch.where(new.unsqueeze(-1), proj, torch.zeros_like(proj))
    # Symmetrise: rounding otherwise lets the two symmetric matrices drift apart from their transposes.
    gram = 0.5 * (gram + gram.transpose(-1, -2))
    resid = 0.5 * (resid + resid.transpose(-1, -2))
    return w, gram, resid


def online_pinv(inputs: Any, targets: Any, tol: float = PINV_TOL) -> torch.Tensor:
    """W = Y A^+ built pair by pair with :func:`online_pinv_step` (float64 throughout).

    Args:
        inputs: ``[..., N, Da]`` (rows are the a_k); targets: ``[..., N, Dy]``.

    Returns:
        ``[..., Dy, Da]`` (float64), so that ``inputs @ W.T`` approximates ``targets`` in
        the least-squares sense with minimum norm: ``targets.T @ torch.linalg.pinv(inputs).T``.

    Example:
        >>> gen = torch.Generator().manual_seed(0)
        >>> a = torch.randn(7, 5, generator=gen, dtype=torch.float64)
        >>> y = torch.randn(7, 3, generator=gen, dtype=torch.float64)
        >>> w = online_pinv(a, y)
        >>> bool(torch.allclose(w, (torch.linalg.pinv(a) @ y).T))
        True
    """
    a = as_tensor(inputs, "inputs", min_rank=2, dtype=torch.float64)
    y = as_tensor(targets, "targets", min_rank=2, dtype=torch.float64, device=a.device)
    if a.shape[:-1] != y.shape[:-1]:
        raise ValueError(
            f"targets: expected shape [..., N, Dy] with the inputs' leading shape {tuple(a.shape[:-1])}, "
            f"got {tuple(y.shape)}"
        )
    check_positive(tol, "tol")
    w, gram, resid = online_pinv_init(a.shape[-1], y.shape[-1], tuple(a.shape[:-2]), device=a.device)
    for k in range(a.shape[-2]):
        w, gram, resid = online_pinv_step(w, gram, resid, a[..., k, :], y[..., k, :], tol)
    return w


# -- the memory ------------------------------------------------------------------------


@dataclass(frozen=True)
class ScaffoldRecall:
    """What ``recall(..., details=True)`` returns.

    Attributes:
        values: recalled sensory patterns ``[..., M, D_s]``.
        hidden: the hippocampal state after clean-up ``[..., M, N_h]``.
        grid: the cleaned-up grid state ``[..., M, N_g]``.
        positions: the grid state decoded to a position ``[..., M, dim]`` (long).
    """

    values: torch.Tensor
    hidden: torch.Tensor
    grid: torch.Tensor
    positions: torch.Tensor


@dataclass(frozen=True)
class ScaffoldSequence:
    """What ``recall_sequence`` returns.

    Attributes:
        values: recalled sensory patterns ``[..., M, T, D_s]`` (one sequence per cue).
        positions: the scaffold positions visited ``[..., M, T, dim]`` (long).
    """

    values: torch.Tensor
    positions: torch.Tensor


@register_memory
class ScaffoldMemory(Memory):
    """Vector-HaSH / MESH: content heteroassociated to a fixed grid-hippocampal scaffold.

    The scaffold (grid modules, W_hg, W_gh) is a fixed function of the constructor arguments
    and ``seed``; only the hippocampus <-> sensory weights W_sh, W_hs learn. See the module
    docstring for the equations.

    Memory contract: keys are scaffold (grid) states, one active unit per module
    (:meth:`keys_at` makes them from positions), values are sensory patterns.
    ``write(keys, values)`` stores pairs; ``read(queries)`` cleans each query up by the
    module-wise WTA and returns the value stored at that address, with ``details=True``
    giving the hippocampal activity (the attention weights over the N_h fixed keys) and its
    drive. :meth:`recall` is the content-addressable read from sensory cues;
    :meth:`write_sequence` / :meth:`recall_sequence` store and replay sequences by path
    integration; :meth:`settle` runs the scaffold loop on grid states.

    The scaffold is shared by every memory in the batch (one anatomy); each batch entry has
    its own stored pairs. The scaffold is drawn in float64 on the CPU from ``seed`` and
    follows the dtype and device of the first write (or ``device``).

    Args:
        periods: pairwise coprime module periods (lambda_i >= 2).
        dim: 1 (ring modules) or 2 (torus modules, as grid cells).
        num_hidden: N_h, hippocampal cells.
        threshold: theta of the ReLU nonlinearity f(x) = relu(x - theta) (unused for sign).
        nonlinearity: ``"relu"`` (Vector-HaSH) or ``"sign"`` (MESH) for h = f(g W_hg^T).
        return_rule: how W_gh is fitted over the scaffold states: ``"pseudo_inverse"`` or
            ``"hebbian"``.
        rule: sensory <-> hippocampus learning: ``"hebbian"``, ``"pseudo_inverse"`` or
            ``"online_pseudo_inverse"``.
        output: ``"identity"`` (linear readout) or ``"sign"`` (for +-1 content) applied to
            the sensory readout.
        connectivity: probability that a grid-to-hippocampus synapse exists (1: dense).
        seed: seed of W_hg (and of the connectivity mask).
        device: where to put the scaffold before the first write (default CPU).

    Shapes:
        write: keys ``[..., N, N_g]``, values ``[..., N, D_s]``; state: keys, values,
        W_sh ``[..., D_s, N_h]``, W_hs ``[..., N_h, D_s]`` (online rule: its float64
        recursion state too).
        read: grid queries ``[..., M, N_g]`` -> ``[..., M, D_s]``.
        recall: sensory cues ``[..., M, D_s]`` -> ``[..., M, D_s]``.

    Example:
        >>> import torch
        >>> mem = ScaffoldMemory(periods=(2, 3, 5), dim=2, num_hidden=150, output="sign")
        >>> s = torch.randint(0, 2, (2, 40, 64), generator=torch.Generator().manual_seed(1)).float() * 2 - 1
        >>> keys = mem.write_sequence(s)                      # 2 independent sequences of 40 items
        >>> seq = mem.recall_sequence(s[:, :1], length=40)    # cue: the first item of each
        >>> torch.equal(seq.values[:, 0], s), seq.positions.shape
        (True, torch.Size([2, 1, 40, 2]))
    """

    _state_names = ("keys", "values", "w_sh", "w_hs", "gram_h", "resid_h", "gram_s", "resid_s")

    def __init__(
        self,
        periods: Any = (3, 4, 5),
        dim: int = 1,
        num_hidden: int = 200,
        threshold: float = 0.5,
        nonlinearity: str = "relu",
        return_rule: str = "pseudo_inverse",
        rule: str = "pseudo_inverse",
        output: str = "identity",
        connectivity: float = 1.0,
        seed: int = 0,
        device: Any = None,
    ) -> None:
        super().__init__()
        self.periods = _check_periods(periods)
        self.dim = _check_dim(dim)
        self.num_hidden = check_int(num_hidden, "num_hidden")
        self.threshold = check_positive(threshold, "threshold", allow_zero=True)
        for value, name, options in (
            (nonlinearity, "nonlinearity", NONLINEARITIES),
            (return_rule, "return_rule", RETURN_RULES),
            (rule, "rule", WRITE_RULES),
            (output, "output", OUTPUTS),
        ):
            if value not in options:
                raise ValueError(f"{name}: expected one of {options}, got {value!r}")
        self.nonlinearity, self.return_rule, self.rule, self.output = nonlinearity, return_rule, rule, output
        self.connectivity = check_positive(connectivity, "connectivity")
        if self.connectivity > 1:
            raise ValueError(f"connectivity: expected a probability in (0, 1], got {connectivity}")
        self.seed = check_int(seed, "seed", minimum=0)
        self.num_grid = num_grid_cells(self.periods, self.dim)
        self.num_states = num_positions(self.periods, self.dim)
        if self.num_states > MAX_STATES:
            raise ValueError(
                f"periods: {self.num_states} scaffold states (more than {MAX_STATES}); "
                "choose smaller periods or dim=1"
            )
        self._master = self._build_scaffold()
        dtype = torch.get_default_dtype()
        self.register_buffer("w_hg", self._master[0].to(dtype=dtype, device=device), persistent=False)
        self.register_buffer("w_gh", self._master[1].to(dtype=dtype, device=device), persistent=False)

    def config(self) -> dict[str, Any]:
        return {
            "periods": list(self.periods),
            "dim": self.dim,
            "num_hidden": self.num_hidden,
            "threshold": self.threshold,
            "nonlinearity": self.nonlinearity,
            "return_rule": self.return_rule,
            "rule": self.rule,
            "output": self.output,
            "connectivity": self.connectivity,
            "seed": self.seed,
        }

    # -- the scaffold ----------------------------------------------------------------
    def _f(self, drive: torch.Tensor) -> torch.Tensor:
        if self.nonlinearity == "relu":
            return torch.relu(drive - self.threshold)
        return torch.where(drive >= 0, 1.0, -1.0).to(drive.dtype)

    def _build_scaffold(self) -> tuple[torch.Tensor, torch.Tensor]:
        """W_hg and W_gh in float64 on the CPU: a fixed function of the configuration."""
        gen = make_generator(self.seed)
        w_hg = torch.randn(self.num_hidden, self.num_grid, generator=gen, dtype=torch.float64)
        if self.connectivity < 1:
            w_hg = w_hg * (torch.rand(w_hg.shape, generator=gen, dtype=torch.float64) < self.connectivity)
        g, _ = grid_states(self.periods, self.dim, dtype=torch.float64)
        h = self._f(g @ w_hg.T)
        if self.return_rule == "pseudo_inverse":
            w_gh = (torch.linalg.pinv(h) @ g).T.contiguous()
        else:
            w_gh = (g.T @ h) / g.shape[0]
        return w_hg, w_gh

    def _place(self, dtype: torch.dtype, device: torch.device) -> None:
        """Put the scaffold on the inputs' dtype and device (from the float64 master)."""
        if self.w_hg.dtype != dtype or self.w_hg.device != device:
            self.w_hg = self._master[0].to(dtype=dtype, device=device)
            self.w_gh = self._master[1].to(dtype=dtype, device=device)

    def hidden(self, grid: Any) -> torch.Tensor:
        """Hippocampal states of grid states: h = f(g W_hg^T) (no clean-up).

        Args:
            grid: ``[..., N_g]``.

        Returns:
            ``[..., N_h]``.
        """
        g = _check_grid(grid, self.periods, self.dim, "grid").to(dtype=self.w_hg.dtype, device=self.w_hg.device)
        return self._f(g @ self.w_hg.T)

    def clean(self, hidden: Any) -> torch.Tensor:
        """Grid state read out from hippocampal activity and cleaned up: WTA(h W_gh^T).

        Args:
            hidden: ``[..., N_h]``.

        Returns:
            ``[..., N_g]``, one active unit per module.
        """
        h = as_tensor(hidden, "hidden", dtype=self.w_gh.dtype, device=self.w_gh.device)
        if h.shape[-1] != self.num_hidden:
            raise ValueError(f"hidden: expected shape [..., {self.num_hidden}] (N_h), got {tuple(h.shape)}")
        return module_wta(h @ self.w_gh.T, self.periods, self.dim)

    def settle(self, grid: Any, steps: int = 1) -> torch.Tensor:
        """Run the scaffold loop g <- WTA(f(WTA(g) W_hg^T) W_gh^T) for ``steps`` steps.

        Every scaffold state is a fixed point when the scaffold has enough hippocampal cells.

        Args:
            grid: grid activity ``[..., N_g]`` (any real vector; cleaned up first).
            steps: loop iterations, >= 0.

        Returns:
            ``[..., N_g]`` scaffold states.
        """
        steps = check_int(steps, "steps", minimum=0)
        g = module_wta(_check_grid(grid, self.periods, self.dim, "grid"), self.periods, self.dim)
        for _ in range(steps):
            g = self.clean(self.hidden(g))
        return g

    def keys_at(self, positions: Any) -> torch.Tensor:
        """Scaffold states (keys) of integer positions ``[..., dim]`` -> ``[..., N_g]``."""
        return grid_code(positions, self.periods, self.dim, dtype=self.w_hg.dtype).to(self.w_hg.device)

    def positions_of(self, grid: Any) -> torch.Tensor:
        """Positions ``[..., dim]`` of grid activity (module-wise WTA, then the CRT)."""
        return grid_position(grid, self.periods, self.dim)

    # -- the memory contract ---------------------------------------------------------
    def _batch_shape(self) -> torch.Size:
        return self.keys.shape[:-2]

    def _key_dim(self) -> int:
        return self.num_grid

    def _required_state(self) -> tuple[str, ...]:
        return ("keys", "values", "w_sh", "w_hs")

    def __len__(self) -> int:
        """Number of stored pairs (0 while empty)."""
        return 0 if self.is_empty else self.keys.shape[-2]

    @property
    def value_dim(self) -> int | None:
        """D_s, fixed by the first write (None while empty)."""
        return None if self.is_empty else self.values.shape[-1]

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        out = super().load_state_dict(state_dict, strict, assign)
        if not self.is_empty:
            self._place(self.keys.dtype, self.keys.device)
        return out

    def _check_keys(self, keys: torch.Tensor) -> None:
        binary = bool(((keys == 0) | (keys == 1)).all())
        if binary:
            start = 0
            for p in self.periods:
                n = p**self.dim
                if not bool((keys[..., start : start + n].sum(-1) == 1).all()):
                    binary = False
                    break
                start += n
        if not binary:
            raise ValueError(
                "keys: expected scaffold (grid) states: entries 0/1 with exactly one active unit per module "
                f"(module sizes {[p**self.dim for p in self.periods]}); make them with keys_at(positions)"
            )

    def _readout(self, h: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        out = h @ w.to(h.dtype).transpose(-1, -2)
        return torch.where(out >= 0, 1.0, -1.0).to(out.dtype) if self.output == "sign" else out

    def write(self, keys: Any, values: Any) -> None:
        """Store sensory patterns at scaffold addresses (heteroassociation in both directions).

        Args:
            keys: scaffold states ``[..., N, N_g]`` (see :meth:`keys_at`).
            values: sensory patterns ``[..., N, D_s]``.
        """
        keys, values = self._pairs(keys, values)
        if self.is_empty:
            self._place(keys.dtype, keys.device)
        elif values.shape[-1] != self.values.shape[-1]:
            raise ValueError(
                f"values: expected last dimension {self.values.shape[-1]} (as stored), got shape {tuple(values.shape)}"
            )
        if keys.shape[-1] != self.num_grid:
            raise ValueError(
                f"keys: expected shape [..., N, {self.num_grid}] (N_g grid cells), got {tuple(keys.shape)}"
            )
        self._check_keys(keys)
        h = self._f(keys @ self.w_hg.T)
        first = self.is_empty
        all_keys = keys if first else torch.cat([self.keys, keys], dim=-2)
        all_values = values if first else torch.cat([self.values, values], dim=-2)
        ds, nh = values.shape[-1], self.num_hidden
        if self.rule == "hebbian":
            d_sh = values.transpose(-1, -2) @ h / nh
            d_hs = h.transpose(-1, -2) @ values / ds
            self.w_sh = d_sh if first else self.w_sh + d_sh
            self.w_hs = d_hs if first else self.w_hs + d_hs
        elif self.rule == "pseudo_inverse":
            h_all = self._f(all_keys @ self.w_hg.T).double()
            s_all = all_values.double()
            self.w_sh = (_pinv(h_all) @ s_all).transpose(-1, -2).to(keys.dtype)
            self.w_hs = (_pinv(s_all) @ h_all).transpose(-1, -2).to(keys.dtype)
        else:
            batch = tuple(keys.shape[:-2])
            if first:
                self.w_sh, self.gram_h, self.resid_h = online_pinv_init(nh, ds, batch, device=keys.device)
                self.w_hs, self.gram_s, self.resid_s = online_pinv_init(ds, nh, batch, device=keys.device)
            h64, s64 = h.double(), values.double()
            w_sh, g_h, r_h = self.w_sh, self.gram_h, self.resid_h
            w_hs, g_s, r_s = self.w_hs, self.gram_s, self.resid_s
            # Sequential by definition: each pair updates the map the next one sees.
            for k in range(h64.shape[-2]):
                w_sh, g_h, r_h = online_pinv_step(w_sh, g_h, r_h, h64[..., k, :], s64[..., k, :])
                w_hs, g_s, r_s = online_pinv_step(w_hs, g_s, r_s, s64[..., k, :], h64[..., k, :])
            self.w_sh, self.gram_h, self.resid_h = w_sh, g_h, r_h
            self.w_hs, self.gram_s, self.resid_s = w_hs, g_s, r_s
        self.keys, self.values = all_keys, all_values

    def read(self, queries: Any, details: bool = False) -> torch.Tensor | ReadResult:
        """The values stored at scaffold addresses: s = o(f(WTA(q) W_hg^T) W_sh^T).

        Args:
            queries: grid activity ``[..., M, N_g]`` (cleaned up by the module-wise WTA);
                leading dimensions broadcast to the batch shape.
            details: also return the hippocampal activity as ``weights`` (alpha over the
                N_h fixed keys, the rows of W_hg) and its drive g W_hg^T as ``scores``.

        Returns:
            ``[..., M, D_s]`` or a :class:`~kvmem.memory.base.ReadResult`.
        """
        q = self._queries(queries)
        g = module_wta(q, self.periods, self.dim)
        scores = g @ self.w_hg.T
        h = self._f(scores)
        out = self._readout(h, self.w_sh)
        return ReadResult(out, h, scores) if details else out

    def _cues(self, cues: Any, name: str = "cues") -> torch.Tensor:
        if self.is_empty:
            raise ValueError(f"{type(self).__name__} is empty: write at least one pair before recalling")
        x = as_tensor(cues, name, min_rank=2, dtype=self.keys.dtype, device=self.keys.device)
        ds = self.values.shape[-1]
        if x.shape[-1] != ds:
            raise ValueError(f"{name}: expected shape [..., M, {ds}] (the sensory dimension), got {tuple(x.shape)}")
        batch = self._batch_shape()
        lead = x.shape[:-2]
        # Right-aligned broadcasting onto the batch shape (checked by hand: the first call of
        # torch.broadcast_shapes costs seconds of imports in a fresh process).
        ok = len(lead) <= len(batch) and all(a in (1, b) for a, b in zip(reversed(lead), reversed(batch)))
        if not ok:
            raise ValueError(
                f"{name}: leading dimensions {tuple(x.shape[:-2])} must broadcast to the memory's "
                f"batch shape {tuple(batch)}"
            )
        return x

    def _recall_grid(self, x: torch.Tensor, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Sensory cue -> hippocampus -> (grid clean-up -> hippocampus) x steps."""
        h = x @ self.w_hs.to(x.dtype).transpose(-1, -2)
        # The cue's hippocampal estimate is rectified like the states it approximates
        # (non-negative for ReLU, +-1 for sign), without the threshold they already passed.
        h = torch.relu(h) if self.nonlinearity == "relu" else self._f(h)
        g = None
        for _ in range(steps):
            g = module_wta(h @ self.w_gh.T, self.periods, self.dim)
            h = self._f(g @ self.w_hg.T)
        return g, h

    def recall(self, cues: Any, steps: int = 1, details: bool = False) -> torch.Tensor | ScaffoldRecall:
        """Content-addressable recall from (noisy, partial) sensory cues.

        s -> h~ = r(s W_hs^T) -> [g = WTA(h W_gh^T) -> h = f(g W_hg^T)] x steps -> o(h W_sh^T).

        Args:
            cues: ``[..., M, D_s]``; leading dimensions broadcast to the batch shape.
            steps: iterations of the scaffold loop, >= 1.
            details: return a :class:`ScaffoldRecall` with the hippocampal and grid states.

        Returns:
            recalled patterns ``[..., M, D_s]`` or a :class:`ScaffoldRecall`.
        """
        x = self._cues(cues)
        steps = check_int(steps, "steps", minimum=1)
        g, h = self._recall_grid(x, steps)
        out = self._readout(h, self.w_sh)
        if not details:
            return out
        return ScaffoldRecall(out, h, g, grid_position(g, self.periods, self.dim))

    # -- sequences -------------------------------------------------------------------
    def _path(self, length: int, start: Any, velocities: Any) -> torch.Tensor:
        """Grid states ``[length, N_g]`` along a path, by path integration from ``start``."""
        if velocities is None:
            _, velocities = scaffold_path(self.periods, self.dim, length)
        v = _positions(velocities, self.dim, "velocities")
        if v.dim() != 2 or v.shape[0] != length - 1:
            raise ValueError(
                f"velocities: expected shape [{length - 1}, {self.dim}] (one per step), got {tuple(v.shape)}"
            )
        v = v.to(self.w_hg.device)
        if start is None:
            origin = torch.zeros(1, self.dim, dtype=torch.long)
        else:
            origin = _positions(start, self.dim, "start").reshape(1, self.dim)
        g = self.keys_at(origin)
        states = [g]
        for t in range(length - 1):
            g = _shift(g, v[t : t + 1], self.periods, self.dim)
            states.append(g)
        return torch.cat(states, dim=0)

    def write_sequence(self, values: Any, start: Any = None, velocities: Any = None) -> torch.Tensor:
        """Store a sequence at consecutive positions of a path through the scaffold.

        Item t goes to the grid state reached from ``start`` by integrating the velocities
        v_1 ... v_t (default: :func:`scaffold_path`, a straight line in 1-D and a
        boustrophedon in 2-D). The path must not revisit a position (checked).

        Args:
            values: ``[..., T, D_s]`` (leading dimensions: independent sequences).
            start: first position ``[dim]`` (default the origin).
            velocities: integer steps ``[T - 1, dim]``.

        Returns:
            the keys used, ``[T, N_g]``.
        """
        v = as_tensor(values, "values", min_rank=2)
        length = v.shape[-2]
        if length == 0:
            raise ValueError(f"values: expected at least one item (T >= 1), got shape {tuple(v.shape)}")
        keys = self._path(length, start, velocities)
        if torch.unique(self.positions_of(keys), dim=0).shape[0] != length:
            raise ValueError("velocities: the path revisits a scaffold position; a sequence needs distinct positions")
        self.write(keys.to(v.dtype).expand(*v.shape[:-2], *keys.shape), v)
        return keys

    def recall_sequence(
        self, cues: Any, length: int, start: Any = None, velocities: Any = None, steps: int = 1
    ) -> ScaffoldSequence:
        """Replay sequences by path integration from the position recalled for each cue.

        The cue (e.g. a noisy first item) is recalled as in :meth:`recall`; its cleaned-up
        grid state is the start, and each further step shifts the grid state by the next
        velocity and reads out the sensory pattern there. ``start`` (a position ``[dim]``)
        replaces the cue-driven start for every cue when given.

        Args:
            cues: ``[..., M, D_s]``.
            length: T, the number of items to replay (including the first).
            velocities: ``[T - 1, dim]`` (default: :func:`scaffold_path`'s).
            steps: scaffold-loop iterations for the cue.

        Returns:
            a :class:`ScaffoldSequence` with values ``[..., M, T, D_s]``.
        """
        x = self._cues(cues)
        length = check_int(length, "length", minimum=1)
        steps = check_int(steps, "steps", minimum=1)
        if velocities is None:
            _, velocities = scaffold_path(self.periods, self.dim, length)
        v = _positions(velocities, self.dim, "velocities")
        if v.dim() != 2 or v.shape[0] != length - 1:
            raise ValueError(
                f"velocities: expected shape [{length - 1}, {self.dim}] (one per step), got {tuple(v.shape)}"
            )
        v = v.to(x.device)
        if start is None:
            g, _ = self._recall_grid(x, steps)
        else:
            first = self.keys_at(_positions(start, self.dim, "start").reshape(self.dim))
            g = first.expand(*x.shape[:-1], self.num_grid)
        states = [g]
        for t in range(length - 1):
            g = _shift(g, v[t], self.periods, self.dim)
            states.append(g)
        grid = torch.stack(states, dim=-2)
        h = self._f(grid @ self.w_hg.T)
        out = self._readout(h, self.w_sh.unsqueeze(-3))
        return ScaffoldSequence(out, grid_position(grid, self.periods, self.dim))
