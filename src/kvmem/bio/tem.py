"""TEM-style key-value memory: path-integrated position codes as keys, observations as values.

The Tolman-Eichenbaum Machine (TEM; Whittington et al. 2020, *Cell* 183:1249) and its
transformer form TEM-t (Whittington, Warren & Behrens 2022, ICLR, "Relating transformers to
models and neural representations of the hippocampal formation") split what an agent
knows about a place into two parts: a *structural* code g (medial entorhinal cortex; in
TEM-t the recurrent position encoding) that is updated by the agent's own actions, and the
*sensory* observation x (lateral entorhinal cortex). The hippocampus binds them; in TEM-t
that binding is causal softmax attention with keys and queries from g and values from x.
The review (Gershman, Fiete & Irie 2025, Sec. 3) reads this as key-value memory whose
addresses are shaped by the structure of space.

Here, for an agent walking a 2-D grid world (row vectors; t = 0 .. T)::

    g_0 = any fixed code (the agent never sees coordinates: positions are relative)
    g_t = f(W_{a_{t-1}} g_{t-1}),  f = identity           one matrix W_a per action
    k_t = q_t = g_t,   v_t = onehot(x_t)                    keys/queries: position; values: sense
    x^_t = sum_{j < t} softmax_j(beta q_t . k_j) v_j         causal: only earlier steps are stored

The prediction of x_t is read *before* (k_t, v_t) is written, so it uses memories of earlier
steps only. Step 0 has nothing to read.

**The action matrices are built, not learned**, so that path integration is exact: then a
revisit is recognised whatever path led back, which is what the experiment
``tem-grid-world`` tests. TEM and TEM-t learn W_a by gradient descent across many
environments; the codes they learn in open 2-D fields are grid-like and band-like
(periodic in space), and a fixed rotation code is the idealised end point of that learning.
Two codes are offered (:class:`GridCode`):

- ``"plane_wave"`` (default): M two-dimensional blocks; block m holds
  ``(cos phi_m, sin phi_m) / sqrt(M)`` with phase ``phi_m = 2 pi (ky_m r / H' + kx_m c / W')``
  for an integer wave vector k_m on an H' x W' torus. A step by (dr, dc) adds the same angle
  to a block wherever the agent is, so W_a is block-diagonal with 2 x 2 rotations: a
  band-cell / grid-module code (a grid cell is a sum of such plane waves). The matrices are
  orthogonal and commute, so every closed loop composes to the identity. With all
  ``H' W' / 2 + 1`` wave-vector classes the code is (up to a constant) an orthogonal
  transform of the one-hot place code; with fewer modules it is a compressed code whose
  similarity between distinct places is below 1 by :attr:`GridCode.aliasing_gap`.
- ``"onehot"``: g is the one-hot vector of the place and W_a the permutation matrix of the
  move (on the torus): an exact, orthogonal, uncompressed code.

In a periodic world (a torus) the lattice is the world itself (H' = H, W' = W). In a
bounded world walks never cross a wall, so the code only has to be exact inside the arena;
the plane-wave code then uses a torus twice as large (H' = 2H, W' = 2W) so that cells on
opposite walls do not get similar codes.

f is the identity: the matrices are orthogonal, so the code keeps its norm, and a
saturating f would break the group structure that makes loops close. TEM clamps
``g + g D_a`` to [-1, 1] (Bakermans' torch_tem ``f_mu_g_path``); TEM-t reports grid cells
with a linear activation after the transition.

Controls whose keys do not path-integrate (:meth:`TEMMemory.make_keys`): ``"random"`` (a
fresh random unit key per step: a pure time-stamp, no place information) and ``"sensory"``
(the one-hot of the previous observation and the action just taken: the most a memory
that sees only its senses and its own moves can use as an address; it aliases wherever
observations repeat and cannot recognise a known place reached along a new edge).

Analysis helpers: :func:`visit_numbers`, :func:`novel_transitions`, :func:`rate_maps`,
:func:`spatial_information` (Skaggs et al. 1993), its shuffled control
:func:`shuffled_information` and :func:`peak_concentration`.

Example:
    >>> from kvmem.bio.tem import GridWorld, TEMMemory
    >>> world = GridWorld(8, 8, n_obs=16, seed=0)
    >>> walk = world.walk_until_covered(seed=1)
    >>> pred = TEMMemory(world).predict(walk)
    >>> visits = walk.visit_numbers()
    >>> bool(pred.correct[visits > 0].all())     # every revisit predicted
    True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from .._checks import as_tensor, check_int, check_positive, make_generator
from .. import separation as _separation
from .. import similarity as _similarity
from ..memory.slots import SlotMemory

__all__ = [
    "ACTIONS",
    "MOVES",
    "Attention",
    "GridCode",
    "GridWorld",
    "TEMMemory",
    "TEMPrediction",
    "Walk",
    "causal_attention",
    "novel_transitions",
    "peak_concentration",
    "random_keys",
    "rate_maps",
    "sensory_keys",
    "shuffled_information",
    "spatial_information",
    "visit_numbers",
]

#: Action names, in action-id order.
ACTIONS = ("north", "east", "south", "west")
#: (row change, column change) of each action; row 0 is the top (north) row.
MOVES = ((-1, 0), (0, 1), (1, 0), (0, -1))
CODE_KINDS = ("plane_wave", "onehot")
KEY_KINDS = ("position", "random", "sensory")
MODES = ("parallel", "online")


def _device(device: Any) -> torch.device:
    try:
        return torch.device("cpu" if device is None else device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device: expected a torch device such as 'cpu' or 'cuda', got {device!r}") from None


def _check_dtype(dtype: Any) -> torch.dtype:
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype: expected a floating torch.dtype, got {dtype!r}")
    return dtype


def _long_1d(x: Any, name: str) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor or numpy.ndarray of integers, got {type(x).__name__}")
    if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
        raise TypeError(f"{name}: expected integer entries, got dtype {x.dtype}")
    if x.dim() != 1:
        raise ValueError(f"{name}: expected one dimension, got shape {tuple(x.shape)}")
    return x.long()


# --------------------------------------------------------------------------------------
# Walks and the grid world
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Walk:
    """A trajectory: the places visited and the actions taken between them.

    Attributes:
        places: ``[T + 1]`` (long) place ids, ``row * width + col``.
        actions: ``[T]`` (long) action ids (see :data:`ACTIONS`); ``actions[t]`` leads from
            ``places[t]`` to ``places[t + 1]``.

    Example:
        >>> import torch
        >>> w = Walk(torch.tensor([0, 1, 0]), torch.tensor([1, 3]))
        >>> w.steps, w.visit_numbers().tolist()
        (2, [0, 0, 1])
    """

    places: torch.Tensor
    actions: torch.Tensor

    def __post_init__(self):
        places = _long_1d(self.places, "places")
        actions = _long_1d(self.actions, "actions")
        if places.numel() != actions.numel() + 1:
            raise ValueError(
                f"places: expected one more entry than actions ({actions.numel() + 1}), got {places.numel()}"
            )
        object.__setattr__(self, "places", places)
        object.__setattr__(self, "actions", actions.to(places.device))

    @property
    def steps(self) -> int:
        """T, the number of actions."""
        return int(self.actions.numel())

    def then(self, other: "Walk") -> "Walk":
        """This walk followed by ``other``, which must start where this one ends."""
        if not isinstance(other, Walk):
            raise TypeError(f"other: expected a Walk, got {type(other).__name__}")
        if int(other.places[0]) != int(self.places[-1]):
            raise ValueError(
                f"other: expected to start at place {int(self.places[-1])} where this walk ends, "
                f"got {int(other.places[0])}"
            )
        return Walk(
            torch.cat([self.places, other.places[1:].to(self.places.device)]),
            torch.cat([self.actions, other.actions.to(self.places.device)]),
        )

    def visit_numbers(self) -> torch.Tensor:
        """See :func:`visit_numbers`."""
        return visit_numbers(self.places)

    def novel_transitions(self) -> torch.Tensor:
        """See :func:`novel_transitions`."""
        return novel_transitions(self.places, self.actions)


class GridWorld:
    """A height x width grid of places, each with a fixed random observation.

    Observations are categories ``0 .. n_obs - 1`` drawn i.i.d. uniformly per place (seeded),
    so with fewer categories than places they repeat: the world is *aliased* and an
    observation alone does not tell where the agent is. Actions are :data:`ACTIONS`. A
    periodic world is a torus; in a bounded one a move into a wall is not allowed (random
    walks choose among the moves that stay inside, so every action really moves the agent).

    Args:
        height, width: size, each >= 2.
        n_obs: number of observation categories, >= 1.
        periodic: torus (True) or walled arena (False).
        seed: seed of the observations.
        device: where :attr:`observations` and the walks' tensors live.

    Shapes:
        observations ``[height * width]`` (long).

    Example:
        >>> world = GridWorld(4, 5, n_obs=3, periodic=False, seed=0)
        >>> world.n_places, world.place(1, 2), world.coords(7)
        (20, 7, (1, 2))
        >>> world.valid_actions(0).tolist()       # top-left corner: only east and south
        [False, True, True, False]
    """

    def __init__(
        self,
        height: int = 8,
        width: int = 8,
        n_obs: int = 16,
        *,
        periodic: bool = True,
        seed: int = 0,
        device: Any = None,
    ) -> None:
        self.height = check_int(height, "height", minimum=2)
        self.width = check_int(width, "width", minimum=2)
        self.n_obs = check_int(n_obs, "n_obs", minimum=1)
        if not isinstance(periodic, bool):
            raise TypeError(f"periodic: expected a bool, got {type(periodic).__name__}")
        self.periodic = periodic
        self.seed = check_int(seed, "seed", minimum=0)
        self.device = _device(device)
        gen = make_generator(self.seed)
        self.observations = torch.randint(self.n_obs, (self.n_places,), generator=gen).to(self.device)
        # Neighbour table: next place for each (place, action), -1 where a wall blocks it.
        rows, cols = np.divmod(np.arange(self.n_places), self.width)
        table = np.empty((self.n_places, len(ACTIONS)), dtype=np.int64)
        for a, (dr, dc) in enumerate(MOVES):
            r, c = rows + dr, cols + dc
            if self.periodic:
                table[:, a] = (r % self.height) * self.width + c % self.width
            else:
                inside = (r >= 0) & (r < self.height) & (c >= 0) & (c < self.width)
                table[:, a] = np.where(inside, r * self.width + c, -1)
        self._table = table

    def __repr__(self) -> str:
        kind = "periodic" if self.periodic else "bounded"
        return f"GridWorld({self.height}x{self.width}, n_obs={self.n_obs}, {kind}, seed={self.seed})"

    @property
    def n_places(self) -> int:
        return self.height * self.width

    def place(self, row: int, col: int) -> int:
        """The id of the place at (row, col)."""
        row = check_int(row, "row", minimum=0)
        col = check_int(col, "col", minimum=0)
        if row >= self.height or col >= self.width:
            raise ValueError(f"row, col: expected 0 <= row < {self.height} and 0 <= col < {self.width}, got ({row}, {col})")
        return row * self.width + col

    def coords(self, place: int) -> tuple[int, int]:
        """(row, col) of a place id."""
        place = self._check_place(place, "place")
        return divmod(place, self.width)

    def _check_place(self, place: Any, name: str) -> int:
        if isinstance(place, torch.Tensor) and place.numel() == 1 and not place.is_floating_point():
            place = int(place)
        place = check_int(place, name, minimum=0)
        if place >= self.n_places:
            raise ValueError(f"{name}: expected a place id < {self.n_places}, got {place}")
        return place

    def valid_actions(self, places: Any) -> torch.Tensor:
        """Which actions stay inside the world: ``[..., 4]`` (bool) for place ids ``[...]``."""
        p = self._places(places, "places")
        return torch.from_numpy(self._table[p.cpu().numpy()] >= 0).to(self.device)

    def _places(self, places: Any, name: str) -> torch.Tensor:
        if isinstance(places, int) and not isinstance(places, bool):
            places = torch.tensor(places)
        if isinstance(places, np.ndarray):
            places = torch.from_numpy(np.ascontiguousarray(places))
        if not isinstance(places, torch.Tensor) or places.is_floating_point() or places.dtype == torch.bool:
            raise TypeError(f"{name}: expected integer place ids (int or integer tensor), got {places!r:.60}")
        if places.numel() and (int(places.min()) < 0 or int(places.max()) >= self.n_places):
            raise ValueError(f"{name}: expected place ids in [0, {self.n_places}), got range "
                             f"[{int(places.min())}, {int(places.max())}]")
        return places.long()

    def step(self, places: Any, actions: Any) -> torch.Tensor:
        """The places reached by taking ``actions`` from ``places`` (same shapes, broadcast).

        Raises:
            ValueError: an action id outside 0..3, or (bounded world) a move into a wall.
        """
        p = self._places(places, "places")
        a = self._places_like_actions(actions)
        p, a = torch.broadcast_tensors(p.cpu(), a.cpu())
        nxt = torch.from_numpy(np.asarray(self._table[p.numpy(), a.numpy()]))
        if bool((nxt < 0).any()):
            bad = int((nxt < 0).reshape(-1).nonzero()[0, 0])
            raise ValueError(f"actions: a move from place {int(p.reshape(-1)[bad])} would leave the bounded world")
        return nxt.to(self.device)

    @staticmethod
    def _places_like_actions(actions: Any) -> torch.Tensor:
        if isinstance(actions, int) and not isinstance(actions, bool):
            actions = torch.tensor(actions)
        if isinstance(actions, np.ndarray):
            actions = torch.from_numpy(np.ascontiguousarray(actions))
        if not isinstance(actions, torch.Tensor) or actions.is_floating_point() or actions.dtype == torch.bool:
            raise TypeError(f"actions: expected integer action ids, got {actions!r:.60}")
        if actions.numel() and (int(actions.min()) < 0 or int(actions.max()) >= len(ACTIONS)):
            raise ValueError(f"actions: expected ids in [0, {len(ACTIONS)}), got range "
                             f"[{int(actions.min())}, {int(actions.max())}]")
        return actions.long()

    def observe(self, places: Any) -> torch.Tensor:
        """Observation categories at ``places`` (same shape, long)."""
        return self.observations[self._places(places, "places").to(self.device)]

    def is_valid(self, walk: Walk) -> bool:
        """Whether every action of ``walk`` is allowed and leads to the next listed place."""
        if not isinstance(walk, Walk):
            raise TypeError(f"walk: expected a Walk, got {type(walk).__name__}")
        p = walk.places.cpu().numpy()
        a = walk.actions.cpu().numpy()
        if p.min() < 0 or p.max() >= self.n_places or (a.size and (a.min() < 0 or a.max() >= len(ACTIONS))):
            return False
        return bool((self._table[p[:-1], a] == p[1:]).all())

    # -- random walks ----------------------------------------------------------------
    def _start(self, start: Any, rng: np.random.Generator) -> int:
        if start is None:
            return int(rng.integers(self.n_places))
        return self._check_place(start, "start")

    def _walk(self, rng: np.random.Generator, start: int, steps: int | None, cover: bool, max_steps: int) -> Walk:
        places = [start]
        actions = []
        seen = np.zeros(self.n_places, dtype=bool)
        seen[start] = True
        left = self.n_places - 1
        p = start
        limit = steps if steps is not None else max_steps
        chunk = np.empty(0)
        i = 0
        while len(actions) < limit and not (cover and left == 0):
            if i == len(chunk):
                chunk, i = rng.random(1024), 0
            row = self._table[p]
            allowed = np.flatnonzero(row >= 0)
            # One uniform draw per step picks among the allowed moves.
            a = int(allowed[int(chunk[i] * len(allowed))])
            i += 1
            p = int(row[a])
            actions.append(a)
            places.append(p)
            if not seen[p]:
                seen[p] = True
                left -= 1
        if cover and left:
            raise ValueError(f"max_steps: the walk visited {self.n_places - left} of {self.n_places} places "
                             f"in {max_steps} steps; raise max_steps")
        return Walk(torch.tensor(places, device=self.device), torch.tensor(actions, dtype=torch.long, device=self.device))

    def random_walk(self, steps: int, *, start: int | None = None, seed: int = 0) -> Walk:
        """A uniform random walk of ``steps`` moves (only moves that stay inside the world).

        Args:
            steps: number of actions T (>= 0).
            start: place id to start from; None draws one uniformly.
            seed: seed of the walk (same seed, same walk).

        Example:
            >>> world = GridWorld(3, 3, seed=0)
            >>> walk = world.random_walk(10, start=4, seed=2)
            >>> walk.steps, int(walk.places[0]), world.is_valid(walk)
            (10, 4, True)
        """
        steps = check_int(steps, "steps", minimum=0)
        rng = np.random.default_rng(check_int(seed, "seed", minimum=0))
        return self._walk(rng, self._start(start, rng), steps, cover=False, max_steps=steps)

    def walk_until_covered(self, *, start: int | None = None, seed: int = 0, max_steps: int = 100_000) -> Walk:
        """A uniform random walk that stops at the step where the last unvisited place is reached.

        Raises:
            ValueError: the world was not covered within ``max_steps`` moves.
        """
        max_steps = check_int(max_steps, "max_steps", minimum=1)
        rng = np.random.default_rng(check_int(seed, "seed", minimum=0))
        return self._walk(rng, self._start(start, rng), None, cover=True, max_steps=max_steps)


# --------------------------------------------------------------------------------------
# Path-integrating position codes
# --------------------------------------------------------------------------------------
def _wave_classes(lat_h: int, lat_w: int) -> np.ndarray:
    """Nonzero integer wave vectors (ky, kx) of an lat_h x lat_w torus, one per +-k pair."""
    seen = set()
    out = []
    for ky in range(lat_h):
        for kx in range(lat_w):
            if (ky, kx) == (0, 0) or ((-ky) % lat_h, (-kx) % lat_w) in seen:
                continue
            seen.add((ky, kx))
            out.append((ky, kx))
    return np.array(out, dtype=np.int64)


class GridCode:
    """Action-dependent recurrent position code: g_{t+1} = W_{a_t} g_t with exact path integration.

    Args:
        height, width: the world's size.
        kind: ``"plane_wave"`` (2-D rotation blocks; see the module docstring) or
            ``"onehot"`` (permutation matrices).
        n_modules: plane-wave modules M (code dimension 2M); None takes every wave-vector
            class of the lattice. Ignored by ``"onehot"``.
        periodic: the world is a torus (lattice = world) or bounded (plane-wave lattice
            2H x 2W, so opposite walls are not neighbours in code space).
        seed: seed of the choice of wave vectors.
        candidates: the number of random choices of M wave vectors tried; the one whose
            distinct places are least similar (largest :attr:`aliasing_gap`) is kept.
        dtype, device: of :attr:`matrices` and the codes.

    Attributes:
        matrices: ``[4, D, D]``, W_a in the column convention (g_next = W_a g).
        origin: ``[D]``, the code of place (0, 0) (unit norm).
        wavevectors: ``[M, 2]`` (long) integer (ky, kx), plane-wave only.
        aliasing_gap: 1 - the largest cosine similarity between the codes of two distinct
            places of the world (1 for one-hot; > 0 means every place has its own code).

    Raises:
        ValueError: an unknown kind, too many modules, or a code with two places sharing
            the same vector (aliasing gap 0).

    Example:
        >>> import torch
        >>> code = GridCode(8, 8, n_modules=16, seed=0)
        >>> north, east, south, west = code.matrices
        >>> loop = west @ south @ east @ north              # N, E, S, W: back to the start
        >>> torch.allclose(loop, torch.eye(code.dim), atol=1e-5)
        True
    """

    def __init__(
        self,
        height: int = 8,
        width: int = 8,
        *,
        kind: Literal["plane_wave", "onehot"] = "plane_wave",
        n_modules: int | None = 16,
        periodic: bool = True,
        seed: int = 0,
        candidates: int = 16,
        dtype: torch.dtype = torch.float32,
        device: Any = None,
    ) -> None:
        self.height = check_int(height, "height", minimum=2)
        self.width = check_int(width, "width", minimum=2)
        if kind not in CODE_KINDS:
            raise ValueError(f"kind: expected one of {CODE_KINDS}, got {kind!r}")
        self.kind = kind
        if not isinstance(periodic, bool):
            raise TypeError(f"periodic: expected a bool, got {type(periodic).__name__}")
        self.periodic = periodic
        self.seed = check_int(seed, "seed", minimum=0)
        self.candidates = check_int(candidates, "candidates", minimum=1)
        self.dtype = _check_dtype(dtype)
        self.device = _device(device)
        if kind == "onehot":
            self.lattice = (self.height, self.width)
            self.n_modules = None
            self.wavevectors = None
            self.aliasing_gap = 1.0
            self._build_onehot()
        else:
            self.lattice = (self.height, self.width) if periodic else (2 * self.height, 2 * self.width)
            classes = _wave_classes(*self.lattice)
            if n_modules is None:
                n_modules = len(classes)
            self.n_modules = check_int(n_modules, "n_modules", minimum=1)
            if self.n_modules > len(classes):
                raise ValueError(
                    f"n_modules: expected at most {len(classes)} (the wave-vector classes of a "
                    f"{self.lattice[0]}x{self.lattice[1]} lattice), got {self.n_modules}"
                )
            self.wavevectors, self.aliasing_gap = self._choose(classes)
            if self.aliasing_gap <= 1e-9:
                raise ValueError(
                    f"n_modules: {self.n_modules} modules leave two places with the same code "
                    "(aliasing gap 0); use more modules"
                )
            self._build_plane_wave()

    @property
    def dim(self) -> int:
        """D, the code dimension."""
        return int(self.origin.numel())

    def _displacements(self) -> np.ndarray:
        """Every displacement between two distinct places of the world (as lattice offsets)."""
        h, w = self.height, self.width
        if self.periodic:
            d = [(dy, dx) for dy in range(h) for dx in range(w)]
        else:
            d = [(dy, dx) for dy in range(-(h - 1), h) for dx in range(-(w - 1), w)]
        return np.array([x for x in d if x != (0, 0)], dtype=np.float64)

    def _choose(self, classes: np.ndarray) -> tuple[np.ndarray, float]:
        disp = self._displacements()
        lh, lw = self.lattice
        rng = np.random.default_rng(self.seed)
        best, best_gap = None, -np.inf
        tries = 1 if self.n_modules == len(classes) else self.candidates
        for _ in range(tries):
            pick = np.sort(rng.choice(len(classes), self.n_modules, replace=False))
            k = classes[pick]
            # Cosine similarity of two codes depends only on their displacement d:
            # mean over modules of cos(2 pi k . d / lattice).
            sim = np.cos(2 * np.pi * (np.outer(disp[:, 0], k[:, 0]) / lh + np.outer(disp[:, 1], k[:, 1]) / lw)).mean(1)
            gap = float(1.0 - sim.max())
            if gap > best_gap + 1e-12:
                best, best_gap = k, gap
        return best, best_gap

    def _phases(self, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        k = torch.as_tensor(self.wavevectors, dtype=torch.float64, device=self.device)
        lh, lw = self.lattice
        r = rows.to(device=self.device, dtype=torch.float64).unsqueeze(-1)
        c = cols.to(device=self.device, dtype=torch.float64).unsqueeze(-1)
        return 2 * math.pi * (r * k[:, 0] / lh + c * k[:, 1] / lw)

    def _build_plane_wave(self) -> None:
        m = self.n_modules
        mats = torch.zeros(len(MOVES), 2 * m, 2 * m, dtype=torch.float64, device=self.device)
        idx = torch.arange(m, device=self.device)
        for a, (dr, dc) in enumerate(MOVES):
            delta = self._phases(torch.tensor(dr), torch.tensor(dc))
            c, s = torch.cos(delta), torch.sin(delta)
            # 2 x 2 rotation [[c, -s], [s, c]] on (cos phi, sin phi) adds delta to phi.
            mats[a, 2 * idx, 2 * idx] = c
            mats[a, 2 * idx, 2 * idx + 1] = -s
            mats[a, 2 * idx + 1, 2 * idx] = s
            mats[a, 2 * idx + 1, 2 * idx + 1] = c
        self.matrices = mats.to(self.dtype)
        self.origin = self.code(torch.tensor(0), torch.tensor(0))

    def _build_onehot(self) -> None:
        h, w = self.lattice
        n = h * w
        rows, cols = np.divmod(np.arange(n), w)
        mats = torch.zeros(len(MOVES), n, n, dtype=torch.float64)
        for a, (dr, dc) in enumerate(MOVES):
            dest = ((rows + dr) % h) * w + (cols + dc) % w
            mats[a, torch.from_numpy(dest), torch.arange(n)] = 1.0
        self.matrices = mats.to(dtype=self.dtype, device=self.device)
        self.origin = self.code(torch.tensor(0), torch.tensor(0))

    def code(self, rows: Any, cols: Any) -> torch.Tensor:
        """Closed-form code of the places at (rows, cols) (integer tensors, broadcast): ``[..., D]``."""
        rows = torch.as_tensor(rows)
        cols = torch.as_tensor(cols)
        for name, x in (("rows", rows), ("cols", cols)):
            if x.is_floating_point() or x.dtype == torch.bool:
                raise TypeError(f"{name}: expected integer coordinates, got dtype {x.dtype}")
        rows, cols = torch.broadcast_tensors(rows.long(), cols.long())
        if self.kind == "onehot":
            h, w = self.lattice
            idx = (rows % h) * w + cols % w
            return torch.nn.functional.one_hot(idx.to(self.device), h * w).to(self.dtype)
        ph = self._phases(rows, cols)
        out = torch.stack([torch.cos(ph), torch.sin(ph)], dim=-1).flatten(-2) / math.sqrt(self.n_modules)
        return out.to(self.dtype)

    def step(self, g: Any, actions: Any) -> torch.Tensor:
        """One transition g -> W_a g for each row: g ``[..., D]``, actions ``[...]`` -> ``[..., D]``."""
        g = as_tensor(g, "g", dtype=self.dtype, device=self.device)
        if g.shape[-1] != self.dim:
            raise ValueError(f"g: expected last dimension {self.dim} (the code dimension), got shape {tuple(g.shape)}")
        a = GridWorld._places_like_actions(actions).to(self.device)
        return torch.einsum("...ij,...j->...i", self.matrices[a], g)

    def integrate(self, actions: Any, start: Any = None) -> torch.Tensor:
        """Path integration along an action sequence: the codes g_0 .. g_T.

        Args:
            actions: ``[..., T]`` action ids.
            start: g_0 ``[..., D]``; default :attr:`origin` (positions relative to the start).

        Returns:
            ``[..., T + 1, D]``.
        """
        a = GridWorld._places_like_actions(actions).to(self.device)
        if a.dim() < 1:
            raise ValueError(f"actions: expected at least one dimension [..., T], got shape {tuple(a.shape)}")
        g = self.origin if start is None else as_tensor(start, "start", dtype=self.dtype, device=self.device)
        if g.shape[-1] != self.dim:
            raise ValueError(f"start: expected last dimension {self.dim} (the code dimension), got shape {tuple(g.shape)}")
        g = g.expand(*a.shape[:-1], self.dim)
        out = [g]
        if a.dim() == 1:
            # One walk: index the matrix by a Python int (no gather copy of a D x D block).
            for t in a.tolist():
                g = self.matrices[t] @ g
                out.append(g)
        else:
            for t in range(a.shape[-1]):
                g = torch.einsum("...ij,...j->...i", self.matrices[a[..., t]], g)
                out.append(g)
        return torch.stack(out, dim=-2)


# --------------------------------------------------------------------------------------
# Causal attention
# --------------------------------------------------------------------------------------
@dataclass
class Attention:
    """What :func:`causal_attention` returns.

    Attributes:
        values: ``[..., T, Dv]`` read-outs; row 0 (nothing stored yet) is zero.
        weights: ``[..., T, T]`` read weights, row t over the slots j < t (zero elsewhere).
    """

    values: torch.Tensor
    weights: torch.Tensor


def causal_attention(
    queries: Any,
    keys: Any,
    values: Any,
    *,
    beta: float = 50.0,
    similarity: Any = "dot",
    mode: Literal["parallel", "online"] = "parallel",
) -> Attention:
    """Each step reads the pairs of the steps before it: out_t = softmax_{j<t}(beta S(q_t, k_j)) V.

    ``"parallel"`` computes all steps at once with a causal mask (kvmem's similarity and
    softmax separation); ``"online"`` walks the sequence with a :class:`kvmem.SlotMemory`,
    reading before each write, as an agent would. Both give the same numbers.

    Args:
        queries, keys: ``[..., T, Dk]``.
        values: ``[..., T, Dv]``.
        beta: inverse temperature (> 0).
        similarity: spec of S (see :mod:`kvmem.similarity`).
        mode: ``"parallel"`` or ``"online"``.

    Example:
        >>> import torch
        >>> k = torch.eye(3)[[0, 1, 0]]                     # step 2 revisits step 0's key
        >>> v = torch.tensor([[1.0], [2.0], [3.0]])
        >>> causal_attention(k, k, v, beta=50.0).values.squeeze(-1).tolist()
        [0.0, 1.0, 1.0]
    """
    q = as_tensor(queries, "queries", min_rank=2)
    k = as_tensor(keys, "keys", min_rank=2, dtype=q.dtype, device=q.device)
    v = as_tensor(values, "values", min_rank=2, dtype=q.dtype, device=q.device)
    if k.shape[-1] != q.shape[-1]:
        raise ValueError(f"keys: expected last dimension {q.shape[-1]} (as queries), got shape {tuple(k.shape)}")
    if k.shape[:-1] != q.shape[:-1]:
        raise ValueError(f"keys: expected shape [..., T, D] matching queries {tuple(q.shape)}, got {tuple(k.shape)}")
    if v.shape[:-1] != q.shape[:-1]:
        raise ValueError(f"values: expected shape [..., T, Dv] with [..., T] = {tuple(q.shape[:-1])}, got {tuple(v.shape)}")
    beta = check_positive(beta, "beta")
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")
    steps = q.shape[-2]
    sep = _separation.get({"name": "softmax", "beta": beta})
    sim = _similarity.get(similarity)
    if mode == "online":
        return _online(q, k, v, sim, sep)
    scores = sim(q, k)
    past = torch.ones(steps, steps, dtype=torch.bool, device=q.device).tril(-1)
    # Row 0 has no past; give it a dummy finite row so the softmax stays finite, then zero it.
    masked = scores.masked_fill(~past, -math.inf)
    masked[..., 0, :] = 0.0
    weights = sep(masked)
    weights[..., 0, :] = 0.0
    return Attention(weights @ v, weights)


def _online(q, k, v, sim, sep) -> Attention:
    steps = q.shape[-2]
    batch = q.shape[:-2]
    weights = q.new_zeros(*batch, steps, steps)
    out = v.new_zeros(*batch, steps, v.shape[-1])
    mem = SlotMemory(similarity=sim, separation=sep)
    for t in range(steps):
        if t:
            r = mem.read(q[..., t : t + 1, :], details=True)
            out[..., t, :] = r.values[..., 0, :]
            weights[..., t, :t] = r.weights[..., 0, :]
        mem.write(k[..., t : t + 1, :], v[..., t : t + 1, :])
    return Attention(out, weights)


# --------------------------------------------------------------------------------------
# Keys of the controls
# --------------------------------------------------------------------------------------
def random_keys(steps: int, dim: int, *, seed: int = 0, dtype: torch.dtype = torch.float32, device: Any = None) -> torch.Tensor:
    """A fresh random unit key per step, ``[steps, dim]``: addresses that carry no place.

    Example:
        >>> k = random_keys(5, 8, seed=0)
        >>> k.shape, bool(torch.allclose(k.norm(dim=-1), torch.ones(5)))
        (torch.Size([5, 8]), True)
    """
    steps = check_int(steps, "steps", minimum=1)
    dim = check_int(dim, "dim", minimum=1)
    k = torch.randn(steps, dim, generator=make_generator(seed), dtype=torch.float64)
    k = k / k.norm(dim=-1, keepdim=True)
    return k.to(dtype=_check_dtype(dtype), device=_device(device))


def sensory_keys(observations: Any, actions: Any, n_obs: int, *, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Keys from the senses and the last move only: onehot(x_{t-1}, a_{t-1}), ``[T + 1, 4 n_obs]``.

    Step 0 has no previous observation and gets the zero key.

    Args:
        observations: ``[T + 1]`` categories.
        actions: ``[T]`` action ids.
        n_obs: number of categories.

    Example:
        >>> import torch
        >>> sensory_keys(torch.tensor([2, 0]), torch.tensor([1]), n_obs=3).nonzero().tolist()
        [[1, 9]]
    """
    x = _long_1d(observations, "observations")
    a = _long_1d(actions, "actions").to(x.device)
    n_obs = check_int(n_obs, "n_obs", minimum=1)
    if x.numel() != a.numel() + 1:
        raise ValueError(f"observations: expected one more entry than actions ({a.numel() + 1}), got {x.numel()}")
    if x.numel() and (int(x.min()) < 0 or int(x.max()) >= n_obs):
        raise ValueError(f"observations: expected categories in [0, {n_obs}), got range [{int(x.min())}, {int(x.max())}]")
    if a.numel() and (int(a.min()) < 0 or int(a.max()) >= len(ACTIONS)):
        raise ValueError(f"actions: expected ids in [0, {len(ACTIONS)}), got range [{int(a.min())}, {int(a.max())}]")
    keys = torch.zeros(x.numel(), n_obs * len(ACTIONS), dtype=_check_dtype(dtype), device=x.device)
    keys[torch.arange(1, x.numel(), device=x.device), x[:-1] * len(ACTIONS) + a] = 1.0
    return keys


