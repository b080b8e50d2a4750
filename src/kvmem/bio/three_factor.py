"""Key-value memory written by three-factor plasticity (Tyulmankov, Fang, Vadaparty & Yang 2021).

A three-layer network: input x (d units) -> hidden h (N units, one per slot) -> output y
(m units). Row i of the key matrix K holds the input-to-hidden weights of hidden unit i
(its key); row i of the value matrix V holds the hidden-to-output weights of that unit (its
value). kvmem uses row vectors, so V here is the transpose of the paper's m x N matrix.

Read (one feedforward pass, no attractor dynamics)::

    h = softmax(beta K x)        y~ = V^T h = sum_i h_i v_i

Write of the pair (x_t, y_t) with global factor q_t (store signal, e.g. a neuromodulator)
and local factor gamma_t (one entry per hidden unit, e.g. a dendritic plateau), learning
rate eta_i = q_t gamma_t,i:

- keys, non-Hebbian ("pre-only") overwrite: ``K_i <- (1 - eta_i) K_i + eta_i x_t``,
  i.e. ``K <- (1 - eta) K + eta 1 x^T`` (the review's Eq. 12: dK_ij ~ mu gamma_i (x_j - K_ij));
- values, Hebbian overwrite with the output clamped to the target, read through the
  updated keys: ``h' = softmax(beta K_new x_t)``, ``V_i <- (1 - eta_i) V_i + eta_i h'_i y_t``
  (the review's Eq. 13: dV_mi ~ mu gamma_i alpha_i (v_m - V_mi), with alpha = h').

Local factors: ``"sequential"`` selects hidden unit t mod N at presentation t (a
least-recently-used approximation; the pointer moves on every presentation, stored or
not), ``"random"`` draws gamma_t,i ~ Bernoulli(p) independently for every unit.

:class:`ThreeFactorMemory` is this network as a kvmem memory (batched over trials,
save/load through :func:`kvmem.save`). :class:`PlasticityRule` and
:class:`PlasticKeyValueNetwork` replace the two hand-designed rules by a parametrised local
rule (coefficients of the pre, post, pre x post and decay terms of each synapse type),
which :func:`meta_learn` trains by backpropagation through time on the recall task.

Checked against the paper (arXiv:2110.13976, Secs. 2-3 and App. A) and the authors' code
(github.com/gyyang/bio-kvm); the differences are listed in docs/bio-three-factor.md.

Example:
    >>> import torch
    >>> from kvmem.bio.three_factor import ThreeFactorMemory, recall_task
    >>> patterns, queries = recall_task(trials=2, length=10, dim=40, seed=0)
    >>> mem = ThreeFactorMemory(slots=40)
    >>> mem.write(patterns, patterns)
    >>> bool((torch.sign(mem.read(queries)) == patterns).all())
    True
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

import torch
from torch import nn

from .._checks import as_tensor, check_int, check_positive, make_generator
from ..memory.base import Memory, ReadResult, register_memory

LOCAL_FACTORS = ("sequential", "random")
VALUE_GATES = ("local", "global")
#: The terms of a parametrised local rule, in coefficient order.
RULE_TERMS = ("pre", "post", "prepost", "decay")
SYNAPSES = ("key", "value")
#: Hand-designed coefficients: keys dK = x_j - K_ij (pre-only, with matched decay),
#: values dV = y_k h'_i - V_ik (Hebbian, with matched decay).
HAND_DESIGNED = {"key": (1.0, 0.0, 0.0, -1.0), "value": (0.0, 0.0, 1.0, -1.0)}


def _check_local(local: Any, p: Any) -> tuple[str, float]:
    if local not in LOCAL_FACTORS:
        raise ValueError(f"local: expected one of {LOCAL_FACTORS}, got {local!r}")
    p = check_positive(p, "p")
    if p > 1.0:
        raise ValueError(f"p: expected a probability in (0, 1], got {p}")
    return local, p


def _local_factor(
    local: str, step: int, batch: torch.Size, n: int, p: float, gen: torch.Generator | None, like: torch.Tensor
) -> torch.Tensor:
    """gamma_t ``[*batch, N]`` (0 or 1) for presentation number ``step`` (0-based)."""
    if local == "sequential":
        gamma = torch.zeros(n, dtype=like.dtype, device=like.device)
        gamma[step % n] = 1.0
        return gamma.expand(*batch, n)
    return (torch.rand(*batch, n, generator=gen) < p).to(dtype=like.dtype, device=like.device)


def _store_signal(store: Any, keys: torch.Tensor) -> torch.Tensor:
    """The global factor q ``[..., T]`` broadcast to the keys' leading shape, in [0, 1]."""
    shape = keys.shape[:-1]
    if store is None:
        return keys.new_ones(shape)
    q = as_tensor(store, "store", min_rank=0, dtype=keys.dtype, device=keys.device)
    try:
        q = q.expand(shape)
    except RuntimeError:
        raise ValueError(
            f"store: shape {tuple(q.shape)} must broadcast to the keys' leading shape {tuple(shape)} ([..., T])"
        ) from None
    if q.numel() and not bool(((q >= 0) & (q <= 1)).all()):
        raise ValueError("store: the global factor must lie in [0, 1] (1 stores, 0 leaves the weights alone)")
    return q


