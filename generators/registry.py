"""Name → generator class. Families register with ``@register("name")`` in their module;
:data:`FAMILY_MODULES` lists the modules imported on first lookup."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from synthcohort.errors import InvalidInputError

if TYPE_CHECKING:
    from generators.base import Generator

FAMILY_MODULES = (
    "generators.wgan_gp",
    "generators.diffusion",
    "generators.stylegan2",
    "generators.dyngan",
)

_REGISTRY: dict[str, type[Generator]] = {}


def register(name: str):
    def deco(cls: type[Generator]) -> type[Generator]:
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def _load_families() -> None:
    for mod in FAMILY_MODULES:
        try:
            import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name != mod:  # a real missing dependency, not a family not yet written
                raise


def get_generator(name: str) -> type[Generator]:
    if name not in _REGISTRY:
        _load_families()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise InvalidInputError(
            f"unknown generator {name!r}; known: {', '.join(available())}", field="generator"
        ) from None


def available() -> list[str]:
    _load_families()
    return sorted(_REGISTRY)