# --------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------
@dataclass
class TEMPrediction:
    """What :meth:`TEMMemory.predict` returns (T + 1 steps).

    Attributes:
        read: ``[T + 1, n_obs]`` the retrieved value mixture (row 0 zero).
        predicted: ``[T + 1]`` (long) argmax of ``read`` (ties: lowest category), -1 at step 0.
        correct: ``[T + 1]`` (bool) predicted == observed (False at step 0).
        weights: ``[T + 1, T + 1]`` attention of step t (query) over slot j < t: the
            activity of memory neuron j at time t.
        keys: ``[T + 1, Dk]`` the keys (= queries).
        observations: ``[T + 1]`` (long) the observed categories.
    """

    read: torch.Tensor
    predicted: torch.Tensor
    correct: torch.Tensor
    weights: torch.Tensor
    keys: torch.Tensor
    observations: torch.Tensor


class TEMMemory:
    """TEM-t-style memory of one grid world: position keys, observation values, causal softmax.

    Args:
        world: the :class:`GridWorld` walked.
        keys: ``"position"`` (path-integrated :class:`GridCode`, the model), ``"random"``
            or ``"sensory"`` (controls without path integration; see the module docstring).
        code: the position code; default ``GridCode(world.height, world.width,
            periodic=world.periodic, n_modules=n_modules, kind=code_kind, seed=seed)``.
        code_kind, n_modules: used to build the default code.
        beta: softmax inverse temperature on unit-norm keys (> 0). Distinct places differ in
            similarity by at least the code's aliasing gap, so beta * gap must exceed the
            log of the number of stored slots for a revisit to outweigh every other memory.
        seed: seed of the default code's wave vectors and of the random keys.
        dtype, device: of every tensor the model makes (device defaults to the world's).

    Example:
        >>> world = GridWorld(5, 5, n_obs=4, periodic=False, seed=3)
        >>> walk = world.walk_until_covered(seed=0)
        >>> tem = TEMMemory(world, n_modules=12)
        >>> sensory = TEMMemory(world, keys="sensory")
        >>> revisit = walk.visit_numbers() > 0
        >>> float(tem.predict(walk).correct[revisit].float().mean())
        1.0
        >>> float(sensory.predict(walk).correct[revisit].float().mean()) < 0.9   # aliasing
        True
    """

    def __init__(
        self,
        world: GridWorld,
        *,
        keys: Literal["position", "random", "sensory"] = "position",
        code: GridCode | None = None,
        code_kind: Literal["plane_wave", "onehot"] = "plane_wave",
        n_modules: int | None = 16,
        beta: float = 50.0,
        seed: int = 0,
        dtype: torch.dtype = torch.float32,
        device: Any = None,
    ) -> None:
        if not isinstance(world, GridWorld):
            raise TypeError(f"world: expected a GridWorld, got {type(world).__name__}")
        if keys not in KEY_KINDS:
            raise ValueError(f"keys: expected one of {KEY_KINDS}, got {keys!r}")
        self.world = world
        self.keys = keys
        self.beta = check_positive(beta, "beta")
        self.seed = check_int(seed, "seed", minimum=0)
        self.dtype = _check_dtype(dtype)
        self.device = world.device if device is None else _device(device)
        if code is None:
            code = GridCode(world.height, world.width, kind=code_kind, n_modules=n_modules,
                            periodic=world.periodic, seed=self.seed, dtype=self.dtype, device=self.device)
        elif not isinstance(code, GridCode):
            raise TypeError(f"code: expected a GridCode, got {type(code).__name__}")
        elif (code.height, code.width, code.periodic) != (world.height, world.width, world.periodic):
            raise ValueError(
                f"code: built for a {code.height}x{code.width} {'periodic' if code.periodic else 'bounded'} "
                f"world, expected {world.height}x{world.width} {'periodic' if world.periodic else 'bounded'}"
            )
        self.code = code

    def _check_walk(self, walk: Walk) -> None:
        if not isinstance(walk, Walk):
            raise TypeError(f"walk: expected a Walk, got {type(walk).__name__}")
        if not self.world.is_valid(walk):
            raise ValueError("walk: not a valid walk of this world (a move into a wall or a place that does not follow)")

    def make_keys(self, walk: Walk) -> torch.Tensor:
        """The keys (= queries) of every step of ``walk``: ``[T + 1, Dk]``, unit norm (zero at step 0 for sensory)."""
        self._check_walk(walk)
        if self.keys == "position":
            g = self.code.integrate(walk.actions.to(self.code.device))
            return g.to(dtype=self.dtype, device=self.device)
        if self.keys == "random":
            return random_keys(walk.steps + 1, self.code.dim, seed=self.seed, dtype=self.dtype, device=self.device)
        x = self.world.observe(walk.places)
        return sensory_keys(x, walk.actions, self.world.n_obs, dtype=self.dtype).to(self.device)

    def predict(self, walk: Walk, *, mode: Literal["parallel", "online"] = "parallel") -> TEMPrediction:
        """Walk ``walk`` from an empty memory, predicting each observation before storing it."""
        keys = self.make_keys(walk)
        x = self.world.observe(walk.places).to(self.device)
        values = torch.nn.functional.one_hot(x, self.world.n_obs).to(self.dtype)
        att = causal_attention(keys, keys, values, beta=self.beta, similarity="dot", mode=mode)
        predicted = att.values.argmax(dim=-1)
        predicted[0] = -1
        return TEMPrediction(att.values, predicted, predicted == x, att.weights, keys, x)