@register_memory
class ThreeFactorMemory(Memory):
    """Slot memory written by the three-factor rules of Tyulmankov et al. (2021).

    N hidden units are N slots. Each write presents the pairs one after another; the local
    factor picks the slot(s), the global factor ``store`` gates the whole update. Keys are
    overwritten by the non-Hebbian rule ``K <- (1 - eta) K + eta 1 x^T``, values by the
    Hebbian rule ``V_i <- (1 - eta_i) V_i + eta_i h'_i y`` with h' = softmax(beta K_new x)
    (module docstring). Both matrices start at zero, so an unused slot has score 0 and
    value 0: it takes some read weight but adds nothing to the output.

    Args:
        slots: N, the number of hidden units.
        local: ``"sequential"`` (slot t mod N at the t-th presentation) or ``"random"``
            (each slot independently with probability ``p``).
        p: the Bernoulli probability of the random local factor (the paper uses 0.1 and
            also 4/N; ignored by the sequential one).
        beta: softmax gain of the hidden layer (the paper: 1).
        seed: seed of the random local factor.

    Shapes:
        write: keys ``[..., T, d]``, values ``[..., T, m]``, store ``[..., T]`` (or anything
        broadcasting to it). State: keys ``[..., N, d]``, values ``[..., N, m]``.
        read: queries ``[..., M, d]`` -> ``[..., M, m]``; ``details=True`` adds the
        hidden activity h (weights) and K x (scores), ``[..., M, N]``.

    Example:
        >>> import torch
        >>> from kvmem.bio.three_factor import ThreeFactorMemory
        >>> mem = ThreeFactorMemory(slots=2)
        >>> x = torch.tensor([[1.0, -1, 1, 1], [-1.0, 1, 1, -1], [1.0, 1, -1, -1]])
        >>> mem.write(x, x)                      # the third pair overwrites slot 0
        >>> mem.keys.tolist()
        [[1.0, 1.0, -1.0, -1.0], [-1.0, 1.0, 1.0, -1.0]]
        >>> torch.sign(mem.read(torch.tensor([[0.0, 1, -1, 0]]))).tolist()   # a cue of the third
        [[1.0, 1.0, -1.0, -1.0]]
    """

    _state_names = ("keys", "values", "clock", "rng_state")

    def __init__(
        self,
        slots: int,
        local: Literal["sequential", "random"] = "sequential",
        p: float = 0.1,
        beta: float = 1.0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.slots = check_int(slots, "slots", minimum=1)
        self.local, self.p = _check_local(local, p)
        self.beta = check_positive(beta, "beta")
        self.seed = check_int(seed, "seed", minimum=0)

    def config(self) -> dict[str, Any]:
        return {"slots": self.slots, "local": self.local, "p": self.p, "beta": self.beta, "seed": self.seed}

    def _batch_shape(self) -> torch.Size:
        return self.keys.shape[:-2]

    def _key_dim(self) -> int:
        return self.keys.shape[-1]

    def _required_state(self):
        return ("keys", "values", "clock")

    @property
    def presented(self) -> int:
        """How many pairs were presented so far (stored or not; 0 while empty)."""
        return 0 if self.is_empty else int(self.clock)

    # -- writing -------------------------------------------------------------------
    def write(self, keys: Any, values: Any, store: Any = None) -> None:
        """Present the pairs in order, each updating the weights by the three-factor rules.

        Args:
            keys: ``[..., T, d]`` (the inputs x_t).
            values: ``[..., T, m]`` (the clamped targets y_t).
            store: the global factor q_t, ``[..., T]`` or broadcastable, in [0, 1]; None
                stores every pair (q = 1). A pair with q = 0 changes nothing, but the
                sequential pointer still moves past its slot.
        """
        keys, values = self._pairs(keys, values)
        if not self.is_empty:
            for arg, new, old in (("keys", keys, self.keys), ("values", values, self.values)):
                if new.shape[-1] != old.shape[-1]:
                    raise ValueError(
                        f"{arg}: expected last dimension {old.shape[-1]} (as stored), got shape {tuple(new.shape)}"
                    )
        q = _store_signal(store, keys)
        batch, n = keys.shape[:-2], self.slots
        if self.is_empty:
            self.keys = keys.new_zeros(*batch, n, keys.shape[-1])
            self.values = values.new_zeros(*batch, n, values.shape[-1])
            self.clock = torch.zeros((), dtype=torch.long)
            if self.local == "random":
                self.rng_state = make_generator(self.seed).get_state()
        gen = None
        if self.local == "random":
            gen = torch.Generator()
            gen.set_state(self.rng_state)
        k, v, clock = self.keys, self.values, int(self.clock)
        for t in range(keys.shape[-2]):
            x, y = keys[..., t, :], values[..., t, :]
            gamma = _local_factor(self.local, clock, batch, n, self.p, gen, k)
            eta = (q[..., t, None] * gamma).unsqueeze(-1)  # [*batch, N, 1]
            k = k + eta * (x.unsqueeze(-2) - k)
            h_new = torch.softmax(self.beta * (k @ x.unsqueeze(-1)).squeeze(-1), dim=-1)
            v = v + eta * (h_new.unsqueeze(-1) * y.unsqueeze(-2) - v)
            clock += 1
        self.keys, self.values = k, v
        self.clock = torch.tensor(clock)
        if gen is not None:
            self.rng_state = gen.get_state()

    # -- reading -------------------------------------------------------------------
    def read(self, queries: Any, details: bool = False) -> torch.Tensor | ReadResult:
        """y~ = V^T softmax(beta K x~) for each query (no plasticity: q = 0).

        Args:
            queries: ``[..., M, d]``; leading dimensions broadcast to the batch shape.
            details: also return the hidden activity (weights) and K x (scores).

        Returns:
            values ``[..., M, m]``, or a :class:`~kvmem.memory.base.ReadResult`.
        """
        queries = self._queries(queries)
        scores = queries @ self.keys.transpose(-1, -2)
        weights = torch.softmax(self.beta * scores, dim=-1)
        out = weights @ self.values
        return ReadResult(out, weights, scores) if details else out


# ---------------------------------------------------------------------------------------
# Meta-learning: a parametrised local plasticity rule
# ---------------------------------------------------------------------------------------


class PlasticityRule(nn.Module):
    """Coefficients of a local plasticity rule for each synapse type (8 learnable numbers).

    For a synapse w from presynaptic unit j to postsynaptic unit i, gated by g (the
    product of the third factors that reach it)::

        dw_ij = g * (c_pre pre_j + c_post post_i + c_prepost post_i pre_j + c_decay w_ij)

    - key synapses (input x -> hidden h): pre = x_t, post = h_t = softmax(beta K_t x_t)
      (the hidden activity before the update), g = q_t gamma_t,i;
    - value synapses (hidden -> output): pre = h'_t = softmax(beta K_t+1 x_t), post = y_t
      (the output clamped to the target), g = q_t gamma_t,i or q_t alone
      (:class:`PlasticKeyValueNetwork`'s ``value_gate``).

    The hand-designed rules are keys (1, 0, 0, -1) and values (0, 0, 1, -1): a pre-only
    overwrite and a Hebbian overwrite. This expands the affine "pre x post" rule of
    Tyulmankov et al. (f(pre) = a pre + b, g(post) = a' post + b') into its terms, leaving
    out the constant b b'.

    Args:
        key: the four key coefficients (pre, post, prepost, decay).
        value: the four value coefficients.

    Example:
        >>> from kvmem.bio.three_factor import PlasticityRule
        >>> PlasticityRule.hand_designed().coefficients()["key"]
        {'pre': 1.0, 'post': 0.0, 'prepost': 0.0, 'decay': -1.0}
    """

    def __init__(self, key: Any = HAND_DESIGNED["key"], value: Any = HAND_DESIGNED["value"]) -> None:
        super().__init__()
        self.key = nn.Parameter(self._coefficients(key, "key"))
        self.value = nn.Parameter(self._coefficients(value, "value"))

    @staticmethod
    def _coefficients(c: Any, name: str) -> torch.Tensor:
        if isinstance(c, (list, tuple)):
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in c):
                raise TypeError(f"{name}: expected four real numbers {RULE_TERMS}, got {c!r}")
            c = torch.tensor([float(v) for v in c])
        t = as_tensor(c, name, min_rank=1, dtype=torch.get_default_dtype())
        if t.shape != (len(RULE_TERMS),):
            raise ValueError(f"{name}: expected {len(RULE_TERMS)} coefficients {RULE_TERMS}, got shape {tuple(t.shape)}")
        return t.detach().clone()

    @classmethod
    def hand_designed(cls) -> PlasticityRule:
        """The rules of Tyulmankov et al.'s Sec. 2 (what :class:`ThreeFactorMemory` runs)."""
        return cls()

    @classmethod
    def random(cls, scale: float = 0.1, seed: int = 0) -> PlasticityRule:
        """Coefficients drawn from N(0, scale^2), seeded: a start with no built-in answer."""
        scale = check_positive(scale, "scale")
        gen = make_generator(seed)
        return cls(scale * torch.randn(4, generator=gen), scale * torch.randn(4, generator=gen))

    def coefficients(self) -> dict[str, dict[str, float]]:
        """``{"key": {"pre": ..., ...}, "value": {...}}`` as plain floats."""
        return {
            syn: {term: float(c) for term, c in zip(RULE_TERMS, getattr(self, syn).detach())} for syn in SYNAPSES
        }


