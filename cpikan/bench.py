"""`cpikan bench derivatives`: ms per training step of the derivative engines, eager and compiled.

One training step = PDE residual at N points + mean square + backward + Adam step, for the
[d, 32, 32, 32, 1] degree-5 Scaled-cPIKAN on a Poisson problem -lap u = f in d = 1, 2, 3
(off-centre box). Engines: nested autograd (eager), taylor (eager), taylor under `torch.compile`
(``mode="reduce-overhead"`` on CUDA: CUDA graphs). Each cell reports the median of `repeats`
timed steps after `warmup` steps; the first compiled step (the compile itself) is reported apart.
"""

from __future__ import annotations

import copy
import math
import statistics
import time
from typing import Callable, Sequence

import torch

from cpikan.config import ConfigError
from cpikan.losses import PhysicsLoss, ProblemParameters
from cpikan.models import build_network
from cpikan.problems.base import Box, Dirichlet, Problem
from cpikan.runs import pick_device

LO, HI = (-1.0, 0.5, 2.0), (2.0, 1.5, 2.5)
VARIANTS = (("autograd", False), ("taylor", False), ("taylor", True))


def poisson_problem(dim: int) -> Problem:
    """-lap u = f on an off-centre box of `dim` axes, u = prod_i sin(pi x_i) (no boundary term is timed)."""
    def exact(x: torch.Tensor) -> torch.Tensor:
        return torch.sin(math.pi * x).prod(dim=1)

    return Problem(box=Box(LO[:dim], HI[:dim]), residual=lambda d, x: -d.lap - dim * math.pi**2 * exact(x),
                   conditions=[Dirichlet(exact)], exact=exact, name=f"bench_poisson{dim}d")


def derivative_rows(dims: Sequence[int] = (1, 2, 3), points: Sequence[int] = (2000, 10000, 50000),
                    repeats: int = 10, warmup: int = 2, device: str = "cpu",
                    hidden: Sequence[int] = (32, 32, 32), degree: int = 5, seed: int = 0,
                    backend: str = "inductor") -> list[dict]:
    """One row per (dim, N): ms per step for each engine, speed-ups over autograd, residual agreement.

    Args:
        dims, points: input dimensions (1, 2, 3) and point counts N of the table.
        repeats, warmup: timed steps (the median is reported) and untimed steps before them.
        device: 'cpu', 'cuda', 'cuda:N' or 'auto'.
        hidden, degree, seed: the network and the seed of its weights and points.
        backend: `torch.compile` backend of the compiled variant ('aot_eager' skips code
            generation: a quick check that the step compiles, not a timing).
    Returns dicts with keys ``dim, points, autograd_ms, taylor_ms, compiled_ms, speedup_taylor,
    speedup_compiled, max_rel_diff`` (max |r - r_autograd| / max |r_autograd| over both taylor
    variants, at the initial weights), ``compile_s`` (the first compiled step), ``threads, device``.
    """
    if repeats < 1 or warmup < 1:
        raise ConfigError(f"repeats={repeats} and warmup={warmup} must be >= 1")
    dev = pick_device(device)
    rows = []
    for dim in dims:
        if dim not in (1, 2, 3):
            raise ConfigError(f"dim={dim} is not valid; choose from 1, 2, 3")
        problem = poisson_problem(dim)
        for n in points:
            gen = torch.Generator().manual_seed(seed)
            lo, hi = torch.tensor(LO[:dim]), torch.tensor(HI[:dim])
            x = (lo + (hi - lo) * torch.rand(n, dim, generator=gen)).to(dev)
            torch.manual_seed(seed)
            net = build_network("scaled_cpikan", LO[:dim], HI[:dim], hidden, degree).to(dev)
            timings, residuals, first = {}, {}, {}
            for engine, compiled in VARIANTS:
                name = "compiled" if compiled else engine
                timings[name], residuals[name], first[name] = _time_variant(
                    problem, copy.deepcopy(net), engine, backend if compiled else None, x, repeats, warmup)
            ref = residuals["autograd"]
            scale = ref.abs().max().clamp_min(torch.finfo(ref.dtype).tiny)
            diff = max(float((residuals[k] - ref).abs().max() / scale) for k in ("taylor", "compiled"))
            rows.append({"dim": dim, "points": n, "autograd_ms": timings["autograd"], "taylor_ms": timings["taylor"],
                         "compiled_ms": timings["compiled"],
                         "speedup_taylor": timings["autograd"] / timings["taylor"],
                         "speedup_compiled": timings["autograd"] / timings["compiled"],
                         "max_rel_diff": diff, "compile_s": first["compiled"],
                         "threads": torch.get_num_threads(), "device": str(dev)})
    return rows


