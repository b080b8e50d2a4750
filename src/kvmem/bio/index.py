"""Hippocampal index with neocortical values: sparse expanded keys point at cortical patterns.

The paper's global mapping (Gershman, Fiete & Irie 2025, section "Biological
implementation"; Teyler & DiScenna 1986's indexing theory): the hippocampus stores *keys*
and matches queries against them, the neocortex stores the *values* (the content). Here a
key is a sparse expanded code of the cortical input, made as in the dentate gyrus: a fixed
random expansion to many units followed by k-winners-take-all. Sparse expansion is pattern
separation: two inputs overlap less in the index than they did in the cortex. Reading maps
a (noisy or partial) cue through the same expansion, matches the resulting code against the
stored keys and reinstates the value of the best match(es) in cortex.

The operations that lesion and boost parts of the system (used by the phenomena
experiments) are methods: :meth:`HippocampalIndex.lesion_units` silences index units,
:meth:`~HippocampalIndex.lesion_keys` removes the keys of chosen memories,
:meth:`~HippocampalIndex.amplify_keys` multiplies their strength by beta (the
optogenetic reactivation of silent engrams, Ryan et al. 2015, modelled as in the paper's
Fig. 3) and :meth:`~HippocampalIndex.degrade_values` adds noise to stored cortical values.

Example:
    >>> import torch
    >>> from kvmem.bio.index import HippocampalIndex
    >>> gen = torch.Generator().manual_seed(0)
    >>> inputs, values = torch.randn(20, 64, generator=gen), torch.randn(20, 8, generator=gen)
    >>> index = HippocampalIndex(num_units=512, active=25)
    >>> index.write(inputs, values)
    >>> torch.equal(index.read(inputs), values)
    True
"""

from __future__ import annotations

from typing import Any

import torch

from .._checks import as_tensor, check_int, check_positive
from .. import separation as _separation
from ..memory.base import Memory, ReadResult, register_memory

__all__ = ["HippocampalIndex", "code_overlap", "pattern_separation"]


def code_overlap(a: Any, b: Any) -> torch.Tensor:
    """Cosine similarity of matched rows: the overlap of two patterns (0 for a zero row).

    For binary k-sparse codes with the same number of active units this is the fraction of
    active units they share.

    Args:
        a, b: patterns ``[..., D]`` (broadcasting leading dimensions).

    Returns:
        ``[...]``.

    Example:
        >>> import torch
        >>> round(code_overlap(torch.tensor([1.0, 1.0, 0.0, 0.0]), torch.tensor([1.0, 0.0, 1.0, 0.0])).item(), 6)
        0.5
    """
    a = as_tensor(a, "a")
    b = as_tensor(b, "b", dtype=a.dtype)
    if a.shape[-1] != b.shape[-1]:
        raise ValueError(f"b: expected last dimension {a.shape[-1]} (as a), got shape {tuple(b.shape)}")
    na = a.norm(dim=-1)
    nb = b.norm(dim=-1)
    denom = na * nb
    dot = (a * b).sum(-1)
    return torch.where(denom > 0, dot / denom.clamp_min(torch.finfo(a.dtype).tiny), torch.zeros_like(dot))


def _winners(drive: torch.Tensor, k: int) -> torch.Tensor:
    """1 on the k largest entries of each row, ties at the k-th value going to the lowest index.

    The same choice as a stable descending sort, from a top-k and a running count (the
    sort costs several times more on rows of thousands of units).
    """
    kth = torch.topk(drive, k, dim=-1).values[..., -1:]
    above = drive > kth
    tied = drive == kth
    room = k - above.sum(-1, keepdim=True)
    return (above | (tied & (tied.cumsum(-1) <= room))).to(drive.dtype)


