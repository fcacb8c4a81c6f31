"""The trainer's view of the toggles: one strategy object per role, each reached only through the
hooks its Protocol states (`cpikan.train.Trainer` calls them; `cpikan.runs.build_strategies` builds
them from the resolved config). The loop never reads a config string.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Callable, Mapping, Protocol

import torch


class Precision(Protocol):
    """``train.amp`` (`cpikan.stability`): how the Adam phase's forward pass, backward and step run."""

    skips_nonfinite: bool  # a non-finite step is skipped and counted, rather than ending the run
    step_checks_gradients: bool  # `step` itself skips a step with non-finite gradients (a GradScaler)

    def autocast(self) -> AbstractContextManager: ...
    def backward(self, loss: torch.Tensor) -> None: ...
    def unscale(self, optimizer: torch.optim.Optimizer) -> None: ...
    def step(self, optimizer: torch.optim.Optimizer) -> bool: ...  # False: the step was skipped


class Clipper(Protocol):
    """``train.grad_clip`` (`cpikan.stability`): clips the gradients, returns their pre-clip norm."""

    def clip(self, params: list[torch.nn.Parameter]) -> float: ...


class Stopper(Protocol):
    """``train.early_stopping`` (`cpikan.stability`): told each monitored value, says when to stop."""

    wants_monitor: bool
    best_epoch: int | None

    def update(self, epoch: int, value: float, modules: list[torch.nn.Module]) -> bool: ...
    def restore(self, modules: list[torch.nn.Module]) -> None: ...


class Schedule(Protocol):
    """``train.scheduler`` (`cpikan.schedules`): sets the rate before each epoch."""

    wants_monitor: bool

    def apply(self, optimizer: torch.optim.Optimizer, epoch: int) -> float: ...
    def observe(self, epoch: int, value: float) -> None: ...


class Balancer(Protocol):
    """``loss.balancing`` (`cpikan.losses`): the weight of each loss term, updated once per step."""

    weights: dict[str, float]
    skipped: int

    def update(self, epoch: int, terms: Mapping[str, torch.Tensor], params: list[torch.nn.Parameter]) -> None: ...


class Sampler(Protocol):
    """``sampling.adaptive`` and ``sampling.batches`` (`cpikan.sampling`): the interior points."""

    points: torch.Tensor

    def batches(self, epoch: int) -> list[torch.Tensor]: ...
    def refine(self, epoch: int, residual: Callable[[torch.Tensor], torch.Tensor]) -> dict | None: ...


@dataclass
class Strategies:
    """One object per toggle, built from the resolved config by `cpikan.runs.build_strategies`."""

    precision: Precision
    clipper: Clipper
    stopper: Stopper
    schedule: Schedule
    balancer: Balancer
    sampler: Sampler
