"""The Problem type: a PDE on a box, its conditions, and what to measure it against.

A user's own PDE is one `Problem(...)`; the registered benchmarks are factories that return one.
Residuals read like the math, with the derivative accessor ``d`` (see `cpikan.derivatives`)::

    Problem(box=Box(lo=[2.0, -3.0], hi=[5.0, 1.0]),
            residual=lambda d, x: -d.lap + d.u**3 - f(x),
            conditions=[Dirichlet(exact)], exact=exact)

Every callable takes points x of shape (N, d) (a torch tensor) and returns shape (N,).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from cpikan.config import ConfigError

Field = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Box:
    """Axis-aligned box [lo_0, hi_0] x ... x [lo_{d-1}, hi_{d-1}]; lo < hi on every axis."""

    lo: Sequence[float]
    hi: Sequence[float]

    def __post_init__(self) -> None:
        lo, hi = tuple(float(v) for v in self.lo), tuple(float(v) for v in self.hi)
        if len(lo) != len(hi) or not lo:
            raise ConfigError(f"Box lo={lo} and hi={hi} must be non-empty and of equal length")
        for axis, (a, b) in enumerate(zip(lo, hi)):
            if not a < b:
                raise ConfigError(f"Box axis {axis}: lo={a} must be < hi={b}")
        object.__setattr__(self, "lo", lo)
        object.__setattr__(self, "hi", hi)

    @property
    def dim(self) -> int:
        return len(self.lo)


@dataclass(frozen=True)
class Dirichlet:
    """u = value(x) on the faces x_a = lo_a and x_a = hi_a for each axis a in `axes`.

    `axes` None means every axis except the time axis of the problem. Loss term ``bc``.
    """

    value: Field
    axes: Sequence[int] | None = None
    term: str = "bc"


@dataclass(frozen=True)
class Initial:
    """u = value(x) on the slice x_axis = lo_axis (the initial time). Loss term ``ic``."""

    value: Field
    axis: int = 0
    term: str = "ic"


@dataclass(frozen=True)
class Periodic:
    """u and du/dx_axis equal on the faces x_axis = lo and x_axis = hi. Loss term ``bc``."""

    axis: int
    term: str = "bc"


Condition = Dirichlet | Initial | Periodic


@dataclass(frozen=True)
class Observations:
    """Measured values `u` (N,) at points `x` (N, d) for the ``data`` term (inverse problems)."""

    x: np.ndarray
    u: np.ndarray


@dataclass
class Problem:
    """A PDE residual r(d, x) = 0 on `box` with `conditions`.

    Args:
        box: the domain.
        residual: ``(d, x) -> (N,)``; trainable unknowns and constants are in ``d.params``.
        conditions: boundary / initial / periodic conditions (loss terms ``bc`` and ``ic``).
        exact: exact solution ``x -> (N,)``, if known.
        reference: ``() -> (x_eval (M, d), u_eval (M,))`` numpy arrays, for problems without `exact`.
        observations: data for the ``data`` term (inverse problems).
        unknowns: name -> initial value of trainable scalar parameters (inverse problems).
        true_unknowns: name -> true value, to report the recovery error.
        constants: name -> fixed value available in ``d.params``.
        time_axis: index of the time coordinate, or None; excluded from Dirichlet faces and `lap`.
        lap_axes: axes of ``d.lap``; None: every axis except the time axis.
        coords: names of the coordinates, for plots.
        output: hard constraint ``(x (N, d), n (N,)) -> (N,)``: the solution is u = output(x, n) with n
            the network's value, wherever the network is read (loss terms, errors, predictions;
            `cpikan.models.Constrained`), so conditions built into it hold exactly and need no
            loss term. Autograd engine only. None: u = n.
        weights: default loss weight per term.
        sizes: profile -> dotted config values (epochs, point counts, widths) for that profile.
        eval_points: grid points per axis for the relative L2 error when `exact` is given.
        name: shown in results.
    """

    box: Box
    residual: Callable[..., torch.Tensor]
    conditions: Sequence[Condition] = ()
    exact: Field | None = None
    reference: Callable[[], tuple[np.ndarray, np.ndarray]] | None = None
    observations: Observations | None = None
    unknowns: Mapping[str, float] = field(default_factory=dict)
    true_unknowns: Mapping[str, float] = field(default_factory=dict)
    constants: Mapping[str, float] = field(default_factory=dict)
    time_axis: int | None = None
    lap_axes: Sequence[int] | None = None
    coords: Sequence[str] | None = None
    output: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    weights: Mapping[str, float] = field(default_factory=dict)
    sizes: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    eval_points: int | None = None
    name: str = "custom"

    def __post_init__(self) -> None:
        d = self.box.dim
        if self.exact is None and self.reference is None:
            raise ConfigError(f"problem {self.name!r} needs an exact solution or a reference to measure errors")
        if self.time_axis is not None and not 0 <= self.time_axis < d:
            raise ConfigError(f"time_axis={self.time_axis} out of range for a {d}-D box")
        if self.lap_axes is None:
            self.lap_axes = tuple(a for a in range(d) if a != self.time_axis)
        if self.coords is None:
            self.coords = ("t", *[f"x{i}" for i in range(d - 1)]) if self.time_axis == 0 else \
                tuple(f"x{i}" for i in range(d))
        if self.eval_points is None:
            self.eval_points = {1: 1001, 2: 101, 3: 31}.get(d, 11)

    @property
    def dim(self) -> int:
        return self.box.dim

    @property
    def terms(self) -> tuple[str, ...]:
        """Loss terms this problem has, in fixed order."""
        present = {"pde"} | {c.term for c in self.conditions}
        if self.observations is not None:
            present.add("data")
        return tuple(t for t in ("pde", "bc", "ic", "data") if t in present)

    def evaluation_set(self) -> tuple[np.ndarray, np.ndarray]:
        """Points (M, d) and true values (M,) the relative L2 error is measured on."""
        if self.reference is not None:
            return self.reference()
        axes = [np.linspace(a, b, self.eval_points) for a, b in zip(self.box.lo, self.box.hi)]
        x = np.stack([g.ravel() for g in np.meshgrid(*axes, indexing="ij")], axis=1)
        u = self.exact(torch.from_numpy(x)).detach().numpy()
        return x, u
