"""Stage-1 strategies: gradient clipping, mixed precision, early stopping.

Each toggle is one strategy object with a do-nothing default (`cpikan.strategies` states the
hooks the trainer calls); ``train.amp`` picks its class from `PRECISIONS`, every class built as
``cls(device, dtype)``.

Mixed precision (``train.amp``): only the Adam phase's forward pass runs under autocast:
the network, the derivatives of the residual and the condition terms. Squared residuals are
averaged in float32; the optimizer step, gradient clipping, the monitored held-out residual,
the L-BFGS phase and the final evaluation always run in full precision.
Warning: fp16 overflows second derivatives easily (they span roughly 2^0 to 2^20); such steps
are skipped and counted (``amp_skipped``), and fp16 needs CUDA.
"""

from __future__ import annotations

import contextlib
from typing import Iterable

import torch

from cpikan.config import ConfigError


# ---------------------------------------------------------------- gradient clipping

def grad_norm(params: Iterable[torch.nn.Parameter]) -> torch.Tensor:
    """Global L2 norm of the gradients: sqrt(sum_p ||grad p||^2)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))


class NoClip:
    """``train.grad_clip = None``: measure the gradient norm, change nothing."""

    def clip(self, params: list[torch.nn.Parameter]) -> float:
        return float(grad_norm(params))


class ClipNorm:
    """Scale all gradients by min(1, max_norm / ||g||); returns the pre-clip norm ||g||."""

    def __init__(self, max_norm: float) -> None:
        self.max_norm = max_norm

    def clip(self, params: list[torch.nn.Parameter]) -> float:
        return float(torch.nn.utils.clip_grad_norm_(params, self.max_norm))


def make_clipper(max_norm: float | None) -> NoClip | ClipNorm:
    """Strategy for ``train.grad_clip`` (None: off)."""
    return NoClip() if max_norm is None else ClipNorm(max_norm)


# ---------------------------------------------------------------- mixed precision

class FullPrecision:
    """``train.amp = "none"``: a non-finite loss or gradient ends the run (the NaN guard)."""

    skips_nonfinite = False  # a non-finite step is skipped and counted, rather than ending the run
    step_checks_gradients = False  # `step` itself skips a step with non-finite gradients

    def __init__(self, device: torch.device, dtype: torch.dtype) -> None:
        """Every precision strategy is built from the run's device and parameter dtype."""

    def autocast(self) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def unscale(self, optimizer: torch.optim.Optimizer) -> None:
        return None

    def step(self, optimizer: torch.optim.Optimizer) -> bool:
        """Apply the step; False when it was skipped."""
        optimizer.step()
        return True


class Autocast(FullPrecision):
    """``train.amp = "bf16"``: the forward pass under bfloat16 autocast, on any device; a step
    with a non-finite loss or gradient is skipped and counted. Refuses float64 parameters."""

    name = "bf16"
    amp_dtype = torch.bfloat16
    skips_nonfinite = True

    def __init__(self, device: torch.device, dtype: torch.dtype) -> None:
        if dtype == torch.float64:
            raise ConfigError(f"train.amp={self.name!r} autocasts float32 work; it does not apply with "
                              "dtype='float64'")
        self.device_type = device.type

    def autocast(self) -> contextlib.AbstractContextManager:
        return torch.autocast(self.device_type, dtype=self.amp_dtype)


class ScaledAutocast(Autocast):
    """``train.amp = "fp16"`` (CUDA only): float16 autocast, the loss scaled by a GradScaler,
    which skips a step whose gradients overflow and lowers the scale."""

    name = "fp16"
    amp_dtype = torch.float16
    step_checks_gradients = True

    def __init__(self, device: torch.device, dtype: torch.dtype) -> None:
        if device.type != "cuda":
            raise ConfigError(f"train.amp='fp16' needs CUDA (device is {device}); on a CPU use 'bf16' or 'none'")
        super().__init__(device, dtype)
        self.scaler = torch.amp.GradScaler(device.type)

    def backward(self, loss: torch.Tensor) -> None:
        self.scaler.scale(loss).backward()

    def unscale(self, optimizer: torch.optim.Optimizer) -> None:
        self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> bool:
        scale = self.scaler.get_scale()
        self.scaler.step(optimizer)
        self.scaler.update()
        return self.scaler.get_scale() >= scale


PRECISIONS: dict[str, type[FullPrecision]] = {"none": FullPrecision, "bf16": Autocast, "fp16": ScaledAutocast}


# ---------------------------------------------------------------- early stopping

class NoEarlyStopping:
    """``train.early_stopping = None``: never stops."""

    best_epoch: int | None = None
    best_value: float | None = None
    wants_monitor = False

    def update(self, epoch: int, value: float, modules: list[torch.nn.Module]) -> bool:
        return False

    def restore(self, modules: list[torch.nn.Module]) -> None:
        return None


class EarlyStopping(NoEarlyStopping):
    """Stop when the monitored value (``train.monitor``) has not improved by `min_delta` for
    `patience` epochs.

    An improvement is value < best - min_delta. The best weights are kept and restored on stop.
    """

    wants_monitor = True

    def __init__(self, patience: int, min_delta: float) -> None:
        self.patience, self.min_delta = patience, min_delta
        self.best_value = float("inf")
        self.best_epoch = None
        self._best_state: list[dict] | None = None

    def update(self, epoch: int, value: float, modules: list[torch.nn.Module]) -> bool:
        if value < self.best_value - self.min_delta:
            self.best_value, self.best_epoch = value, epoch
            self._best_state = [{k: v.detach().clone() for k, v in m.state_dict().items()} for m in modules]
            return False
        return self.best_epoch is not None and epoch - self.best_epoch >= self.patience

    def restore(self, modules: list[torch.nn.Module]) -> None:
        if self._best_state is not None:
            for module, state in zip(modules, self._best_state):
                module.load_state_dict(state)


def make_early_stopping(options: dict) -> NoEarlyStopping:
    """Strategy for ``train.early_stopping`` given its full parameter dict (empty: off)."""
    return EarlyStopping(**options) if options else NoEarlyStopping()
