"""Learning-rate schedules of the Adam phase (``train.scheduler``), epoch by epoch.

With base rate lr_0, E epochs, optional linear warm-up over W epochs (lr_0 (e+1)/W for e < W),
then at epoch e (counted from the end of warm-up, e' = e - W, E' = E - W):
- ``none``:        lr_0
- ``exponential``: lr_0 gamma^e'
- ``cosine``:      eta_min + (lr_0 - eta_min) (1 + cos(pi e' / E')) / 2
- ``multistep``:   lr_0 gamma^(number of milestones <= e); a milestone < 1 is a fraction of E
- ``plateau``:     lr multiplied by `factor` when the monitored value has not improved by a
                   relative `threshold` for `patience` epochs, never below `min_lr`
"""

from __future__ import annotations

import math

import torch


class Schedule:
    """Sets the optimizer's lr before each epoch; `observe` feeds the monitored value (plateau)."""

    def __init__(self, name: str, lr: float, epochs: int, options: dict) -> None:
        self.name, self.base_lr, self.epochs = name, lr, epochs
        self.options = dict(options)
        self.warmup = self.options.pop("warmup", 0)
        self.plateau_lr = lr
        self._best = float("inf")
        self._best_epoch = 0
        if name == "multistep":
            self.milestones = sorted(m * epochs if m < 1 else m for m in self.options["milestones"])

    def lr_at(self, epoch: int) -> float:
        if epoch < self.warmup:
            return self.base_lr * (epoch + 1) / self.warmup
        e, span = epoch - self.warmup, max(self.epochs - self.warmup, 1)
        o = self.options
        if self.name == "exponential":
            return self.base_lr * o["gamma"] ** e
        if self.name == "cosine":
            return o["eta_min"] + (self.base_lr - o["eta_min"]) * (1 + math.cos(math.pi * e / span)) / 2
        if self.name == "multistep":
            return self.base_lr * o["gamma"] ** sum(m <= e for m in self.milestones)
        if self.name == "plateau":
            return self.plateau_lr
        return self.base_lr

    def apply(self, optimizer: torch.optim.Optimizer, epoch: int) -> float:
        lr = self.lr_at(epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        return lr

    @property
    def wants_monitor(self) -> bool:
        return self.name == "plateau"

    def observe(self, epoch: int, value: float) -> None:
        """Plateau logic on the monitored value; other schedules ignore it."""
        if self.name != "plateau" or epoch < self.warmup:
            return
        o = self.options
        if value < self._best * (1 - o["threshold"]):
            self._best, self._best_epoch = value, epoch
        elif epoch - self._best_epoch >= o["patience"]:
            self.plateau_lr = max(self.plateau_lr * o["factor"], o["min_lr"])
            self._best_epoch = epoch
