"""`run(config)`: build, train and evaluate one configuration; `run_seeds(config, seeds)`: the same for
several seeds at once, as one batched run; `RunResult` and its JSON file."""

from __future__ import annotations

import json
import math
import os
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch

from cpikan import problems as registry
from cpikan.config import ConfigError, RunConfig, params, resolve
from cpikan.losses import BALANCERS, PhysicsLoss, ProblemParameters, weight_matrices
from cpikan.metrics import (device_name, evaluation_subset, max_abs_error, peak_memory_mb, predict_members,
                            relative_l2, relative_l2_members, reset_peak_memory, versions)
from cpikan.models import Constrained, initial_members
from cpikan.problems.base import Problem
from cpikan.sampling import PointSets, make_sampler, sample_points, uniform_box
from cpikan.schedules import SCHEDULES
from cpikan.stability import PRECISIONS, make_clipper, make_early_stopping
from cpikan.strategies import Strategies
from cpikan.train import Trainer

# Held-out interior points for the "heldout" monitor, per interior collocation point: a 25 %
# validation split. Scored every `train.monitor_every` epochs without a graph (taylor), watching
# costs about 3 % of the Adam phase (measured on poisson1d quick: 1024 points cost 6 %).
HELDOUT_FRACTION = 0.25


@dataclass
class RunResult:
    """What one run produced. `model` (a network of one member), `problem` and the final interior
    point cloud `collocation` (N, d) are live objects, not saved to JSON."""

    config: dict
    metrics: dict = field(default_factory=dict)
    history: dict = field(default_factory=dict)
    status: str = "ok"
    error: str | None = None
    refinements: list = field(default_factory=list)
    model: torch.nn.Module | None = field(default=None, repr=False, compare=False)
    problem: Problem | None = field(default=None, repr=False, compare=False)
    collocation: torch.Tensor | None = field(default=None, repr=False, compare=False)

    def to_json(self) -> dict:
        return _finite({"config": self.config, "metrics": self.metrics, "history": self.history,
                        "status": self.status, "error": self.error, "refinements": self.refinements})

    def save(self, path: str | os.PathLike) -> Path:
        """Write atomically (temp file + rename): a reader never sees half a file."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=1))
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> "RunResult":
        data = json.loads(Path(path).read_text())
        return cls(config=data["config"], metrics=data.get("metrics", {}), history=data.get("history", {}),
                   status=data.get("status", "ok"), error=data.get("error"),
                   refinements=data.get("refinements", []))

    @classmethod
    def failed(cls, cfg: RunConfig, error: BaseException) -> "RunResult":
        text = "".join(traceback.format_exception_only(type(error), error)).strip()
        return cls(config=cfg.to_dict(), status="failed", error=text)


def run_path(root: str | os.PathLike, profile: str, ablation: str, problem: str, variant: str, seed: int) -> Path:
    """The one place results paths are built: <root>/<profile>/runs/<ablation>/<problem>/<variant>/seed<k>.json."""
    return Path(root) / profile / "runs" / ablation / problem / variant / f"seed{seed}.json"


def _finite(obj: Any) -> Any:
    """NaN and inf become None, so the file is strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def pick_device(name: str) -> torch.device:
    """'auto' -> CUDA when present, else CPU; an explicit CUDA request without CUDA is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={name!r} but CUDA is not available; use 'auto' or 'cpu'")
    return device


@contextmanager
def _threads(n: int | None) -> Iterator[None]:
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def build_problem(cfg: RunConfig) -> Problem:
    """The registered problem named by the config, with its factory parameters."""
    return registry.get(cfg.problem, **cfg.problem_params)


def run(cfg: RunConfig, problem: Problem | None = None, progress: bool | None = None,
        on_epoch: Callable[[dict], bool | None] | None = None) -> RunResult:
    """Train and evaluate one configuration (`run_seeds` with the config's seed alone).

    Args:
        cfg: the run's config; sizes left at None come from the problem and profile.
        problem: a user's own Problem; default: the registered problem ``cfg.problem``.
        progress: show a progress bar; default: when stderr is a terminal.
        on_epoch: called with each history row as it is read back (every ``train.log_every``
            epochs); returning True stops training.
    Returns the RunResult with the resolved config, metrics (DESIGN §5) and history.
    """
    return run_seeds(cfg, [cfg.seed], problem, progress, on_epoch)[0]


def run_seeds(cfg: RunConfig, seeds: Sequence[int], problem: Problem | None = None, progress: bool | None = None,
              on_epoch: Callable[[dict], bool | None] | None = None) -> list[RunResult]:
    """Train and evaluate `cfg` once per seed, all seeds as one batched run of ``len(seeds)`` members.

    Member m starts from the weights and points of the run of ``cfg`` with seed ``seeds[m]`` alone and
    every toggle acts on it alone, so its result is that run's (up to float rounding): the batch only
    shares the work. Arguments as for `run`; `on_epoch` rows carry the member index under
    ``"member"`` when there are several. Returns one RunResult per seed, in order; their times are
    those of the batched run (``metrics["members"]`` says how many trained together).
    """
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds={list(seeds)} must be a non-empty list of distinct seeds")
    if problem is None:
        problem = build_problem(cfg)
    else:
        cfg = cfg.override({"problem": problem.name})
    cfg = resolve(cfg, problem)
    device = pick_device(cfg.device)
    dtype = getattr(torch, cfg.dtype)
    if progress is None:
        progress = os.isatty(2)
    with _threads(cfg.threads):
        return _train_and_evaluate(cfg, list(seeds), problem, device, dtype, progress, on_epoch)


def build_strategies(cfg: RunConfig, problem: Problem, points: PointSets, gens: Sequence[torch.Generator],
                     net: torch.nn.Module, device: torch.device, dtype: torch.dtype) -> Strategies:
    """The toggles of a resolved config as the trainer's strategy objects for the members of `net`:
    each picked from its module's registry by the config's choice and given that choice's full
    parameters."""
    t = cfg.train
    core = getattr(net, "net", net)  # under a hard constraint, the network inside it
    return Strategies(
        precision=PRECISIONS[t.amp](device, dtype, core.members),
        clipper=make_clipper(t.grad_clip),
        stopper=make_early_stopping(params(cfg, "train.early_stopping")),
        schedule=SCHEDULES[t.scheduler](t.lr, t.epochs, **params(cfg, "train.scheduler_params")),
        balancer=BALANCERS[cfg.loss.balancing](cfg.loss.weights, core.flat, weight_matrices(core),
                                               **params(cfg, "loss.balancing_params")),
        sampler=make_sampler(cfg, problem, points.pde, gens),
    )


def _train_and_evaluate(cfg: RunConfig, seeds: list[int], problem: Problem, device: torch.device,
                        dtype: torch.dtype, progress: bool,
                        on_epoch: Callable[[dict], bool | None] | None) -> list[RunResult]:
    gens = [torch.Generator().manual_seed(seed) for seed in seeds]
    net: torch.nn.Module = initial_members(cfg, problem.box, seeds).to(device, dtype)
    if problem.output is not None:
        net = Constrained(net, problem.output)
    unknowns = ProblemParameters(problem.unknowns, problem.constants, len(seeds)).to(device, dtype)
    s = cfg.sampling
    points = sample_points(problem, s.n_pde, s.n_bc, s.n_ic, gens, device, dtype)
    strategies = build_strategies(cfg, problem, points, gens, net, device, dtype)
    loss = PhysicsLoss(problem, net, cfg.derivatives, unknowns)
    x_eval, u_eval = problem.evaluation_set()
    x_sub, u_sub = (torch.as_tensor(a).to(device) for a in evaluation_subset(x_eval, u_eval, cfg.train.eval_points))
    n_held = max(1, round(HELDOUT_FRACTION * s.n_pde))
    heldout = torch.stack([uniform_box(problem.box, n_held, g) for g in gens]).to(device, dtype)
    trainer = Trainer(loss, points, [net, unknowns], strategies, cfg.train.epochs, cfg.train.lr,
                      monitor=cfg.train.monitor, monitor_every=cfg.train.monitor_every,
                      evaluate=lambda: relative_l2_members(predict_members(net, x_sub), u_sub),
                      eval_every=cfg.train.eval_every, heldout=heldout, log_every=cfg.train.log_every,
                      progress=progress, on_epoch=on_epoch, compile=cfg.train.compile)
    reset_peak_memory(device)
    outcomes = trainer.fit(cfg.train.lbfgs_iterations, torch.float64 if cfg.train.lbfgs_float64 else None)
    peak = peak_memory_mb(device)
    u_pred = predict_members(net, torch.as_tensor(x_eval).to(device)).double().cpu().numpy()
    found = unknowns.flat.detach().double().cpu().tolist()
    balancing_skipped = strategies.balancer.skipped.tolist()
    device_text = device_name(device)
    results = []
    for m, (seed, outcome) in enumerate(zip(seeds, outcomes)):
        losses = [v for v in outcome.history.get("loss", []) if v is not None and math.isfinite(v)]
        metrics = {
            "rel_l2": relative_l2(u_pred[m], u_eval),
            "rel_l2_adam": outcome.rel_l2_adam,
            "max_abs_err": max_abs_error(u_pred[m], u_eval),
            "final_loss": losses[-1] if losses else math.nan,
            "epochs_run": outcome.epochs_run,
            "lbfgs_iterations": outcome.lbfgs_iterations,
            "stop_reason": outcome.stop_reason,
            "best_epoch": outcome.best_epoch,
            "wall_time_s": outcome.adam_time_s + outcome.lbfgs_time_s,
            "adam_time_s": outcome.adam_time_s,
            "lbfgs_time_s": outcome.lbfgs_time_s,
            "time_per_epoch_ms": 1000 * outcome.adam_time_s / max(outcome.epochs_run, 1),
            "eval_time_s": outcome.eval_time_s,
            "peak_mem_mb": peak,
            "members": len(seeds),
            "amp_skipped": (outcome.history.get("amp_skipped") or [0])[-1],
            "balancing_skipped": balancing_skipped[m],
            "device": device_text,
            "versions": versions(),
        }
        for name, true in problem.true_unknowns.items():
            value = found[m][unknowns.names.index(name)]
            metrics[name] = value
            metrics[f"{name}_rel_err"] = abs(value - true) / abs(true)
        results.append(RunResult(config=cfg.override({"seed": seed}).to_dict(), metrics=metrics,
                                 history=outcome.history, refinements=outcome.refinements, model=net.member(m),
                                 problem=problem, collocation=strategies.sampler.points[m].detach().cpu()))
    return results
