"""Name → generator class. Each family registers with ``@register("name")`` in its module;
:data:`FAMILY_MODULES` maps every name to that module, so listing the names (the CLI's choices,
the API's checks) imports no family and no torch, and a lookup imports only the one it needs.
Adding a family means its module plus one line here; no caller changes."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from synthcohort.core.errors import InvalidInputError

if TYPE_CHECKING:
    from synthcohort.generators.base import Generator

FAMILY_MODULES = {
    "wgan-gp": "synthcohort.generators.wgan_gp",
    "diffusion": "synthcohort.generators.diffusion",
    "stylegan2": "synthcohort.generators.stylegan2",
    "dyngan": "synthcohort.generators.dyngan",
    "latent-diffusion": "synthcohort.generators.latent_diffusion",
}

_REGISTRY: dict[str, type[Generator]] = {}


def register(name: str):
    def deco(cls: type[Generator]) -> type[Generator]:
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def get_generator(name: str) -> type[Generator]:
    if name not in FAMILY_MODULES:
        raise InvalidInputError(
            f"unknown generator {name!r}; known: {', '.join(available())}", field="generator"
        )
    if name not in _REGISTRY:
        import_module(FAMILY_MODULES[name])
    return _REGISTRY[name]


def available() -> list[str]:
    return sorted(FAMILY_MODULES)
