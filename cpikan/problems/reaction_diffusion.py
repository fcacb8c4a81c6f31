"""Reaction-diffusion on x in [-pi, pi], t in [0, 1]: forward, and inverse for the diffusivity D.

u_t = D u_xx + s(t, x) with s = e^{-t} sum_k (D k - 1/k) sin(k x), k in {1, 2, 3, 4, 8},
exact u = e^{-t} sum_k sin(k x) / k (the DeepXDE diffusion-reaction benchmark, D = 1).
"""

from __future__ import annotations

import numpy as np
import torch

from cpikan.problems.base import Box, Dirichlet, Initial, Observations, Problem

MODES = (1, 2, 3, 4, 8)
TRUE_D = 1.0

SIZES = {
    "smoke": {"train.epochs": 20, "sampling.n_pde": 128, "sampling.n_ic": 32, "sampling.n_bc": 32,
              "model.hidden": (8, 8), "train.lbfgs_iterations": 0},
    "quick": {"train.epochs": 1000, "sampling.n_pde": 1000, "sampling.n_ic": 256, "sampling.n_bc": 256,
              "model.hidden": (8, 8), "train.lbfgs_iterations": 1000},
    "full": {"train.epochs": 20000, "sampling.n_pde": 10000, "sampling.n_ic": 1000, "sampling.n_bc": 1000,
             "model.hidden": (32, 32, 32), "train.lbfgs_iterations": 0},
}


def exact(x: torch.Tensor) -> torch.Tensor:
    t, s = x[:, 0:1], x[:, 1:2]
    k = torch.tensor(MODES, dtype=x.dtype, device=x.device)
    return (torch.exp(-t) * torch.sin(k * s) / k).sum(dim=1)


def source(x: torch.Tensor, diffusivity: float = TRUE_D) -> torch.Tensor:
    t, s = x[:, 0:1], x[:, 1:2]
    k = torch.tensor(MODES, dtype=x.dtype, device=x.device)
    return (torch.exp(-t) * (diffusivity * k - 1 / k) * torch.sin(k * s)).sum(dim=1)


def _base(**kw) -> Problem:
    return Problem(
        box=Box(lo=[0.0, -np.pi], hi=[1.0, np.pi]),
        conditions=[Initial(exact, axis=0), Dirichlet(exact)],
        exact=exact,
        time_axis=0,
        coords=("t", "x"),
        sizes=SIZES,
        **kw,
    )


def reaction_diffusion1d() -> Problem:
    """Forward case: D = 1 known."""
    return _base(
        residual=lambda d, x: d.u_x[0] - TRUE_D * d.u_xx[1] - source(x),
        weights={"pde": 1.0, "ic": 1.0, "bc": 1.0},
        name="reaction_diffusion1d",
    )


def reaction_diffusion1d_inverse(noise: float = 0.01, n_obs: int = 200, initial_d: float = 0.5,
                                 obs_seed: int = 1234) -> Problem:
    """Inverse case: recover D (true 1) from `n_obs` observations of u with Gaussian noise.

    The noise has standard deviation `noise` times the standard deviation of the clean
    observations (0.0, 0.01, 0.05 for 0 %, 1 %, 5 %). The source term uses the true D, as
    a known forcing; the residual uses the trainable D. The observations are drawn with
    their own seed (`obs_seed`), so every training seed sees the same data.
    """
    if noise < 0:
        raise ValueError(f"noise={noise} must be >= 0")
    rng = np.random.default_rng(obs_seed)
    lo, hi = np.array([0.0, -np.pi]), np.array([1.0, np.pi])
    x_obs = lo + (hi - lo) * rng.random((n_obs, 2))
    u_clean = exact(torch.from_numpy(x_obs)).numpy()
    u_obs = u_clean + noise * u_clean.std() * rng.standard_normal(n_obs)
    return _base(
        residual=lambda d, x: d.u_x[0] - d.params["D"] * d.u_xx[1] - source(x),
        observations=Observations(x=x_obs, u=u_obs),
        unknowns={"D": initial_d},
        true_unknowns={"D": TRUE_D},
        weights={"pde": 1.0, "ic": 1.0, "bc": 1.0, "data": 1.0},
        name="reaction_diffusion1d_inverse",
    )
