"""Learning-rate schedules of the Adam phase (``train.scheduler``), epoch by epoch.

With base rate lr_0 and E epochs, an optional linear warm-up over W epochs gives lr_0 (e+1)/W
for e < W; then, counting e' = e - W over the E' = E - W remaining epochs:
- ``none``:        lr_0
- ``exponential``: lr_0 gamma^e'
- ``cosine``:      eta_min + (lr_0 - eta_min) (1 + cos(pi e' / E')) / 2
- ``multistep``:   lr_0 gamma^(number of milestones m <= e'); a milestone m < 1 means m E'
- ``plateau``:     lr multiplied by `factor` when the monitored value (``train.monitor``: held-out
                   residual or training loss, every ``train.monitor_every`` epochs) has not
                   dropped below best (1 - `threshold`) for `patience` epochs; never below `min_lr`

`SCHEDULES` maps each choice to its class, built as ``cls(lr, epochs, **train.scheduler_params)``
with the full parameters (see `cpikan.config.params`). A rate is a float, the same for every member,
except for ``plateau``, whose rate is each member's own: a tensor (S,).
"""

from __future__ import annotations

import math

import torch


class Constant:
    """``none``: lr_0 after the warm-up. The base of every schedule: the warm-up, `apply`, and
    `observe`, which only the plateau schedule uses (`wants_monitor`).

    Args:
        lr: base rate lr_0.
        epochs: Adam epochs E.
        warmup: warm-up epochs W.
    """

    wants_monitor = False

    def __init__(self, lr: float, epochs: int, warmup: int = 0) -> None:
        self.base_lr, self.epochs, self.warmup = lr, epochs, warmup
        self.span = max(epochs - warmup, 1)

    def lr_at(self, epoch: int) -> float | torch.Tensor:
        """The rate of `epoch` (0-based); for plateau, each member's current reduced rate."""
        if epoch < self.warmup:
            return self.base_lr * (epoch + 1) / self.warmup
        return self.rate(epoch - self.warmup)

    def rate(self, e: int) -> float | torch.Tensor:
        """The rate e' = `e` epochs after the warm-up."""
        return self.base_lr

    def observe(self, epoch: int, value: torch.Tensor) -> None:
        """The members' monitored values (S,) after `epoch`; ignored unless `wants_monitor`."""
        return None


class Exponential(Constant):
    """``exponential``: lr_0 gamma^e'."""

    def __init__(self, lr: float, epochs: int, gamma: float, warmup: int = 0) -> None:
        super().__init__(lr, epochs, warmup)
        self.gamma = gamma

    def rate(self, e: int) -> float:
        return self.base_lr * self.gamma ** e


class Cosine(Constant):
    """``cosine``: eta_min + (lr_0 - eta_min) (1 + cos(pi e' / E')) / 2."""

    def __init__(self, lr: float, epochs: int, eta_min: float, warmup: int = 0) -> None:
        super().__init__(lr, epochs, warmup)
        self.eta_min = eta_min

    def rate(self, e: int) -> float:
        return self.eta_min + (self.base_lr - self.eta_min) * (1 + math.cos(math.pi * e / self.span)) / 2


class MultiStep(Constant):
    """``multistep``: lr_0 gamma^(milestones passed); a milestone m < 1 means m E'."""

    def __init__(self, lr: float, epochs: int, milestones: list[float], gamma: float, warmup: int = 0) -> None:
        super().__init__(lr, epochs, warmup)
        self.milestones = sorted(m * self.span if m < 1 else m for m in milestones)
        self.gamma = gamma

    def rate(self, e: int) -> float:
        return self.base_lr * self.gamma ** sum(m <= e for m in self.milestones)


class Plateau(Constant):
    """``plateau``: each member's lr times `factor` after `patience` epochs without a relative drop
    of `threshold` in its monitored value; never below `min_lr`."""

    wants_monitor = True

    def __init__(self, lr: float, epochs: int, factor: float, patience: int, threshold: float, min_lr: float,
                 warmup: int = 0) -> None:
        super().__init__(lr, epochs, warmup)
        self.factor, self.patience, self.threshold, self.min_lr = factor, patience, threshold, min_lr
        self.plateau_lr: torch.Tensor | float = lr
        self._best: torch.Tensor | float = math.inf
        self._best_epoch: torch.Tensor | int = 0

    def rate(self, e: int) -> torch.Tensor | float:
        return self.plateau_lr

    def observe(self, epoch: int, value: torch.Tensor) -> None:
        """Plateau logic on the members' monitored values; warm-up epochs are ignored."""
        if epoch < self.warmup:
            return
        if not torch.is_tensor(self.plateau_lr):  # the first observation: one rate per member from now on
            self.plateau_lr = torch.full_like(value, self.plateau_lr)
        improved = value < self._best * (1 - self.threshold)
        reduce = ~improved & (epoch - self._best_epoch >= self.patience)
        self._best = torch.where(improved, value, self._best)
        self.plateau_lr = torch.where(reduce, torch.clamp(self.plateau_lr * self.factor, min=self.min_lr),
                                      self.plateau_lr)
        self._best_epoch = torch.where(improved | reduce, epoch, self._best_epoch)


SCHEDULES: dict[str, type[Constant]] = {"none": Constant, "exponential": Exponential, "cosine": Cosine,
                                        "plateau": Plateau, "multistep": MultiStep}