@register_memory
class HippocampalIndex(Memory):
    """Index memory: dentate-like sparse keys in the hippocampus, values in the neocortex.

    Encoding a cortical input x (dimension D) into an index code:

        drive = W x,   W ~ N(0, 1/D) fixed, shape [U, D]            (random expansion, U >> D)
        c = kWTA(drive): 1 on the ``active`` units with the largest positive drive, else 0
        c = c * alive                                               (silenced units stay silent)

    Writing stores, per memory mu, the key c_mu (index), a key strength g_mu = 1 and the value
    v_mu (neocortical pattern). Reading a cue x:

        s_mu = g_mu (c(x) . c_mu) / active      (shared active units, times the key strength)
        alpha = sigma(s),   read = alpha V       (reinstatement of the cortical value)

    With ``separation="hardmax"`` (default) the index points at one memory; with softmax the
    match is graded; with ``"identity"`` the read equals the Hebbian hetero-associative
    matrix c(x) M with M = sum_mu g_mu c_mu^T v_mu / active (the dual form). Ties in the
    k-WTA go to the lowest unit index, so codes are deterministic; a zero cue drives no unit
    and matches nothing (all scores 0).

    The expansion W is shared by every memory in the batch (one anatomy); each batch entry
    (trial) has its own memories, key strengths and lesions. Random lesions and value noise
    come from an internal generator seeded by ``seed`` (saved with the state), or from an
    explicit ``seed`` given to the method.

    Args:
        num_units: U, the number of index (dentate granule) units.
        active: k, how many units win the k-WTA; 1 <= k <= U.
        separation: spec of sigma over the match scores (see :mod:`kvmem.separation`).
        seed: seed of the expansion and of the internal generator.

    Shapes:
        write: inputs ``[..., N, D]``, values ``[..., N, Dv]``; state keys ``[..., N, U]``,
        values ``[..., N, Dv]``, key strengths ``[..., N]``, alive units ``[..., U]``,
        expansion ``[U, D]``.
        read: cues ``[..., M, D]`` -> values ``[..., M, Dv]``; ``details=True`` adds
        weights and scores ``[..., M, N]``.

    Example:
        >>> import torch
        >>> gen = torch.Generator().manual_seed(1)
        >>> x, v = torch.randn(3, 40, generator=gen), torch.eye(3)
        >>> index = HippocampalIndex(num_units=400, active=20)
        >>> index.write(x, v)
        >>> index.encode(x).sum(-1).tolist()                 # k-sparse keys
        [20.0, 20.0, 20.0]
        >>> index.lesion_keys([1])                           # memory 1 has lost its key
        >>> index.read(x[1:2], details=True).scores[0, 1].item()
        0.0
        >>> index.amplify_keys([0], 2.0)
        >>> index.read(x[:1], details=True).scores[0, 0].item()
        2.0
    """

    _state_names = ("keys", "values", "key_gain", "unit_mask", "projection", "rng_state")

    def __init__(self, num_units: int = 1000, active: int = 50, separation: Any = "hardmax", seed: int = 0) -> None:
        super().__init__()
        self.num_units = check_int(num_units, "num_units", minimum=1)
        self.active = check_int(active, "active", minimum=1)
        if self.active > self.num_units:
            raise ValueError(f"active: expected at most num_units={self.num_units} winners, got {active}")
        self.separation = _separation.get(separation)
        self.seed = check_int(seed, "seed", minimum=0)

    def config(self) -> dict[str, Any]:
        return {
            "num_units": self.num_units,
            "active": self.active,
            "separation": self.separation.spec(),
            "seed": self.seed,
        }

    def _batch_shape(self) -> torch.Size:
        return self.keys.shape[:-2]

    def _key_dim(self) -> int:
        return self.projection.shape[-1]

    def _required_state(self):
        return ("keys", "values", "key_gain", "unit_mask", "projection")

    def __len__(self) -> int:
        """Number of stored memories (0 while empty)."""
        return 0 if self.is_empty else self.keys.shape[-2]

    # -- the expansion -------------------------------------------------------------
    def _draw_projection(self, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The fixed expansion for inputs of dimension ``dim`` and the generator state after it."""
        gen = torch.Generator().manual_seed(self.seed)
        w = torch.randn(self.num_units, dim, generator=gen, dtype=torch.float64) / dim**0.5
        return w, gen.get_state()

    def _ensure_projection(self, dim: int, dtype: torch.dtype, device: torch.device, name: str) -> None:
        if self.projection is None:
            w, state = self._draw_projection(dim)
            self.projection = w.to(dtype=dtype, device=device)
            if self.rng_state is None:
                self.rng_state = state
        elif self.projection.shape[-1] != dim:
            raise ValueError(
                f"{name}: expected last dimension {self.projection.shape[-1]} (the input dimension), got {dim}"
            )
        elif self.projection.dtype != dtype or self.projection.device != device:
            # Only an empty index gets here (later inputs are converted to the stored dtype);
            # redrawing in float64 keeps the expansion identical across dtypes.
            self.projection = self._draw_projection(dim)[0].to(dtype=dtype, device=device)

    def _codes(self, x: torch.Tensor) -> torch.Tensor:
        """k-WTA codes of inputs already checked and converted; dead units silenced."""
        drive = x @ self.projection.T
        # A stable sort puts the lowest unit index first among equal drives (deterministic ties).
        order = torch.sort(drive, dim=-1, descending=True, stable=True).indices[..., : self.active]
        code = torch.zeros_like(drive).scatter_(-1, order, 1.0)
        # A unit fires only when depolarised: a zero cue activates nothing.
        code = code * (drive > 0).to(code.dtype)
        if self.unit_mask is not None:
            code = code * self.unit_mask.unsqueeze(-2)
        return code

    def encode(self, inputs: Any) -> torch.Tensor:
        """Index codes of cortical inputs: k-WTA of the random expansion, silenced units off.

        Before the first write the expansion is drawn for the inputs' dimension (it is a
        fixed function of ``seed``), so codes can be inspected on an empty index.

        Args:
            inputs: ``[..., M, D]``; after the first write, leading dimensions must broadcast
                to the batch shape (lesions differ between trials).

        Returns:
            binary codes ``[..., M, U]`` with at most ``active`` ones per row.
        """
        if self.is_empty:
            ref_dtype = None if self.projection is None else self.projection.dtype
            x = as_tensor(inputs, "inputs", min_rank=2, dtype=ref_dtype)
            self._ensure_projection(x.shape[-1], x.dtype, x.device, "inputs")
            return self._codes(x)
        return self._codes(self._queries(inputs, "inputs"))

    # -- writing -------------------------------------------------------------------
    def write(self, keys: Any, values: Any) -> None:
        """Store memories: the index code of each input as its key, the value in cortex.

        Args:
            keys: the cortical inputs ``[..., N, D]`` (their codes become the keys).
            values: the cortical patterns to reinstate ``[..., N, Dv]``.
        """
        x, values = self._pairs(keys, values)
        self._ensure_projection(x.shape[-1], x.dtype, x.device, "keys")
        if not self.is_empty and values.shape[-1] != self.values.shape[-1]:
            raise ValueError(
                f"values: expected last dimension {self.values.shape[-1]} (as stored), got shape {tuple(values.shape)}"
            )
        batch = x.shape[:-2]
        if self.is_empty:
            self.unit_mask = torch.ones(*batch, self.num_units, dtype=x.dtype, device=x.device)
        codes = self._codes(x)
        gain = torch.ones(codes.shape[:-1], dtype=x.dtype, device=x.device)
        if self.is_empty:
            self.keys, self.values, self.key_gain = codes, values.clone(), gain
        else:
            self.keys = torch.cat([self.keys, codes], dim=-2)
            self.values = torch.cat([self.values, values], dim=-2)
            self.key_gain = torch.cat([self.key_gain, gain], dim=-1)

    # -- reading -------------------------------------------------------------------
    def _scores(self, queries: torch.Tensor) -> torch.Tensor:
        codes = self._codes(queries)
        return (codes @ self.keys.transpose(-1, -2)) / self.active * self.key_gain.unsqueeze(-2)

    def read(self, queries: Any, details: bool = False) -> torch.Tensor | ReadResult:
        """Reinstate the cortical values of the memories whose keys match each cue.

        Args:
            queries: cortical cues ``[..., M, D]`` (noisy or partial inputs); leading
                dimensions broadcast to the batch shape.
            details: also return the read weights and the match scores.

        Returns:
            values ``[..., M, Dv]``, or a :class:`~kvmem.memory.base.ReadResult`.

        A cue that matches no key (all scores 0, e.g. every key lesioned) still gets the
        separation's answer for a tie (hard max: memory 0); :meth:`familiarity` tells it apart.
        """
        queries = self._queries(queries)
        scores = self._scores(queries)
        weights = self.separation(scores)
        out = weights @ self.values
        return ReadResult(out, weights, scores) if details else out

    def familiarity(self, queries: Any) -> torch.Tensor:
        """The best key match of each cue, without touching the values (key-query match alone).

        Args:
            queries: cortical cues ``[..., M, D]``.

        Returns:
            ``[..., M]``: max over memories of g_mu (c(x) . c_mu) / active.
        """
        return self._scores(self._queries(queries)).amax(dim=-1)

    # -- reading from index codes ------------------------------------------------------
    def _index_codes(self, codes: Any, name: str) -> torch.Tensor:
        """Check index codes ``[..., M, U]`` against the stored keys; silenced units dropped."""
        if self.is_empty:
            raise ValueError(f"{type(self).__name__} is empty: write at least one pair before reading")
        codes = as_tensor(codes, name, min_rank=2, dtype=self.keys.dtype, device=self.keys.device)
        if codes.shape[-1] != self.num_units:
            raise ValueError(f"{name}: expected shape [..., M, {self.num_units}] (one entry per unit), got {tuple(codes.shape)}")
        batch = self._batch_shape()
        try:
            ok = torch.broadcast_shapes(codes.shape[:-2], batch) == batch
        except RuntimeError:
            ok = False
        if not ok:
            raise ValueError(
                f"{name}: leading dimensions {tuple(codes.shape[:-2])} must broadcast to the "
                f"memory's batch shape {tuple(batch)}"
            )
        # A silenced unit cannot fire, whoever drives it.
        return codes * self.unit_mask.unsqueeze(-2)

    def read_codes(self, codes: Any, details: bool = False) -> torch.Tensor | ReadResult:
        """Reinstate values from index activity given directly, bypassing the expansion.

        ``read(x)`` equals ``read_codes(encode(x))``: encoding a set of cues once and reading
        them under many lesions or key strengths saves the k-WTA, the costly step. Codes
        may also come from elsewhere: a cleaned-up code (:meth:`complete`) or a stored key
        itself (driving a memory's own index units, as optogenetic stimulation of engram
        cells does). Silenced units are dropped from the codes first.

        Args:
            codes: index activity ``[..., M, U]`` (binary for codes from :meth:`encode`,
                any real pattern otherwise); leading dimensions broadcast to the batch shape.
            details: also return the read weights and the match scores.

        Returns:
            values ``[..., M, Dv]``, or a :class:`~kvmem.memory.base.ReadResult` whose scores
            ``[..., M, N]`` are g_mu (c . c_mu) / active.

        Example:
            >>> import torch
            >>> gen = torch.Generator().manual_seed(2)
            >>> x, v = torch.randn(5, 30, generator=gen), torch.randn(5, 4, generator=gen)
            >>> index = HippocampalIndex(num_units=300, active=15)
            >>> index.write(x, v)
            >>> torch.equal(index.read_codes(index.encode(x)), index.read(x))
            True
        """
        codes = self._index_codes(codes, "codes")
        scores = (codes @ self.keys.transpose(-1, -2)) / self.active * self.key_gain.unsqueeze(-2)
        weights = self.separation(scores)
        out = weights @ self.values
        return ReadResult(out, weights, scores) if details else out

    def complete(self, codes: Any, steps: int = 5, power: int = 1) -> torch.Tensor:
        """Clean index codes up by attractor dynamics over the stored keys (pattern completion).

        A CA3-like recurrent network over the stored keys c_mu (key strength g_mu; lesioned
        keys take no part) with the same k-WTA as the encoding, applied ``steps`` times
        synchronously:

            h = sum_mu g_mu (c . c_mu / active)^n c_mu,    c <- kWTA(h)

        kWTA puts 1 on the ``active`` units with the largest positive input. With n = 1
        (``power=1``) h = W c / active for the Hebbian weights W = sum_mu g_mu c_mu c_mu^T,
        the classical sparse Hopfield (Willshaw-like) network; n > 1 is the dense
        associative memory form (Krotov & Hopfield 2016), whose larger power lets the best
        matching key outweigh the crosstalk of keys that overlap it. A code that shares
        more units with one stored key than the crosstalk from the others falls onto that
        key (completion); with n = 1, keys of similar inputs pull a cue onto a mixture of
        them. Silenced units stay silent; ties go to the lowest unit index; the dynamics
        stop early once no code changes.

        Args:
            codes: index activity ``[..., M, U]``; leading dimensions broadcast to the batch shape.
            steps: the most synchronous updates, >= 0 (0 returns the masked codes).
            power: n, an integer >= 1.

        Returns:
            binary codes ``[..., M, U]`` with at most ``active`` ones per row.

        Example:
            >>> import torch
            >>> gen = torch.Generator().manual_seed(3)
            >>> x, v = torch.randn(10, 50, generator=gen), torch.randn(10, 4, generator=gen)
            >>> index = HippocampalIndex(num_units=500, active=25)
            >>> index.write(x, v)
            >>> noisy = index.encode(x + 0.8 * torch.randn(10, 50, generator=gen))
            >>> bool(((noisy * index.keys).sum(-1) < 25).all())       # partial codes
            True
            >>> torch.equal(index.complete(noisy), index.keys)          # completed
            True
        """
        codes = self._index_codes(codes, "codes")
        steps = check_int(steps, "steps", minimum=0)
        power = check_int(power, "power", minimum=1)
        weighted = self.keys * self.key_gain.unsqueeze(-1)
        alive = self.unit_mask.unsqueeze(-2)
        for _ in range(steps):
            drive = ((codes @ self.keys.transpose(-1, -2)) / self.active) ** power @ weighted
            new = _winners(drive, self.active) * (drive > 0).to(drive.dtype) * alive
            if new.shape == codes.shape and torch.equal(new, codes):
                break
            codes = new
        return codes

    # -- lesions and boosts ----------------------------------------------------------
    def _require_memories(self, what: str) -> None:
        if self.is_empty:
            raise ValueError(f"{type(self).__name__} is empty: write memories before {what}")

    def _generator(self, seed: int | None) -> tuple[torch.Generator, bool]:
        """A generator: fresh from ``seed``, or the internal one (then its state must be saved)."""
        if seed is not None:
            return torch.Generator().manual_seed(check_int(seed, "seed", minimum=0)), False
        if self.rng_state is None:
            self.rng_state = self._draw_projection(self.projection.shape[-1])[1]
        gen = torch.Generator()
        gen.set_state(self.rng_state.cpu())
        return gen, True

    def _select(self, selection: Any, size: int, shape: torch.Size, name: str, what: str) -> torch.Tensor:
        """Turn indices (shared by every trial) or a boolean mask into a mask of ``shape``."""
        if isinstance(selection, bool):
            raise TypeError(f"{name}: expected indices or a boolean mask, got a bool")
        if isinstance(selection, int):
            selection = [selection]
        if isinstance(selection, (list, tuple, range)):
            if not all(isinstance(i, int) and not isinstance(i, bool) for i in selection):
                raise TypeError(f"{name}: expected integer indices of {what}, got {list(selection)!r}")
            selection = torch.tensor(list(selection), dtype=torch.long)
        if not isinstance(selection, torch.Tensor):
            raise TypeError(
                f"{name}: expected indices (int, list, LongTensor) or a boolean mask, got {type(selection).__name__}"
            )
        device = self.keys.device
        if selection.dtype == torch.bool:
            try:
                return torch.broadcast_to(selection.to(device), shape).clone()
            except RuntimeError:
                raise ValueError(
                    f"{name}: a boolean mask must broadcast to {tuple(shape)} ([..., {what}]), "
                    f"got {tuple(selection.shape)}"
                ) from None
        if selection.is_floating_point() or selection.is_complex() or selection.dim() > 1:
            raise TypeError(
                f"{name}: expected a 1-D integer index tensor or a boolean mask, "
                f"got {selection.dtype} {tuple(selection.shape)}"
            )
        if selection.numel() and (int(selection.min()) < -size or int(selection.max()) >= size):
            raise ValueError(f"{name}: indices must lie in [0, {size}) ({what}), got {selection.tolist()}")
        mask = torch.zeros(size, dtype=torch.bool, device=device)
        mask[selection.to(device) % size] = True
        return mask.expand(shape).clone()

    def lesion_units(self, fraction: float | None = None, *, units: Any = None, seed: int | None = None) -> None:
        """Silence index units: they never fire again, in cues or in new keys.

        Give exactly one of ``fraction`` (each trial independently silences
        round(fraction * U) more units, drawn uniformly among its units still alive) and
        ``units`` (unit indices shared by every trial, or a boolean mask ``[..., U]``).
        Stored keys keep their entries, but a silenced unit can no longer be matched.

        Args:
            fraction: in [0, 1].
            units: which units to silence.
            seed: seed for this draw; default the index's own generator.
        """
        self._require_memories("lesioning units")
        if (fraction is None) == (units is None):
            raise ValueError("lesion_units: give exactly one of fraction and units")
        shape = self.unit_mask.shape
        if units is not None:
            kill = self._select(units, self.num_units, shape, "units", "units")
        else:
            if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction <= 1:
                raise ValueError(f"fraction: expected a number in [0, 1], got {fraction!r}")
            count = round(fraction * self.num_units)
            gen, internal = self._generator(seed)
            r = torch.rand(shape, generator=gen, dtype=torch.float64).to(self.unit_mask.device)
            # Dead units rank last, so the draw is uniform among the living.
            r = torch.where(self.unit_mask > 0, r, torch.full_like(r, 2.0))
            ranks = r.argsort(dim=-1).argsort(dim=-1)
            kill = ranks < count
            if internal:
                self.rng_state = gen.get_state()
        self.unit_mask = self.unit_mask.masked_fill(kill, 0.0)

    def lesion_keys(self, memories: Any) -> None:
        """Remove the keys of chosen memories (strength 0): their values stay, unreachable.

        Args:
            memories: memory indices shared by every trial, or a boolean mask ``[..., N]``.
        """
        self._require_memories("lesioning keys")
        mask = self._select(memories, len(self), self.key_gain.shape, "memories", "memories")
        self.key_gain = self.key_gain.masked_fill(mask, 0.0)

    def amplify_keys(self, memories: Any, beta: float) -> None:
        """Multiply the key strength of chosen memories by ``beta`` (reactivation for beta > 1).

        A weakened ("silent") key is restored by amplification; a lesioned key (strength 0)
        is not.

        Args:
            memories: memory indices shared by every trial, or a boolean mask ``[..., N]``.
            beta: factor, > 0 (below 1 it weakens the keys).
        """
        self._require_memories("amplifying keys")
        beta = check_positive(beta, "beta")
        mask = self._select(memories, len(self), self.key_gain.shape, "memories", "memories")
        self.key_gain = torch.where(mask, self.key_gain * beta, self.key_gain)

    def degrade_values(self, noise: float, *, memories: Any = None, seed: int | None = None) -> None:
        """Add Gaussian noise of standard deviation ``noise`` to stored cortical values.

        Args:
            noise: standard deviation, >= 0.
            memories: which memories (indices or mask ``[..., N]``); default all.
            seed: seed for this draw; default the index's own generator.
        """
        self._require_memories("degrading values")
        noise = check_positive(noise, "noise", allow_zero=True)
        mask = (
            torch.ones(self.key_gain.shape, dtype=torch.bool, device=self.values.device)
            if memories is None
            else self._select(memories, len(self), self.key_gain.shape, "memories", "memories")
        )
        gen, internal = self._generator(seed)
        eps = torch.randn(self.values.shape, generator=gen, dtype=torch.float64).to(self.values)
        if internal:
            self.rng_state = gen.get_state()
        self.values = self.values + noise * eps * mask.unsqueeze(-1).to(self.values.dtype)


def pattern_separation(
    index: HippocampalIndex,
    similarities: Any = (0.2, 0.4, 0.6, 0.8, 0.9, 0.95),
    *,
    dim: int = 100,
    num_pairs: int = 200,
    seed: int = 0,
    device: Any = None,
) -> dict[str, torch.Tensor]:
    """Input overlap against key overlap for pairs of inputs at set similarities.

    For each target cosine rho, draws ``num_pairs`` Gaussian pairs y = rho x + sqrt(1 - rho^2) z
    and encodes both with ``index`` (drawing its expansion on an empty index). Pattern
    separation means the key overlap lies below the input overlap.

    Args:
        index: the index whose expansion is used (its lesions apply once it holds memories).
        similarities: target input cosines in [0, 1].
        dim: D, the input dimension (must match the index once it holds memories).
        num_pairs: pairs per similarity.
        seed: seed of the inputs (drawn on the CPU, so every device sees the same inputs).
        device: where the inputs are encoded; None: the index's device once it holds
            memories, else the CPU.

    Returns:
        ``{"target", "input_overlap", "key_overlap"}``, each ``[S]`` (means over pairs), on
        that device.

    Example:
        >>> out = pattern_separation(HippocampalIndex(num_units=1000, active=50), [0.5], num_pairs=50)
        >>> bool(out["key_overlap"][0] < out["input_overlap"][0])
        True
    """
    if not isinstance(index, HippocampalIndex):
        raise TypeError(f"index: expected a HippocampalIndex, got {type(index).__name__}")
    rho = as_tensor(torch.as_tensor(similarities, dtype=torch.float64), "similarities")
    if rho.dim() != 1 or rho.numel() == 0 or bool(((rho < 0) | (rho > 1)).any()):
        raise ValueError(f"similarities: expected a non-empty 1-D list of numbers in [0, 1], got {similarities!r}")
    dim = check_int(dim, "dim")
    num_pairs = check_int(num_pairs, "num_pairs")
    gen = torch.Generator().manual_seed(check_int(seed, "seed", minimum=0))
    dtype = torch.get_default_dtype() if index.projection is None else index.projection.dtype
    if device is None:
        device = torch.device("cpu") if index.projection is None else index.projection.device
    device = torch.device(device)
    input_overlap, key_overlap = [], []
    for r in rho.tolist():
        x = torch.randn(num_pairs, dim, generator=gen, dtype=torch.float64)
        z = torch.randn(num_pairs, dim, generator=gen, dtype=torch.float64)
        y = r * x + (1.0 - r * r) ** 0.5 * z
        x, y = x.to(dtype=dtype, device=device), y.to(dtype=dtype, device=device)
        input_overlap.append(code_overlap(x, y).mean())
        key_overlap.append(code_overlap(index.encode(x), index.encode(y)).mean())
    return {
        "target": rho.to(dtype=dtype, device=device),
        "input_overlap": torch.stack(input_overlap),
        "key_overlap": torch.stack(key_overlap),
    }
