"""`cpikan bench derivatives` and `cpikan bench gpu` (the device check, ``tools/gpu-check.sh``).

derivatives: ms per training step of the derivative engines, eager and compiled. One training
step = PDE residual at N points + mean square + backward + Adam step, for the [d, 32, 32, 32, 1]
degree-5 Scaled-cPIKAN on a Poisson problem -lap u = f in d = 1, 2, 3 (off-centre box). Engines:
nested autograd (eager), taylor (eager), taylor under `torch.compile` (``mode="reduce-overhead"``
on CUDA: CUDA graphs). Each cell reports the median of `repeats` timed steps after `warmup`
steps; the first compiled step (the compile itself) is reported apart.

gpu: one table of what only a GPU can tell (`gpu_check`): AMP time per epoch and peak memory,
the derivatives bench, the paper's diffusion setup. It needs only torch, numpy and scipy.
"""

from __future__ import annotations

import copy
import math
import statistics
import time
import traceback
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from cpikan import problems as registry
from cpikan.config import ConfigError, RunConfig
from cpikan.losses import PhysicsLoss, ProblemParameters
from cpikan.models import build_network
from cpikan.problems.base import Box, Dirichlet, Problem
from cpikan.runs import pick_device, run

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
            x = (lo + (hi - lo) * torch.rand(1, n, dim, generator=gen)).to(dev)  # one member
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


# the options each benchmark takes (besides --device)
OPTIONS = {"derivatives": ("points", "repeats", "dims"), "gpu": ("smoke",),
           "seeds": ("members", "problems", "epochs", "lbfgs")}


def main(what: str, device: str | None = None, points: str | None = None, repeats: int | None = None,
         dims: str | None = None, smoke: bool = False, members: str | None = None, problems: str | None = None,
         epochs: int | None = None, lbfgs: int | None = None) -> int:
    """Entry point of `cpikan bench`: runs the benchmark `what`, printing its table row by row, and
    returns the exit status. Arguments left at None take the benchmark's defaults; each of the
    others belongs to one benchmark (`OPTIONS`)."""
    if what not in OPTIONS:
        raise ConfigError(f"bench {what!r} is not valid; choose one of {', '.join(map(repr, OPTIONS))}")
    given = {"points": points, "repeats": repeats, "dims": dims, "smoke": smoke or None, "members": members,
             "problems": problems, "epochs": epochs, "lbfgs": lbfgs}
    foreign = [f"--{k}" for k, v in given.items() if v is not None and k not in OPTIONS[what]]
    if foreign:
        raise ConfigError(f"{', '.join(foreign)} is not an option of `cpikan bench {what}`; its options: "
                          f"{', '.join('--' + k for k in OPTIONS[what])}")
    if what == "gpu":
        return gpu_check(device or "cuda", smoke)
    if what == "seeds":
        from cpikan.bench_seeds import MEMBERS, PROBLEMS, seed_table

        names = problems.split(",") if problems else PROBLEMS
        for name in names:
            registry.check(name)
        return seed_table(names, _ints(members, "members") if members else MEMBERS, epochs or 100,
                          100 if lbfgs is None else lbfgs, device or "auto")
    repeats = 10 if repeats is None else repeats
    dims_, points_ = _ints(dims or "1,2,3", "dims"), _ints(points or "2000,10000,50000", "points")
    dev = pick_device(device or "auto")
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    print(f"cpikan bench derivatives: torch {torch.__version__}, device {name}, threads {torch.get_num_threads()}, "
          f"[d, 32, 32, 32, 1] degree 5, float32, median of {repeats} steps\n{HEADER}\n{'-' * len(HEADER)}", flush=True)
    for dim in dims_:
        for n in points_:
            print(format_row(derivative_rows(dims=(dim,), points=(n,), repeats=repeats, device=str(dev))[0]),
                  flush=True)
    return 0


def _ints(text: str, what: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"--{what}={text!r} must be comma-separated integers, e.g. 2000,10000") from None


# ---------------------------------------------------------------- the GPU check

