"""Stage-1 strategies: gradient clipping, mixed precision, early stopping.

Each toggle is one strategy object with a do-nothing default (`cpikan.strategies` states the
hooks the trainer calls); ``train.amp`` picks its class from `PRECISIONS`, every class built as
``cls(device, dtype, members)``. Every strategy acts on each of the S members alone: its own clip
norm, loss scale and stop.

Mixed precision (``train.amp``): only the Adam phase's forward pass runs under autocast:
the network, the derivatives of the residual and the condition terms. Squared residuals are
averaged in float32; the optimizer step, gradient clipping, the monitored held-out residual,
the L-BFGS phase and the final evaluation always run in full precision.
Warning: fp16 overflows second derivatives easily (they span roughly 2^0 to 2^20); such steps
are skipped and counted (``amp_skipped``), and fp16 needs CUDA.
"""

from __future__ import annotations

import contextlib
from typing import Sequence

import torch

from cpikan.config import ConfigError
from cpikan.models import member_view


# ---------------------------------------------------------------- gradient clipping

def grad_norm(params: Sequence[torch.nn.Parameter]) -> torch.Tensor:
    """Per member, the global L2 norm of its gradients: sqrt(sum_p ||grad p[m]||^2); shape (S,).

    Every parameter has the member axis first, (S, ...); one without a gradient counts as zero."""
    norms = [torch.linalg.vector_norm(p.grad.flatten(1), dim=1) for p in params if p.grad is not None]
    if not norms:
        return torch.zeros(params[0].shape[0], device=params[0].device)
    return norms[0] if len(norms) == 1 else torch.linalg.vector_norm(torch.stack(norms), dim=0)


class NoClip:
    """``train.grad_clip = None``: measure each member's gradient norm, change nothing."""

    def clip(self, params: Sequence[torch.nn.Parameter]) -> torch.Tensor:
        return grad_norm(params)


class ClipNorm:
    """Scale each member's gradients by min(1, max_norm / (||g|| + 1e-6)), as
    torch.nn.utils.clip_grad_norm_ does for one network; returns the pre-clip norms ||g|| (S,)."""

    def __init__(self, max_norm: float) -> None:
        self.max_norm = max_norm

    def clip(self, params: Sequence[torch.nn.Parameter]) -> torch.Tensor:
        norm = grad_norm(params)
        factor = torch.clamp(self.max_norm / (norm + 1e-6), max=1.0)
        for p in params:
            if p.grad is not None:
                p.grad.mul_(member_view(factor, p))
        return norm


def make_clipper(max_norm: float | None) -> NoClip | ClipNorm:
    """Strategy for ``train.grad_clip`` (None: off)."""
    return NoClip() if max_norm is None else ClipNorm(max_norm)


# ---------------------------------------------------------------- mixed precision

class FullPrecision:
    """``train.amp = "none"``: a non-finite loss or gradient ends the member's run (the NaN guard)."""

    skips_nonfinite = False  # a non-finite step is skipped and counted, rather than ending the run

    def __init__(self, device: torch.device, dtype: torch.dtype, members: int = 1) -> None:
        """Every precision strategy is built from the run's device, parameter dtype and members."""

    def autocast(self) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()

    def backward(self, loss: torch.Tensor) -> None:
        """Backward of the members' losses (S,): members share no weights, so the gradient of the
        sum is each member's own."""
        loss.sum().backward()

    def unscale(self, params: Sequence[torch.nn.Parameter]) -> None:
        return None

    def update(self, stepped: torch.Tensor) -> None:
        """After a step: `stepped` (S,) says which members' steps were applied."""
        return None


class Autocast(FullPrecision):
    """``train.amp = "bf16"``: the forward pass under bfloat16 autocast, on any device; a step
    with a non-finite loss or gradient is skipped and counted. Refuses float64 parameters."""

    name = "bf16"
    amp_dtype = torch.bfloat16
    skips_nonfinite = True

    def __init__(self, device: torch.device, dtype: torch.dtype, members: int = 1) -> None:
        if dtype == torch.float64:
            raise ConfigError(f"train.amp={self.name!r} autocasts float32 work; it does not apply with "
                              "dtype='float64'")
        self.device_type = device.type

    def autocast(self) -> contextlib.AbstractContextManager:
        return torch.autocast(self.device_type, dtype=self.amp_dtype)