# --------------------------------------------------------------------------------------
# Analysis
# --------------------------------------------------------------------------------------
def visit_numbers(places: Any) -> torch.Tensor:
    """How many times each step's place was visited before that step: ``[T + 1]`` (long).

    Example:
        >>> import torch
        >>> visit_numbers(torch.tensor([3, 4, 3, 3, 5])).tolist()
        [0, 0, 1, 2, 0]
    """
    p = _long_1d(places, "places")
    arr = p.cpu().numpy()
    counts: dict[int, int] = {}
    out = np.empty(len(arr), dtype=np.int64)
    for i, x in enumerate(arr.tolist()):
        out[i] = counts.get(x, 0)
        counts[x] = out[i] + 1
    return torch.from_numpy(out).to(p.device)


def novel_transitions(places: Any, actions: Any) -> torch.Tensor:
    """Whether step t arrives by a (place, action) transition never taken before: ``[T + 1]`` (bool).

    Step 0 (no transition) is False. A step that is both a revisit and a novel transition
    reaches a known place along a new path.

    Example:
        >>> import torch
        >>> novel_transitions(torch.tensor([0, 1, 0, 1]), torch.tensor([1, 3, 1])).tolist()
        [False, True, True, False]
    """
    p = _long_1d(places, "places")
    a = _long_1d(actions, "actions")
    if p.numel() != a.numel() + 1:
        raise ValueError(f"places: expected one more entry than actions ({a.numel() + 1}), got {p.numel()}")
    seen: set[tuple[int, int]] = set()
    out = np.zeros(p.numel(), dtype=bool)
    for t, edge in enumerate(zip(p[:-1].tolist(), a.cpu().tolist())):
        out[t + 1] = edge not in seen
        seen.add(edge)
    return torch.from_numpy(out).to(p.device)


