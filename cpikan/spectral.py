"""Reference solutions by Fourier spectral methods (numpy), cached on disk.

`allen_cahn_reference` solves u_t = eps u_xx + 5 u - 5 u^3 on the periodic interval [-1, 1)
with ETDRK4 (Cox & Matthews 2002; coefficients by contour integrals, Kassam & Trefethen 2005):
the linear part L = -eps k^2 + 5 is integrated exactly, the nonlinear part N(u) = -5 u^3 by a
fourth-order exponential Runge-Kutta scheme.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np


def cache_dir() -> Path:
    """$CPIKAN_CACHE, else ~/.cache/cpikan."""
    return Path(os.environ.get("CPIKAN_CACHE", Path.home() / ".cache" / "cpikan"))


def solve_allen_cahn(eps: float = 1e-4, n_x: int = 512, dt: float = 2e-4, t_end: float = 1.0,
                     n_t: int = 101) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Returns t (n_t,), x (n_x,) on [-1, 1), u (n_t, n_x); u(0, x) = x^2 cos(pi x)."""
    steps = round(t_end / dt)
    save_every = steps // (n_t - 1)
    if save_every * (n_t - 1) != steps:
        raise ValueError(f"t_end/dt = {steps} steps must be a multiple of n_t - 1 = {n_t - 1}")
    x = -1.0 + 2.0 * np.arange(n_x) / n_x
    k = np.pi * np.fft.rfftfreq(n_x, d=1.0 / n_x)  # wavenumbers for period 2
    lin = -eps * k**2 + 5.0
    e, e2 = np.exp(dt * lin), np.exp(dt * lin / 2)
    roots = np.exp(1j * np.pi * (np.arange(1, 33) - 0.5) / 32)
    lr = dt * lin[:, None] + roots[None, :]
    q = dt * np.real(np.mean((np.exp(lr / 2) - 1) / lr, axis=1))
    f1 = dt * np.real(np.mean((-4 - lr + np.exp(lr) * (4 - 3 * lr + lr**2)) / lr**3, axis=1))
    f2 = dt * np.real(np.mean((2 + lr + np.exp(lr) * (-2 + lr)) / lr**3, axis=1))
    f3 = dt * np.real(np.mean((-4 - 3 * lr - lr**2 + np.exp(lr) * (4 - lr)) / lr**3, axis=1))

    def nonlinear(v: np.ndarray) -> np.ndarray:
        return np.fft.rfft(-5.0 * np.fft.irfft(v, n=n_x) ** 3)

    v = np.fft.rfft(x**2 * np.cos(np.pi * x))
    frames = [np.fft.irfft(v, n=n_x)]
    for step in range(1, steps + 1):
        nv = nonlinear(v)
        a = e2 * v + q * nv
        na = nonlinear(a)
        b = e2 * v + q * na
        nb = nonlinear(b)
        c = e2 * a + q * (2 * nb - nv)
        nc = nonlinear(c)
        v = e * v + f1 * nv + 2 * f2 * (na + nb) + f3 * nc
        if step % save_every == 0:
            frames.append(np.fft.irfft(v, n=n_x))
    return np.linspace(0.0, t_end, n_t), x, np.array(frames)


def allen_cahn_reference(eps: float = 1e-4, n_x: int = 512, dt: float = 2e-4,
                         n_t: int = 101) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`solve_allen_cahn` on [0, 1], cached under `cache_dir()`; x includes both ends -1 and 1."""
    key = hashlib.sha1(repr(("allen_cahn", eps, n_x, dt, n_t)).encode()).hexdigest()[:12]
    path = cache_dir() / f"allen_cahn_{key}.npz"
    if path.exists():
        with np.load(path) as data:
            return data["t"], data["x"], data["u"]
    t, x, u = solve_allen_cahn(eps=eps, n_x=n_x, dt=dt, n_t=n_t)
    x = np.append(x, 1.0)
    u = np.concatenate([u, u[:, :1]], axis=1)  # periodic: u(1) = u(-1)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
    np.savez(tmp, t=t, x=x, u=u)
    os.replace(tmp, path)
    return t, x, u