class ScaledAutocast(Autocast):
    """``train.amp = "fp16"`` (CUDA only): float16 autocast, each member's loss scaled by its own
    factor, as torch.amp.GradScaler scales one network's (initial 2^16; halved when the member's
    gradients overflow, its step skipped; doubled after 2000 steps in a row without overflow)."""

    name = "fp16"
    amp_dtype = torch.float16
    INIT, GROWTH, BACKOFF, INTERVAL = 2.0**16, 2.0, 0.5, 2000

    def __init__(self, device: torch.device, dtype: torch.dtype, members: int = 1) -> None:
        if device.type != "cuda":
            raise ConfigError(f"train.amp='fp16' needs CUDA (device is {device}); on a CPU use 'bf16' or 'none'")
        super().__init__(device, dtype, members)
        self.scale = torch.full((members,), self.INIT, dtype=torch.float32, device=device)
        self.good = torch.zeros(members, dtype=torch.long, device=device)

    def backward(self, loss: torch.Tensor) -> None:
        (loss * self.scale.to(loss.dtype)).sum().backward()

    def unscale(self, params: Sequence[torch.nn.Parameter]) -> None:
        for p in params:
            if p.grad is not None:
                p.grad.div_(member_view(self.scale.to(p.grad.dtype), p))

    def update(self, stepped: torch.Tensor) -> None:
        self.good = torch.where(stepped, self.good + 1, 0)
        grow = self.good >= self.INTERVAL
        self.scale = torch.where(stepped, torch.where(grow, self.scale * self.GROWTH, self.scale),
                                 self.scale * self.BACKOFF)
        self.good = torch.where(grow, 0, self.good)


PRECISIONS: dict[str, type[FullPrecision]] = {"none": FullPrecision, "bf16": Autocast, "fp16": ScaledAutocast}


# ---------------------------------------------------------------- early stopping

class NoEarlyStopping:
    """``train.early_stopping = None``: never stops."""

    wants_monitor = False
    best_epoch: torch.Tensor | None = None

    def update(self, epoch: int, value: torch.Tensor, params: Sequence[torch.nn.Parameter],
               live: torch.Tensor) -> torch.Tensor | None:
        """Told the monitored values (S,) after `epoch`; returns which `live` members stop now
        (their best weights already restored), or None for none."""
        return None


class EarlyStopping(NoEarlyStopping):
    """Stop a member when its monitored value (``train.monitor``) has not improved by `min_delta`
    for `patience` epochs.

    An improvement is value < best - min_delta. Each member's best weights are kept and restored
    on its stop; the other members train on. `best_epoch` (S,) is -1 before a first improvement.
    """

    wants_monitor = True

    def __init__(self, patience: int, min_delta: float) -> None:
        self.patience, self.min_delta = patience, min_delta
        self.best_value: torch.Tensor | None = None
        self._best: list[torch.Tensor] = []

    def update(self, epoch: int, value: torch.Tensor, params: Sequence[torch.nn.Parameter],
               live: torch.Tensor) -> torch.Tensor:
        if self.best_value is None:
            self.best_value = torch.full_like(value, float("inf"))
            self.best_epoch = torch.full(value.shape, -1, dtype=torch.long, device=value.device)
            self._best = [p.detach().clone() for p in params]
        improved = live & (value < self.best_value - self.min_delta)
        self.best_value = torch.where(improved, value, self.best_value)
        self.best_epoch = torch.where(improved, epoch, self.best_epoch)
        stop = live & ~improved & (self.best_epoch >= 0) & (epoch - self.best_epoch >= self.patience)
        with torch.no_grad():
            for p, best in zip(params, self._best):
                best.copy_(torch.where(member_view(improved, p), p, best))
                p.copy_(torch.where(member_view(stop, p), best, p))
        return stop


def make_early_stopping(options: dict) -> NoEarlyStopping:
    """Strategy for ``train.early_stopping`` given its full parameter dict (empty: off)."""
    return EarlyStopping(**options) if options else NoEarlyStopping()