def rate_maps(activity: Any, places: Any, n_places: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean activity of each unit at each place, and the occupancy.

    Args:
        activity: ``[T, N]`` activity of N units (e.g. memory slots' attention weights) at T
            time steps.
        places: ``[T]`` the place at each step.
        n_places: number of places.

    Returns:
        ``(maps [N, n_places], occupancy [n_places])``: maps are NaN where the place was
        never visited; occupancy is the fraction of steps spent at each place.

    Example:
        >>> import torch
        >>> maps, occ = rate_maps(torch.tensor([[1.0], [0.0], [3.0]]), torch.tensor([0, 1, 0]), 3)
        >>> maps.tolist(), [round(p, 4) for p in occ.tolist()]
        ([[2.0, 0.0, nan]], [0.6667, 0.3333, 0.0])
    """
    act = as_tensor(activity, "activity", min_rank=2)
    if act.dim() != 2:
        raise ValueError(f"activity: expected shape [T, N], got {tuple(act.shape)}")
    p = _long_1d(places, "places").to(act.device)
    n_places = check_int(n_places, "n_places", minimum=1)
    if p.numel() != act.shape[0]:
        raise ValueError(f"places: expected {act.shape[0]} entries (one per activity row), got {p.numel()}")
    if p.numel() and (int(p.min()) < 0 or int(p.max()) >= n_places):
        raise ValueError(f"places: expected ids in [0, {n_places}), got range [{int(p.min())}, {int(p.max())}]")
    counts = torch.zeros(n_places, dtype=torch.float64, device=act.device).index_add_(
        0, p, torch.ones(p.numel(), dtype=torch.float64, device=act.device))
    sums = torch.zeros(n_places, act.shape[1], dtype=act.dtype, device=act.device).index_add_(0, p, act)
    maps = (sums / counts.to(act.dtype).unsqueeze(1)).T
    maps = torch.where(counts.unsqueeze(0) > 0, maps, torch.full_like(maps, math.nan))
    return maps, (counts / max(p.numel(), 1)).to(act.dtype)


def spatial_information(maps: Any, occupancy: Any) -> torch.Tensor:
    """Skaggs spatial information in bits per unit activity: sum_x p(x) (r(x)/r) log2(r(x)/r).

    r(x) is the rate map, p(x) the occupancy and r = sum_x p(x) r(x) the mean rate. Places
    never visited (NaN) are left out; a unit with zero mean rate gets NaN. A unit active at
    a single place of occupancy p scores log2(1/p); a flat map scores 0.

    Args:
        maps: ``[..., n_places]``.
        occupancy: ``[n_places]`` (sums to 1 over visited places).

    Returns:
        ``[...]``.

    Example:
        >>> import torch
        >>> occ = torch.full((4,), 0.25)
        >>> spatial_information(torch.tensor([[1.0, 0, 0, 0], [1.0, 1, 1, 1]]), occ).tolist()
        [2.0, 0.0]
    """
    r = as_tensor(maps, "maps", finite=False)
    occ = as_tensor(occupancy, "occupancy", dtype=r.dtype, device=r.device)
    if occ.dim() != 1 or occ.shape[0] != r.shape[-1]:
        raise ValueError(f"occupancy: expected shape [{r.shape[-1]}] (one entry per place), got {tuple(occ.shape)}")
    seen = ~torch.isnan(r)
    r0 = torch.where(seen, r, torch.zeros_like(r))
    p = torch.where(seen, occ.expand_as(r), torch.zeros_like(r))
    mean = (p * r0).sum(-1, keepdim=True)
    ratio = r0 / mean
    term = torch.where(ratio > 0, p * ratio * torch.log2(ratio.clamp_min(torch.finfo(r.dtype).tiny)), torch.zeros_like(r))
    info = term.sum(-1)
    return torch.where(mean.squeeze(-1) > 0, info, torch.full_like(info, math.nan))


def peak_concentration(maps: Any) -> torch.Tensor:
    """Share of a rate map in its peak place: max_x r(x) / sum_x r(x) over visited places.

    1 for a unit active at one place only, 1 / (visited places) for a flat map.

    Example:
        >>> import torch
        >>> peak_concentration(torch.tensor([[3.0, 1.0, float("nan")]])).tolist()
        [0.75]
    """
    r = as_tensor(maps, "maps", finite=False)
    r0 = torch.nan_to_num(r, nan=0.0)
    total = r0.sum(-1)
    peak = r0.amax(-1)
    return torch.where(total > 0, peak / total.clamp_min(torch.finfo(r.dtype).tiny), torch.full_like(total, math.nan))


def shuffled_information(activity: Any, places: Any, n_places: int, shifts: Any) -> torch.Tensor:
    """Spatial information after circularly shifting the positions against the activity.

    The standard shuffle control for place cells: shifting the position sequence by s
    steps keeps each unit's activity statistics, its temporal structure and the occupancy
    (the same places, in the same order, only out of register), and destroys any tie
    between activity and place.

    Args:
        activity: ``[T, N]``.
        places: ``[T]``.
        n_places: number of places.
        shifts: integer shifts (each taken mod T).

    Returns:
        ``[len(shifts), N]`` spatial information (bits) of each unit under each shift; a
        shift of 0 gives :func:`spatial_information` of :func:`rate_maps`.

    Example:
        >>> import torch
        >>> act = torch.eye(4)[[0, 1, 2, 3, 0, 1, 2, 3]]          # unit i fires at place i
        >>> places = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
        >>> shuffled_information(act, places, 4, [0, 2])[:, 0].tolist()   # shift 2: still one place
        [2.0, 2.0]
        >>> round(shuffled_information(act, torch.tensor([0, 1, 2, 3, 1, 0, 3, 2]), 4, [1])[0, 0].item(), 3)
        1.0
    """
    act = as_tensor(activity, "activity", min_rank=2)
    if act.dim() != 2:
        raise ValueError(f"activity: expected shape [T, N], got {tuple(act.shape)}")
    p = _long_1d(places, "places").to(act.device)
    n_places = check_int(n_places, "n_places", minimum=1)
    if p.numel() != act.shape[0] or p.numel() == 0:
        raise ValueError(f"places: expected {act.shape[0]} entries (one per activity row, at least 1), got {p.numel()}")
    if int(p.min()) < 0 or int(p.max()) >= n_places:
        raise ValueError(f"places: expected ids in [0, {n_places}), got range [{int(p.min())}, {int(p.max())}]")
    shifts = [check_int(int(x) if isinstance(x, (np.integer, torch.Tensor)) else x, "shifts", minimum=0) for x in shifts]
    counts = torch.zeros(n_places, dtype=act.dtype, device=act.device).index_add_(0, p, torch.ones_like(p, dtype=act.dtype))
    seen = counts > 0
    # A shift leaves the occupancy unchanged, so only the summed activity per place is redone.
    total = act.sum(0)
    out = []
    for s in shifts:
        sums = torch.zeros(n_places, act.shape[1], dtype=act.dtype, device=act.device).index_add_(
            0, torch.roll(p, s % p.numel()), act)[seen]
        # r(x)/r = (sums(x) / counts(x)) / (total / T); p(x) r(x)/r = sums(x) / total.
        ratio = (sums / counts[seen].unsqueeze(1)) / (total / p.numel())
        share = sums / total
        term = torch.where(sums > 0, share * torch.log2(ratio.clamp_min(torch.finfo(act.dtype).tiny)), torch.zeros_like(sums))
        info = term.sum(0)
        out.append(torch.where(total > 0, info, torch.full_like(info, math.nan)))
    return torch.stack(out) if out else act.new_zeros(0, act.shape[1])
