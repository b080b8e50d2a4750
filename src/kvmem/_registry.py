"""Name-based registries so that configs and the command line can name components.

A component family (similarities, feature maps, separations) keeps a :class:`Registry`
that maps a short name to a class. A *spec* names one component:

- a string: ``"softmax"`` (default parameters);
- a mapping: ``{"name": "softmax", "beta": 8}``;
- an instance of the family's base class, returned unchanged.

Every registered class is a frozen dataclass, so ``spec_of(component)`` gives back a
JSON-serialisable mapping that rebuilds an equal component.

Example:
    >>> from kvmem import separation
    >>> separation.get({"name": "softmax", "beta": 8.0})
    Softmax(beta=8.0)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to component classes of one family.

    Args:
        family: human-readable family name used in error messages ("similarity").
        base: the base class every registered component derives from.
    """

    def __init__(self, family: str, base: type[T]) -> None:
        self.family = family
        self.base = base
        self._classes: dict[str, type[T]] = {}

    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        """Class decorator: register ``cls`` under ``name`` and record the name on it."""

        def decorate(cls: type[T]) -> type[T]:
            if name in self._classes:
                raise ValueError(f"{self.family} {name!r} is already registered")
            if not dataclasses.is_dataclass(cls):
                raise TypeError(f"{cls.__name__} must be a dataclass to be registered")
            cls.registry_name = name  # type: ignore[attr-defined]
            self._classes[name] = cls
            return cls

        return decorate

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._classes)

    def __contains__(self, name: object) -> bool:
        return name in self._classes

    def get(self, spec: Any, *, argument: str | None = None) -> T:
        """Build a component from a spec (name, mapping or instance).

        Args:
            spec: ``"name"``, ``{"name": ..., **params}`` or an instance of the base class.
            argument: the caller's argument name, used in error messages.

        Raises:
            ValueError: unknown name, or a parameter value the component rejects.
            TypeError: a spec of the wrong type, or a parameter the component does not take.
        """
        arg = argument or self.family
        if isinstance(spec, self.base):
            return spec
        if isinstance(spec, str):
            name, params = spec, {}
        elif isinstance(spec, Mapping):
            if "name" not in spec:
                raise ValueError(f"{arg}: a mapping spec needs a 'name' key, got keys {sorted(spec)}")
            params = {k: v for k, v in spec.items() if k != "name"}
            name = spec["name"]
        else:
            raise TypeError(
                f"{arg}: expected a {self.family} name, a mapping with 'name', or a "
                f"{self.base.__name__} instance; got {type(spec).__name__}"
            )
        if name not in self._classes:
            raise ValueError(f"{arg}: unknown {self.family} {name!r}; known: {', '.join(self.names())}")
        cls = self._classes[name]
        allowed = {f.name for f in dataclasses.fields(cls) if f.init}
        unknown = sorted(set(params) - allowed)
        if unknown:
            raise TypeError(
                f"{arg}: {self.family} {name!r} takes no parameter {', '.join(unknown)}; "
                f"it takes: {', '.join(sorted(allowed)) or 'nothing'}"
            )
        return cls(**params)


def spec_of(component: Any) -> dict[str, Any]:
    """The JSON-serialisable spec that rebuilds ``component`` through its registry."""
    name = getattr(type(component), "registry_name", None)
    if name is None:
        raise TypeError(f"{type(component).__name__} is not a registered component")
    spec: dict[str, Any] = {"name": name}
    for field in dataclasses.fields(component):
        if not field.init:
            continue
        value = getattr(component, field.name)
        if dataclasses.is_dataclass(value) and hasattr(type(value), "registry_name"):
            value = spec_of(value)
        elif isinstance(value, tuple):
            value = list(value)
        spec[field.name] = value
    return spec