@dataclass(frozen=True)
class CheckSizes:
    """Sizes of `gpu_check`: AMP rows (Adam epochs on the `amp_profile` sizes of each problem), the
    derivatives bench (dims x points, network, compile backend), the Adam epochs timed of the
    paper's diffusion setup (the full profile), and the seeds bench (S members batched against S
    separate runs, `seed_epochs` Adam epochs at the quick sizes)."""

    amp_profile: str
    amp_epochs: int
    dims: tuple[int, ...]
    points: tuple[int, ...]
    repeats: int
    hidden: tuple[int, ...]
    degree: int
    backend: str
    diffusion_epochs: int
    seed_members: tuple[int, ...]
    seed_epochs: int


# Sized to stay under 10 minutes on one H100/H200 (compiling, and 64 separate runs per seeds row, take most of it);
# smoke: seconds on a CPU.
GPU_SIZES = CheckSizes(amp_profile="quick", amp_epochs=300, dims=(3,), points=(10_000, 50_000, 200_000), repeats=20,
                       hidden=(32, 32, 32), degree=5, backend="inductor", diffusion_epochs=500, seed_members=(8, 64),
                       seed_epochs=50)
SMOKE_SIZES = CheckSizes(amp_profile="smoke", amp_epochs=3, dims=(1,), points=(48,), repeats=2, hidden=(4,), degree=3,
                         backend="aot_eager", diffusion_epochs=3, seed_members=(2,), seed_epochs=2)
SEED_PROBLEMS = ("poisson1d", "helmholtz2d")
AMP_PROBLEMS = ("helmholtz2d", "poisson3d")
AMP_MODES = ("none", "bf16", "fp16")
CHECK_HEADER = f"{'check':<11} {'problem':<15} {'setting':<18} {'points':>8} {'ms/epoch':>9} {'peak MB':>8}  note"


def gpu_check(device: str = "cuda", smoke: bool = False) -> int:
    """Print one table: AMP none/bf16/fp16 time per epoch and peak memory on helmholtz2d and
    poisson3d, the derivatives bench (autograd, taylor, compiled), the time per epoch of the
    paper's diffusion setup (``--profile full``), and seed batching: member-steps per second of S
    seeds in one batched run against S separate runs (`cpikan.bench_seeds`). A row that fails says so, with its traceback on
    stderr, and the others still run. Returns 0, or 1 when a row failed.

    Raises ConfigError when `device` is CUDA and there is none: the check never falls back to the
    CPU, which runs it only when asked for by name (``device="cpu"``).
    """
    dev = _check_device(device)
    sizes = SMOKE_SIZES if smoke else GPU_SIZES
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    print(f"cpikan GPU check: device {name}, torch {torch.__version__} (CUDA {torch.version.cuda}), "
          f"{'smoke' if smoke else 'check'} sizes; peak MB: CUDA max allocated (CPU: peak RSS)\n"
          f"{CHECK_HEADER}\n{'-' * len(CHECK_HEADER)}", flush=True)
    started = time.perf_counter()
    run(RunConfig(problem="poisson1d", profile="smoke", device=str(dev)), progress=False)  # warm-up, not shown
    rows = [*(({"check": "amp", "problem": p, "setting": m}, lambda p=p, m=m: _amp_row(p, m, dev, sizes))
              for p in AMP_PROBLEMS for m in AMP_MODES),
            *(({"check": "derivatives", "problem": f"poisson{d}d bench", "points": n},
               lambda d=d, n=n: _derivative_rows(d, n, dev, sizes)) for d in sizes.dims for n in sizes.points),
            ({"check": "diffusion", "problem": "diffusion1d", "setting": "full profile"},
             lambda: _diffusion_row(dev, sizes)),
            *(({"check": "seeds", "problem": p, "setting": f"S={m} batched"}, lambda p=p, m=m: _seed_row(p, m, dev, sizes))
              for p in SEED_PROBLEMS for m in sizes.seed_members)]
    failed = []
    for stub, measure in rows:
        try:
            lines = measure()
        except Exception as err:  # noqa: BLE001 -- one broken row must not hide the others
            traceback.print_exc()
            failed.append(" ".join(str(v) for v in stub.values()))
            lines = [stub | {"note": f"FAILED {type(err).__name__}: {err}".splitlines()[0]}]
        for line in lines:
            print(_check_line(line), flush=True)
    print(f"{len(rows) - len(failed)} of {len(rows)} checks ran in {time.perf_counter() - started:.0f} s"
          + (f"; FAILED: {', '.join(failed)}" if failed else ""), flush=True)
    return 1 if failed else 0


