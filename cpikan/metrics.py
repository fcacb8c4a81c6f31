"""Relative L2 and max error, the fixed evaluation subset the history is scored on, peak memory,
device and version facts for run records, and the names of the metrics every run records (`RUN_METRICS`)."""

from __future__ import annotations

import platform
import resource
from pathlib import Path

import numpy as np
import torch

# What every run records (DESIGN §5), in the order summaries show it; a run file also holds the
# versions, L-BFGS and skip counts and, for inverse problems, each recovered parameter and its error.
# Every time is training time: the scoring of the history's rel_l2 is timed apart (`eval_time_s`).
RUN_METRICS = ("rel_l2", "max_abs_err", "final_loss", "epochs_run", "stop_reason", "wall_time_s",
               "time_per_epoch_ms", "eval_time_s", "peak_mem_mb", "device")
EVAL_SEED = 20240601  # the evaluation subset's own seed: every run seed and variant is scored on the same points

_CLEAR_REFS = Path("/proc/self/clear_refs")
_STATUS = Path("/proc/self/status")


def relative_l2(pred: np.ndarray, true: np.ndarray) -> float:
    """||pred - true||_2 / ||true||_2 over the evaluation points."""
    return float(np.linalg.norm(pred - true) / np.linalg.norm(true))


def evaluation_subset(x: np.ndarray, u: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """n of the evaluation points x (M, d) and values u (M,), drawn without replacement with
    `EVAL_SEED` (kept in their order); all of them when n >= M."""
    if n >= len(u):
        return x, u
    pick = np.sort(np.random.default_rng(EVAL_SEED).choice(len(u), size=n, replace=False))
    return x[pick], u[pick]


def max_abs_error(pred: np.ndarray, true: np.ndarray) -> float:
    return float(np.max(np.abs(pred - true)))


@torch.no_grad()
def predict(net: torch.nn.Module, x: np.ndarray, chunk: int = 65536) -> np.ndarray:
    """Values of a network of one member at numpy points x (M, d), in chunks; float64 numpy (M,)."""
    return predict_members(net, torch.as_tensor(x), chunk)[0].double().cpu().numpy()


@torch.no_grad()
def predict_members(net: torch.nn.Module, x: torch.Tensor, chunk: int = 65536) -> torch.Tensor:
    """Values of each of the S members of `net` at the same points x (M, d): (S, M), in the
    network's dtype, on its device; about `chunk` points a pass (all members together)."""
    p = next(net.parameters())
    members = net.members
    step = max(1, chunk // members)
    x = x.to(p.device, p.dtype)
    return torch.cat([net(part.expand(members, -1, -1).reshape(-1, x.shape[1])).view(members, -1)
                      for part in x.split(step)], dim=1)


def relative_l2_members(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """||pred_m - true||_2 / ||true||_2 per member, in float64 on the device: (S, M), (M,) -> (S,)."""
    true = true.to(pred.device, torch.float64)
    return torch.linalg.vector_norm(pred.double() - true, dim=1) / torch.linalg.vector_norm(true)


def reset_peak_memory(device: torch.device) -> None:
    """Start a new peak: CUDA allocator statistics, or the process's peak RSS (Linux clear_refs)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        pass


def peak_memory_mb(device: torch.device) -> float:
    """CUDA: max allocated since the reset. CPU: peak resident set size since the reset (VmHWM)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def versions() -> dict[str, str]:
    import cpikan

    return {"cpikan": cpikan.__version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version()}
