"""Helmholtz 2D: Δu + k^2 u = q on [-s, s]^2 with u = sin(a1 pi x / s) sin(a2 pi y / s)."""

from __future__ import annotations

import math

import torch

from cpikan.problems.base import Box, Dirichlet, Problem


def helmholtz2d(a1: float = 1.0, a2: float = 4.0, k: float = 1.0, domain_scale: float = 1.0) -> Problem:
    """The paper's Helmholtz case; `domain_scale` s stretches the domain (and the solution with it).

    s = 1 is the standard [-1, 1]^2 case; s > 1 is the large-domain case, where only the
    domain scaling keeps the network's inputs in [-1, 1].
    """
    if not domain_scale > 0:
        raise ValueError(f"domain_scale={domain_scale} must be positive")
    w1, w2 = a1 * math.pi / domain_scale, a2 * math.pi / domain_scale

    def exact(x: torch.Tensor) -> torch.Tensor:
        return torch.sin(w1 * x[:, 0]) * torch.sin(w2 * x[:, 1])

    return Problem(
        box=Box(lo=[-domain_scale, -domain_scale], hi=[domain_scale, domain_scale]),
        residual=lambda d, x: d.lap + k**2 * d.u - (k**2 - w1**2 - w2**2) * exact(x),
        conditions=[Dirichlet(exact)],
        exact=exact,
        coords=("x", "y"),
        weights={"pde": 1.0, "bc": 100.0},  # as for Poisson: weight 1 left the boundary unfit (rel_l2 0.24 vs 0.027)
        sizes={
            "smoke": {"train.epochs": 20, "sampling.n_pde": 128, "sampling.n_bc": 64, "model.hidden": (8, 8),
                      "train.lbfgs_iterations": 0},
            "quick": {"train.epochs": 1000, "sampling.n_pde": 1024, "sampling.n_bc": 256, "model.hidden": (16, 16),
                      "train.lbfgs_iterations": 1000},
            "full": {"train.epochs": 20000, "sampling.n_pde": 10000, "sampling.n_bc": 2000,
                     "model.hidden": (32, 32, 32), "train.lbfgs_iterations": 0},
        },
        name="helmholtz2d",
    )
