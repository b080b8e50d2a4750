"""Registered experiments: each module registers one :class:`Experiment` on import."""

# Each module registers itself on import.
from . import (  # noqa: F401
    accessibility_vs_precision,
    associative_retrieval_capacity,
    capacity,
    context_generalisation,
    errors_are_memorable,
    familiarity_without_recollection,
    fig2_key_value_optimization,
    fig3_forgetting_reactivation,
    free_recall,
    interference_not_erasure,
    learned_vs_fixed_keys,
    memory_recovery,
    metamemory,
    pattern_separation,
    repulsion,
    retrieval_basics,
    scaffold_vs_hopfield,
    semantic_dementia_vs_amnesia,
    separation_robustness,
    silent_engrams,
    tem_grid_world,
    three_factor_capacity,
)
from .base import PROFILES, REGISTRY, Claim, Experiment, Progress, Result, parse_value, register


def get(name: str) -> Experiment:
    """The experiment registered as ``name``.

    Raises:
        ValueError: no such experiment; the message lists the known names.
    """
    if name not in REGISTRY:
        raise ValueError(f"unknown experiment {name!r}; known: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def names() -> list[str]:
    """Names of all registered experiments, sorted."""
    return sorted(REGISTRY)


__all__ = ["PROFILES", "REGISTRY", "Claim", "Experiment", "Progress", "Result", "get", "names", "parse_value", "register"]
