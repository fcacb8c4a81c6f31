"""Registry of benchmark problems; `get(name, **params)` builds one."""

from __future__ import annotations

import inspect
from typing import Any, Callable

from cpikan.config import ConfigError
from cpikan.problems.allen_cahn import allen_cahn1d
from cpikan.problems.base import Box, Dirichlet, Initial, Observations, Periodic, Problem
from cpikan.problems.diffusion import diffusion1d, forced_diffusion1d
from cpikan.problems.helmholtz import helmholtz2d
from cpikan.problems.poisson import poisson1d, poisson1d_peak, poisson3d
from cpikan.problems.reaction_diffusion import reaction_diffusion1d, reaction_diffusion1d_inverse

REGISTRY: dict[str, Callable[..., Problem]] = {
    "poisson1d": poisson1d,
    "poisson1d_peak": poisson1d_peak,
    "poisson3d": poisson3d,
    "helmholtz2d": helmholtz2d,
    "diffusion1d": diffusion1d,
    "forced_diffusion1d": forced_diffusion1d,
    "allen_cahn1d": allen_cahn1d,
    "reaction_diffusion1d": reaction_diffusion1d,
    "reaction_diffusion1d_inverse": reaction_diffusion1d_inverse,
}


def names() -> list[str]:
    return list(REGISTRY)


def check(name: str, params: dict[str, Any] | None = None) -> None:
    """Raise ConfigError for an unknown problem or a parameter its factory does not take."""
    if name not in REGISTRY:
        raise ConfigError(f"unknown problem {name!r}; valid: {', '.join(REGISTRY)}")
    valid = list(inspect.signature(REGISTRY[name]).parameters)
    for key in params or {}:
        if key not in valid:
            raise ConfigError(f"problem {name!r} has no parameter {key!r}; valid: {', '.join(valid) or '(none)'}")


def get(name: str, **params: Any) -> Problem:
    """Build the registered problem `name` with factory keyword `params`."""
    check(name, params)
    return REGISTRY[name](**params)


__all__ = ["Box", "Dirichlet", "Initial", "Observations", "Periodic", "Problem", "REGISTRY", "check", "get", "names"]
