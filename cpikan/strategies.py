"""The trainer's view of the toggles: one strategy object per role, each reached only through the
hooks its Protocol states (`cpikan.train.Trainer` calls them; `cpikan.runs.build_strategies` builds
them from the resolved config). The loop never reads a config string. Every hook takes and returns
values per member, tensors with the member axis first, so one strategy object serves S members.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Callable, Mapping, Protocol, Sequence

import torch

from cpikan.sampling import ConditionPoints


class Precision(Protocol):
    """``train.amp`` (`cpikan.stability`): how the Adam phase's forward pass and backward run."""

    skips_nonfinite: bool  # a non-finite step is skipped and counted, rather than ending the member's run

    def autocast(self) -> AbstractContextManager: ...
    def backward(self, loss: torch.Tensor) -> None: ...  # the members' losses (S,)
    def unscale(self, params: Sequence[torch.Tensor]) -> None: ...
    def update(self, stepped: torch.Tensor) -> None: ...  # which members' steps were applied (S,)


class Clipper(Protocol):
    """``train.grad_clip`` (`cpikan.stability`): clips each member's gradients, returns their pre-clip norms (S,)."""

    def clip(self, params: Sequence[torch.Tensor]) -> torch.Tensor: ...


class Stopper(Protocol):
    """``train.early_stopping`` (`cpikan.stability`): told the monitored values (S,), says which
    live members stop now (None: none), their best weights restored."""

    wants_monitor: bool
    best_epoch: torch.Tensor | None  # per member (S,), -1 before an improvement; None when it never watched

    def update(self, epoch: int, value: torch.Tensor, params: Sequence[torch.Tensor],
               live: torch.Tensor) -> torch.Tensor | None: ...


class Schedule(Protocol):
    """``train.scheduler`` (`cpikan.schedules`): the rate of each epoch, a float or per member (S,)."""

    wants_monitor: bool

    def lr_at(self, epoch: int) -> float | torch.Tensor: ...
    def observe(self, epoch: int, value: torch.Tensor) -> None: ...


class Balancer(Protocol):
    """``loss.balancing`` (`cpikan.losses`): the weight of each loss term per member (S,), updated
    once per step; `skipped` (S,) counts the updates a member refused."""

    weights: dict[str, torch.Tensor]
    skipped: torch.Tensor

    def update(self, epoch: int, terms: Mapping[str, torch.Tensor], params: list[torch.Tensor]) -> None: ...


class Sampler(Protocol):
    """``sampling.adaptive`` and ``sampling.batches`` (`cpikan.sampling`): the members' interior points (S, N, d)."""

    points: torch.Tensor

    def conditions(self, epoch: int) -> list[ConditionPoints] | None: ...  # fresh condition points, or None
    def batches(self, epoch: int) -> list[torch.Tensor]: ...
    def refine(self, epoch: int, residual: Callable[[torch.Tensor], torch.Tensor]) -> list[dict] | None: ...


@dataclass
class Strategies:
    """One object per toggle, built from the resolved config by `cpikan.runs.build_strategies`."""

    precision: Precision
    clipper: Clipper
    stopper: Stopper
    schedule: Schedule
    balancer: Balancer
    sampler: Sampler