def _rule_step(
    k: torch.Tensor,
    v: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    g_key: torch.Tensor,
    g_value: torch.Tensor,
    ck: torch.Tensor,
    cv: torch.Tensor,
    beta: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One presentation under a parametrised rule; k ``[*b, N, d]``, v ``[*b, N, m]``,
    x ``[*b, d]``, y ``[*b, m]``, gates ``[*b, N]``."""
    h = torch.softmax(beta * (k @ x.unsqueeze(-1)).squeeze(-1), dim=-1).unsqueeze(-1)  # post, [*b, N, 1]
    pre = x.unsqueeze(-2)  # [*b, 1, d]
    dk = ck[0] * pre + ck[1] * h + ck[2] * (h * pre) + ck[3] * k
    k = k + g_key.unsqueeze(-1) * dk
    h_new = torch.softmax(beta * (k @ x.unsqueeze(-1)).squeeze(-1), dim=-1).unsqueeze(-1)  # pre of V, [*b, N, 1]
    post = y.unsqueeze(-2)  # [*b, 1, m]
    dv = cv[0] * h_new + cv[1] * post + cv[2] * (h_new * post) + cv[3] * v
    v = v + g_value.unsqueeze(-1) * dv
    return k, v


class PlasticKeyValueNetwork(nn.Module):
    """The three-factor network with a learnable :class:`PlasticityRule` (differentiable).

    Functional: :meth:`memorize` returns the weights instead of storing them, so a whole
    sequence of writes and the reads after it form one graph for backpropagation through
    time. With the hand-designed rule and ``value_gate="local"`` it computes what
    :class:`ThreeFactorMemory` does (tested).

    Args:
        slots: N hidden units.
        rule: the plasticity rule (default: hand-designed).
        local: ``"sequential"`` or ``"random"`` local factor.
        p: Bernoulli probability of the random local factor.
        beta: softmax gain of the hidden layer.
        value_gate: ``"local"``: value synapses see q gamma_i, as in Sec. 2 of the paper;
            ``"global"``: they see q only (hidden-unit axons get no dendritic signal, the
            paper's Sec. 3.2), so forgetting must come from the learned decay term.

    Shapes:
        memorize: keys ``[..., T, d]``, values ``[..., T, m]``, store ``[..., T]`` ->
        (K ``[..., N, d]``, V ``[..., N, m]``); recall: queries ``[..., M, d]`` -> ``[..., M, m]``.

    Example:
        >>> import torch
        >>> from kvmem.bio.three_factor import PlasticKeyValueNetwork, recall_task
        >>> net = PlasticKeyValueNetwork(slots=40)
        >>> x, cue = recall_task(trials=1, length=20, dim=40, seed=1)
        >>> y = net(x, x, cue)
        >>> bool((torch.sign(y) == x).all())
        True
    """

    def __init__(
        self,
        slots: int,
        rule: PlasticityRule | None = None,
        local: Literal["sequential", "random"] = "sequential",
        p: float = 0.1,
        beta: float = 1.0,
        value_gate: Literal["local", "global"] = "local",
    ) -> None:
        super().__init__()
        self.slots = check_int(slots, "slots", minimum=1)
        if rule is None:
            rule = PlasticityRule.hand_designed()
        if not isinstance(rule, PlasticityRule):
            raise TypeError(f"rule: expected a PlasticityRule, got {type(rule).__name__}")
        self.rule = rule
        self.local, self.p = _check_local(local, p)
        self.beta = check_positive(beta, "beta")
        if value_gate not in VALUE_GATES:
            raise ValueError(f"value_gate: expected one of {VALUE_GATES}, got {value_gate!r}")
        self.value_gate = value_gate

    def memorize(
        self,
        keys: Any,
        values: Any,
        store: Any = None,
        *,
        generator: torch.Generator | None = None,
        state: tuple[torch.Tensor, torch.Tensor] | None = None,
        step: int = 0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Present the pairs in order; return the weights (K, V) after the last one.

        Args:
            keys: ``[..., T, d]``.
            values: ``[..., T, m]``.
            store: the global factor ``[..., T]`` in [0, 1] (None: all 1).
            generator: draws the random local factor (default: a new one seeded 0).
            state: (K, V) to continue from (default: zeros).
            step: presentations made before ``state`` (the sequential pointer).
        """
        keys = as_tensor(keys, "keys", min_rank=2)
        values = as_tensor(values, "values", min_rank=2, dtype=keys.dtype, device=keys.device)
        if keys.shape[:-1] != values.shape[:-1]:
            raise ValueError(
                f"values: expected shape [..., T, m] with the keys' leading shape {tuple(keys.shape[:-1])}, "
                f"got {tuple(values.shape)}"
            )
        step = check_int(step, "step", minimum=0)
        q = _store_signal(store, keys)
        batch, n = keys.shape[:-2], self.slots
        if state is None:
            k = keys.new_zeros(*batch, n, keys.shape[-1])
            v = values.new_zeros(*batch, n, values.shape[-1])
        else:
            k, v = state
            if k.shape != (*batch, n, keys.shape[-1]) or v.shape != (*batch, n, values.shape[-1]):
                raise ValueError(
                    f"state: expected K {(*batch, n, keys.shape[-1])} and V {(*batch, n, values.shape[-1])}, "
                    f"got {tuple(k.shape)} and {tuple(v.shape)}"
                )
        if self.local == "random" and generator is None:
            generator = make_generator(0)
        ck, cv = self.rule.key.to(keys.dtype), self.rule.value.to(keys.dtype)
        for t in range(keys.shape[-2]):
            gamma = _local_factor(self.local, step + t, batch, n, self.p, generator, keys)
            g_key = q[..., t, None] * gamma
            g_value = g_key if self.value_gate == "local" else q[..., t, None].expand_as(gamma)
            k, v = _rule_step(k, v, keys[..., t, :], values[..., t, :], g_key, g_value, ck, cv, self.beta)
        return k, v

    def recall(self, keys_matrix: torch.Tensor, values_matrix: torch.Tensor, queries: Any) -> torch.Tensor:
        """y~ = V^T softmax(beta K x~) for queries ``[..., M, d]`` read from (K, V)."""
        queries = as_tensor(queries, "queries", min_rank=2, dtype=keys_matrix.dtype, device=keys_matrix.device)
        if queries.shape[-1] != keys_matrix.shape[-1]:
            raise ValueError(
                f"queries: expected shape [..., M, {keys_matrix.shape[-1]}] (the key dimension), got {tuple(queries.shape)}"
            )
        weights = torch.softmax(self.beta * (queries @ keys_matrix.transpose(-1, -2)), dim=-1)
        return weights @ values_matrix

    def forward(self, keys: Any, values: Any, queries: Any, store: Any = None, *, generator: torch.Generator | None = None):
        """Memorize all pairs, then read every query: ``[..., M, m]``."""
        k, v = self.memorize(keys, values, store, generator=generator)
        return self.recall(k, v, queries)


# ---------------------------------------------------------------------------------------
# The recall task and meta-learning
# ---------------------------------------------------------------------------------------


def recall_task(
    trials: int,
    length: int,
    dim: int,
    erase: float = 0.6,
    *,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The autoassociative benchmark: random +-1 patterns and cues with entries set to 0.

    Each cue is its pattern with exactly round(erase * dim) entries, at random positions
    drawn independently per cue, set to 0 (Tyulmankov et al.: 60%).

    Args:
        trials: independent sequences (the leading batch dimension).
        length: T, patterns per sequence.
        dim: d, entries per pattern.
        erase: the fraction of entries zeroed in each cue, in [0, 1).
        seed: seed of a new generator (0 when neither seed nor generator is given).
        generator: a CPU ``torch.Generator`` to draw from instead.
        dtype: floating dtype (default: torch's default).

    Returns:
        ``(patterns, cues)``, both ``[trials, length, dim]``.

    Example:
        >>> from kvmem.bio.three_factor import recall_task
        >>> x, cue = recall_task(trials=3, length=5, dim=10, seed=0)
        >>> (cue == 0).sum(-1).tolist()[0]
        [6, 6, 6, 6, 6]
    """
    trials = check_int(trials, "trials", minimum=1)
    length = check_int(length, "length", minimum=1)
    dim = check_int(dim, "dim", minimum=1)
    erase = check_positive(erase, "erase", allow_zero=True)
    if erase >= 1.0:
        raise ValueError(f"erase: expected a fraction in [0, 1), got {erase}")
    if seed is not None and generator is not None:
        raise ValueError("generator: give a seed or a generator, not both")
    gen = generator if generator is not None else make_generator(seed)
    if not isinstance(gen, torch.Generator):
        raise TypeError(f"generator: expected a torch.Generator, got {type(gen).__name__}")
    dtype = dtype or torch.get_default_dtype()
    patterns = torch.randint(0, 2, (trials, length, dim), generator=gen).to(dtype) * 2 - 1
    hidden = math.floor(erase * dim + 0.5)
    ranks = torch.rand(trials, length, dim, generator=gen).argsort(dim=-1)
    erased = torch.zeros(trials, length, dim, dtype=torch.bool).scatter_(-1, ranks[..., :hidden], True)
    return patterns, patterns.masked_fill(erased, 0.0)


@dataclass
class MetaLearning:
    """What :func:`meta_learn` returns.

    Attributes:
        rule: the trained :class:`PlasticityRule`.
        initial: the coefficients before training (``PlasticityRule.coefficients()`` form).
        losses: training loss (mean squared recall error) after each step.
        accuracies: per-entry sign accuracy of each training batch.
        lengths: the sequence length T of each training batch.
    """

    rule: PlasticityRule
    initial: dict[str, dict[str, float]]
    losses: list[float] = field(default_factory=list)
    accuracies: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)


def meta_learn(
    *,
    dim: int = 40,
    slots: int = 40,
    lengths: tuple[int, int] = (20, 80),
    steps: int = 200,
    batch: int = 32,
    lr: float = 0.03,
    local: Literal["sequential", "random"] = "sequential",
    p: float = 0.1,
    beta: float = 1.0,
    value_gate: Literal["local", "global"] = "global",
    erase: float = 0.6,
    init: PlasticityRule | Literal["random", "zero", "hebbian", "hand"] = "random",
    init_scale: float = 0.1,
    seed: int = 0,
    callback: Callable[[int, float], None] | None = None,
) -> MetaLearning:
    """Train the coefficients of a :class:`PlasticityRule` by backpropagation through time.

    Each step draws ``batch`` sequences of T random +-1 patterns (T uniform in
    ``lengths``, inclusive; the paper trains on N/2 <= T <= 2N), writes them with the
    rule, reads every pattern back from its cue (``erase`` of the entries zeroed) and takes
    one Adam step on the mean squared error between recalled and stored patterns, the
    gradient flowing back through every write. Gradients are clipped to norm 1 and the
    learning rate falls linearly from ``lr`` to ``lr / 10``.

    Args:
        dim: d = m, pattern size.
        slots: N hidden units.
        lengths: (T_min, T_max).
        steps: optimiser steps.
        batch: sequences per step.
        lr: Adam learning rate.
        local, p, beta, value_gate: as in :class:`PlasticKeyValueNetwork`.
        erase: fraction of zeroed cue entries.
        init: the starting rule: a :class:`PlasticityRule`, ``"random"``
            (:meth:`PlasticityRule.random` with ``init_scale``, seeded), ``"zero"`` (no
            plasticity), ``"hebbian"`` (plain pre x post for both synapse types, no decay)
            or ``"hand"`` (hand-designed).
        init_scale: standard deviation of the random start.
        seed: seeds the start, the data and the random local factor.
        callback: called as ``callback(step, loss)`` after every step (progress).

    Returns:
        a :class:`MetaLearning` record.

    Example:
        >>> from kvmem.bio.three_factor import meta_learn
        >>> out = meta_learn(dim=8, slots=8, lengths=(4, 8), steps=3, batch=4)
        >>> len(out.losses), sorted(out.rule.coefficients())
        (3, ['key', 'value'])
    """
    dim = check_int(dim, "dim", minimum=1)
    slots = check_int(slots, "slots", minimum=1)
    if (
        not isinstance(lengths, tuple)
        or len(lengths) != 2
        or any(isinstance(t, bool) or not isinstance(t, int) for t in lengths)
        or not 1 <= lengths[0] <= lengths[1]
    ):
        raise ValueError(f"lengths: expected a pair of integers 1 <= T_min <= T_max, got {lengths!r}")
    steps = check_int(steps, "steps", minimum=1)
    batch = check_int(batch, "batch", minimum=1)
    lr = check_positive(lr, "lr")
    seed = check_int(seed, "seed", minimum=0)
    if isinstance(init, PlasticityRule):
        rule = PlasticityRule(init.key.detach(), init.value.detach())
    elif init == "random":
        rule = PlasticityRule.random(init_scale, seed)
    elif init == "hand":
        rule = PlasticityRule.hand_designed()
    elif init == "zero":
        rule = PlasticityRule((0.0,) * 4, (0.0,) * 4)
    elif init == "hebbian":
        rule = PlasticityRule((0.0, 0.0, 1.0, 0.0), (0.0, 0.0, 1.0, 0.0))
    else:
        raise ValueError(f"init: expected a PlasticityRule, 'random', 'zero', 'hebbian' or 'hand', got {init!r}")
    net = PlasticKeyValueNetwork(slots, rule, local=local, p=p, beta=beta, value_gate=value_gate)
    record = MetaLearning(rule=rule, initial=rule.coefficients())
    data_gen = make_generator(seed + 1)
    factor_gen = make_generator(seed + 2)
    opt = torch.optim.Adam(rule.parameters(), lr=lr)
    # The learning rate falls linearly to lr/10: the batches differ in length, so a constant
    # rate leaves the coefficients jittering around the optimum at the end.
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 1.0 - 0.9 * i / steps)
    for i in range(steps):
        t = int(torch.randint(lengths[0], lengths[1] + 1, (), generator=data_gen))
        x, cue = recall_task(batch, t, dim, erase, generator=data_gen)
        out = net(x, x, cue, generator=factor_gen)
        loss = torch.mean((out - x) ** 2)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(rule.parameters(), 1.0)
        opt.step()
        sched.step()
        record.losses.append(float(loss.detach()))
        record.accuracies.append(float((torch.sign(out.detach()) == x).double().mean()))
        record.lengths.append(t)
        if callback is not None:
            callback(i, record.losses[-1])
    return record


__all__ = [
    "HAND_DESIGNED",
    "LOCAL_FACTORS",
    "RULE_TERMS",
    "VALUE_GATES",
    "MetaLearning",
    "PlasticKeyValueNetwork",
    "PlasticityRule",
    "ThreeFactorMemory",
    "meta_learn",
    "recall_task",
]
