"""Drifting temporal context: keys that change slowly over time.

The paper explains the temporal organisation of memory by keys that drift (Estes 1955;
Landauer 1975; Howard & Kahana 2002). Two kinds of drift are provided:

- **Random drift** (Estes; Landauer): the context takes a random step away from where it
  was, ``c_t = rho c_(t-1) + sqrt(1 - rho^2) e_t`` with ``rho = sqrt(1 - rate^2)`` and
  ``e_t`` a random unit vector orthogonal to ``c_(t-1)``, so every context has unit norm and
  neighbours have cosine exactly ``rho``. In high dimension the cosine at lag ``L`` is
  close to ``rho^L`` (:func:`drift_similarity`).
- **Integration** (TCM, CMR; Howard & Kahana 2002, Polyn, Norman & Kahana 2009): the
  context integrates its input, ``c_t = rho c_(t-1) + beta c_in`` with ``c_in`` of unit
  norm and ``rho`` chosen so that ``||c_t|| = 1``:
  ``rho = sqrt(1 + beta^2 ((c_(t-1) . c_in)^2 - 1)) - beta (c_(t-1) . c_in)``.

Contexts are the keys of a key-value memory (items are the values): see
:mod:`kvmem.paradigms.free_recall` for the CMR model of free recall built on them.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ._checks import as_tensor, check_int, make_generator

__all__ = ["drift_similarity", "integrate", "random_drift", "tcm_rho", "tcm_update"]


def _check_beta(beta: Any, name: str = "beta") -> torch.Tensor | float:
    if isinstance(beta, torch.Tensor):
        if not torch.isfinite(beta).all() or (beta < 0).any() or (beta > 1).any():
            raise ValueError(f"{name} must lie in [0, 1]; got values outside it")
        return beta
    if isinstance(beta, bool) or not isinstance(beta, (int, float)):
        raise TypeError(f"{name} must be a float in [0, 1] or a tensor, got {type(beta).__name__}")
    if not (0.0 <= float(beta) <= 1.0):
        raise ValueError(f"{name} must lie in [0, 1], got {beta}")
    return float(beta)


def _unit(x: torch.Tensor, name: str) -> torch.Tensor:
    norm = x.norm(dim=-1, keepdim=True)
    if (norm == 0).any():
        raise ValueError(f"{name} must not contain all-zero vectors (they have no direction)")
    return x / norm


def tcm_rho(dot: torch.Tensor, beta: torch.Tensor | float) -> torch.Tensor:
    """The decay ``rho`` that keeps a unit context at unit norm after integrating a unit input.

    Args:
        dot: ``c_(t-1) . c_in``, the cosine of the old context with the (unit) input.
        beta: Integration rate in [0, 1].

    Shapes:
        dot: any; beta: broadcastable to it. Returns the broadcast shape.

    Example:
        >>> round(float(tcm_rho(torch.tensor(0.0), 0.6)), 6)  # orthogonal input: rho^2 + beta^2 = 1
        0.8
    """
    beta_t = torch.as_tensor(beta, dtype=dot.dtype, device=dot.device)
    return torch.sqrt(1 + beta_t**2 * (dot**2 - 1)) - beta_t * dot


def tcm_update(context: Any, c_in: Any, beta: Any) -> torch.Tensor:
    """One TCM/CMR context update: ``c = rho c + beta c_in`` with ``||c|| = 1``.

    ``c_in`` is normalised to unit length first (as TCM and CMR do); ``context`` is taken to
    have unit norm (it is renormalised to guard against rounding).

    Args:
        context: Current context.
        c_in: Input to the context (need not be normalised; must not be all zero).
        beta: Integration rate in [0, 1]: a float, or a tensor broadcastable to
            ``context.shape[:-1]`` (one rate per state).

    Shapes:
        context: ``[..., D]``; c_in: ``[..., D]`` (broadcastable). Returns ``[..., D]``.

    Example:
        >>> c = torch.tensor([1.0, 0.0])
        >>> tcm_update(c, torch.tensor([0.0, 1.0]), 0.6)
        tensor([0.8000, 0.6000])
    """
    context = as_tensor(context, "context")
    c_in = as_tensor(c_in, "c_in", dtype=context.dtype, device=context.device)
    if context.ndim < 1 or c_in.ndim < 1:
        raise ValueError("context and c_in must have a last (feature) dimension")
    if context.shape[-1] != c_in.shape[-1]:
        raise ValueError(f"c_in must have {context.shape[-1]} features like context, got {c_in.shape[-1]}")
    beta = _check_beta(beta)
    if isinstance(beta, torch.Tensor):
        beta = beta.to(dtype=context.dtype, device=context.device).unsqueeze(-1)
    c = _unit(context, "context")
    u = _unit(c_in, "c_in")
    dot = (c * u).sum(-1, keepdim=True)
    rho = tcm_rho(dot, beta)
    return rho * c + beta * u


def integrate(inputs: Any, beta: Any, *, initial: Any = None) -> torch.Tensor:
    """Contexts after each of a sequence of inputs, by repeated :func:`tcm_update`.

    Args:
        inputs: Inputs ``c_in`` in order of presentation.
        beta: Integration rate in [0, 1] (float, or tensor of shape ``[..., T]``).
        initial: Starting context (unit norm). Default: the unit vector along the last
            feature, a "start of list" element that is orthogonal to one-hot item inputs
            on the other features.

    Shapes:
        inputs: ``[..., T, D]``; initial: ``[..., D]``. Returns ``[..., T, D]``: entry ``t`` is
        the context after input ``t``.

    Example:
        >>> items = torch.eye(4)[:3]  # three one-hot items, the 4th feature is the start
        >>> ctx = integrate(items, 0.5)
        >>> ctx.norm(dim=-1)
        tensor([1., 1., 1.])
    """
    inputs = as_tensor(inputs, "inputs")
    if inputs.ndim < 2:
        raise ValueError(f"inputs must have shape [..., T, D], got {tuple(inputs.shape)}")
    if initial is None:
        initial = torch.zeros(inputs.shape[:-2] + inputs.shape[-1:], dtype=inputs.dtype, device=inputs.device)
        initial[..., -1] = 1
    initial = as_tensor(initial, "initial", dtype=inputs.dtype, device=inputs.device)
    beta = _check_beta(beta)
    c = initial
    out = []
    for t in range(inputs.shape[-2]):
        b = beta[..., t] if isinstance(beta, torch.Tensor) else beta
        c = tcm_update(c, inputs[..., t, :], b)
        out.append(c)
    return torch.stack(out, dim=-2)


def random_drift(
    steps: int,
    dim: int,
    *,
    rate: float,
    batch_shape: tuple[int, ...] = (),
    initial: Any = None,
    generator: torch.Generator | int | None = None,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """A random-walk context on the unit sphere (Estes 1955; Landauer 1975).

    Each step moves the context by ``rate`` in a random direction orthogonal to it:
    ``c_t = sqrt(1 - rate^2) c_(t-1) + rate e_t``, so consecutive contexts have cosine
    exactly ``sqrt(1 - rate^2)`` and the expected cosine at lag ``L`` is about
    ``(1 - rate^2)^(L/2)`` when ``dim`` is large (:func:`drift_similarity`).

    Args:
        steps: Number of contexts returned (the first is ``initial``).
        dim: Context dimension (>= 2).
        rate: Step size in [0, 1]; 0 is a fixed context, 1 a fresh orthogonal one each step.
        batch_shape: Independent walks.
        initial: Starting context ``[*batch_shape, dim]`` (normalised); default random.
        generator: Seed or ``torch.Generator`` (sampled on the CPU, so the same seed gives
            the same walk on every device).
        dtype, device: Of the result.

    Shapes:
        Returns ``[*batch_shape, steps, dim]``.

    Example:
        >>> c = random_drift(5, 100, rate=0.3, generator=0)
        >>> round(float((c[1] * c[0]).sum()), 4)
        0.9539
    """
    steps = check_int(steps, "steps", minimum=1)
    dim = check_int(dim, "dim", minimum=2)
    rate = float(_check_beta(rate, "rate"))
    if isinstance(batch_shape, int):
        batch_shape = (batch_shape,)
    batch_shape = tuple(check_int(b, "batch_shape", minimum=1) for b in batch_shape)
    gen = make_generator(generator, "generator")
    shape = batch_shape + (dim,)
    if initial is None:
        c = torch.randn(shape, generator=gen, dtype=torch.float64)
    else:
        c = as_tensor(initial, "initial", dtype=torch.float64, device="cpu")
        if c.shape != shape:
            raise ValueError(f"initial must have shape {shape}, got {tuple(c.shape)}")
    c = _unit(c, "initial")
    keep = math.sqrt(1.0 - rate**2)
    out = [c]
    for _ in range(steps - 1):
        e = torch.randn(shape, generator=gen, dtype=torch.float64)
        e = e - (e * c).sum(-1, keepdim=True) * c
        e = _unit(e, "drift direction")
        c = keep * c + rate * e
        c = c / c.norm(dim=-1, keepdim=True)
        out.append(c)
    return torch.stack(out, dim=-2).to(dtype=dtype, device=device)


def drift_similarity(lag: Any, rate: float) -> torch.Tensor:
    """Expected cosine between random-drift contexts ``lag`` steps apart (large ``dim``).

    Example:
        >>> drift_similarity(torch.tensor([0, 2]), 0.6).tolist()
        [1.0, 0.64]
    """
    rate = float(_check_beta(rate, "rate"))
    lag = torch.as_tensor(lag, dtype=torch.float64).abs()
    return (1.0 - rate**2) ** (lag / 2)