def _time_variant(problem: Problem, net: torch.nn.Module, engine: str, backend: str | None, x: torch.Tensor,
                  repeats: int, warmup: int) -> tuple[float, torch.Tensor, float]:
    """(median ms per step, residual at the initial weights, seconds of the first step); eager
    when `backend` is None."""
    loss = PhysicsLoss(problem, net, engine, ProblemParameters({}, {}).to(x.device))

    def objective(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r = loss.residual(points)
        return r.square().mean(), r.detach()

    cuda_graphs = backend == "inductor" and x.device.type == "cuda"
    if backend is not None:
        torch.compiler.reset()
        objective = torch.compile(objective, backend=backend, mode="reduce-overhead" if cuda_graphs else None)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)

    def step() -> torch.Tensor:
        if cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        optimizer.zero_grad(set_to_none=True)
        value, r = objective(x)
        value.backward()
        optimizer.step()
        return r

    first_s, r0 = _clock(step, x.device)
    r0 = r0.clone()
    for _ in range(warmup - 1):
        step()
    times = [_clock(step, x.device)[0] for _ in range(repeats)]
    return 1000 * statistics.median(times), r0, first_s


def _clock(step: Callable[[], torch.Tensor], device: torch.device) -> tuple[float, torch.Tensor]:
    _sync(device)
    start = time.perf_counter()
    out = step()
    _sync(device)
    return time.perf_counter() - start, out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


HEADER = (f"{'d':>2} {'N':>7} {'autograd ms':>12} {'taylor ms':>10} {'compiled ms':>12} "
          f"{'x taylor':>9} {'x compiled':>11} {'max rel diff':>13} {'compile s':>10}")


def format_row(r: dict) -> str:
    """One row of the table under `HEADER`."""
    return (f"{r['dim']:>2} {r['points']:>7,} {r['autograd_ms']:>12.1f} {r['taylor_ms']:>10.1f} "
            f"{r['compiled_ms']:>12.1f} {r['speedup_taylor']:>9.2f} {r['speedup_compiled']:>11.2f} "
            f"{r['max_rel_diff']:>13.1e} {r['compile_s']:>10.1f}")


def format_rows(rows: list[dict]) -> str:
    """The rows as a fixed-width text table."""
    return "\n".join([HEADER, "-" * len(HEADER), *map(format_row, rows)])


def main(what: str, device: str = "auto", points: str = "2000,10000,50000", repeats: int = 10,
         dims: str = "1,2,3") -> list[dict]:
    """Entry point of `cpikan bench`: runs the benchmark `what`, printing each row as it is done."""
    if what != "derivatives":
        raise ConfigError(f"bench {what!r} is not valid; choose 'derivatives'")
    dims_, points_ = _ints(dims, "dims"), _ints(points, "points")
    dev = pick_device(device)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    print(f"cpikan bench derivatives: torch {torch.__version__}, device {name}, threads {torch.get_num_threads()}, "
          f"[d, 32, 32, 32, 1] degree 5, float32, median of {repeats} steps\n{HEADER}\n{'-' * len(HEADER)}", flush=True)
    rows = []
    for dim in dims_:
        for n in points_:
            rows += derivative_rows(dims=(dim,), points=(n,), repeats=repeats, device=str(dev))
            print(format_row(rows[-1]), flush=True)
    return rows


def _ints(text: str, what: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"--{what}={text!r} must be comma-separated integers, e.g. 2000,10000") from None