def _check_device(device: str) -> torch.device:
    if device == "cpu":
        return torch.device("cpu")
    if not device.startswith("cuda"):
        raise ConfigError(f"device={device!r} is not valid for the GPU check; choose 'cuda', 'cuda:N' or 'cpu'")
    if not torch.cuda.is_available():
        raise ConfigError(f"the GPU check needs CUDA, and torch {torch.__version__} (CUDA build: "
                          f"{torch.version.cuda}) sees no CUDA device; it does not fall back to the CPU "
                          "(--device cpu runs it there on purpose)")
    return pick_device(device)


def _amp_row(problem: str, amp: str, dev: torch.device, sizes: CheckSizes) -> list[dict]:
    row = {"check": "amp", "problem": problem, "setting": amp}
    if amp == "fp16" and dev.type != "cuda":
        return [row | {"note": "skipped: fp16 needs CUDA"}]
    cfg = RunConfig(problem=problem, profile=sizes.amp_profile, device=str(dev)).override(
        {"train.amp": amp, "train.epochs": sizes.amp_epochs, "train.lbfgs_iterations": 0})
    return [row | _timed(cfg, f"{sizes.amp_epochs} Adam epochs")]


def _diffusion_row(dev: torch.device, sizes: CheckSizes) -> list[dict]:
    cfg = RunConfig(problem="diffusion1d", profile="full", device=str(dev)).override(
        {"train.epochs": sizes.diffusion_epochs})
    return [{"check": "diffusion", "problem": "diffusion1d", "setting": "full profile"}
            | _timed(cfg, f"first {sizes.diffusion_epochs} Adam epochs of the full run")]


def _seed_row(problem: str, members: int, dev: torch.device, sizes: CheckSizes) -> list[dict]:
    from cpikan.bench_seeds import seed_row

    r = seed_row(problem, members, "adam", sizes.seed_epochs, 0, str(dev))
    return [{"check": "seeds", "problem": problem, "setting": f"S={members} batched", "ms": r.ms_per_epoch,
             "note": f"{r.speedup:.1f}x the member-steps/s of {members} separate runs ({r.batched:.0f} against "
                     f"{r.separate:.0f}), {sizes.seed_epochs} Adam epochs at the quick sizes"}]


def _timed(cfg: RunConfig, what: str) -> dict:
    result = run(cfg, progress=False)
    m = result.metrics
    skipped = f", {m['amp_skipped']} steps skipped" if m.get("amp_skipped") else ""
    return {"points": result.config["sampling"]["n_pde"], "ms": m["time_per_epoch_ms"], "mb": m["peak_mem_mb"],
            "note": f"{what}, rel_l2 {m['rel_l2']:.2g}{skipped}"}


def _derivative_rows(dim: int, n: int, dev: torch.device, sizes: CheckSizes) -> list[dict]:
    [r] = derivative_rows(dims=(dim,), points=(n,), repeats=sizes.repeats, device=str(dev), hidden=sizes.hidden,
                          degree=sizes.degree, backend=sizes.backend)
    row = {"check": "derivatives", "problem": f"poisson{dim}d bench", "points": n}
    return [row | {"setting": "autograd", "ms": r["autograd_ms"], "note": f"median of {sizes.repeats} steps"},
            row | {"setting": "taylor", "ms": r["taylor_ms"],
                   "note": f"x{r['speedup_taylor']:.2f}, max rel diff {r['max_rel_diff']:.0e}"},
            row | {"setting": f"compiled {sizes.backend}", "ms": r["compiled_ms"],
                   "note": f"x{r['speedup_compiled']:.2f}, compiled in {r['compile_s']:.1f} s"}]


def _check_line(row: dict) -> str:
    """One line of the table under `CHECK_HEADER`; a missing number is shown as '-'."""
    def number(key: str, spec: str, width: int) -> str:
        return f"{row[key]:>{width}{spec}}" if row.get(key) is not None else f"{'-':>{width}}"

    return (f"{row['check']:<11} {row.get('problem', '-'):<15} {row.get('setting', '-'):<18} "
            f"{number('points', ',', 8)} {number('ms', '.2f', 9)} {number('mb', '.0f', 8)}  {row.get('note', '')}")
