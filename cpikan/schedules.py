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
"""

from __future__ import annotations

import math
import torch


class Schedule:
    """Sets the optimizer's lr before each epoch; `observe` feeds the monitored value (plateau).

    Args:
        name: ``train.scheduler``.
        lr: base rate lr_0.
        epochs: Adam epochs E.
        options: the full ``train.scheduler_params`` (see `cpikan.config.params`).
    """

    def __init__(self, name: str, lr: float, epochs: int, options: dict) -> None:
        self.name, self.base_lr, self.epochs = name, lr, epochs
        self.options = dict(options)
        self.warmup = self.options.pop("warmup", 0)
        self.span = max(epochs - self.warmup, 1)
        self.plateau_lr = lr
        self._best = math.inf
        self._best_epoch = 0
        if name == "multistep":
            self.milestones = sorted(m * self.span if m < 1 else m for m in self.options["milestones"])

    def lr_at(self, epoch: int) -> float:
        """The rate of `epoch` (0-based); for plateau, the current reduced rate."""
        if epoch < self.warmup:
            return self.base_lr * (epoch + 1) / self.warmup
        e, o = epoch - self.warmup, self.options
        if self.name == "exponential":
            return self.base_lr * o["gamma"] ** e
        if self.name == "cosine":
            return o["eta_min"] + (self.base_lr - o["eta_min"]) * (1 + math.cos(math.pi * e / self.span)) / 2
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
        """Plateau logic on the monitored value; other schedules (and warm-up epochs) ignore it."""
        if self.name != "plateau" or epoch < self.warmup:
            return
        o = self.options
        if value < self._best * (1 - o["threshold"]):
            self._best, self._best_epoch = value, epoch
        elif epoch - self._best_epoch >= o["patience"]:
            self.plateau_lr = max(self.plateau_lr * o["factor"], o["min_lr"])
            self._best_epoch = epoch
