"""Trainer: an Adam phase with the toggles' hooks, then an optional L-BFGS phase.

One Adam epoch, for each mini-batch the sampler yields (one, in the plain recipe):
    forward under the precision strategy's autocast -> loss terms -> weighted total
    -> NaN guard -> backward -> unscale -> clip (records the pre-clip norm) -> step
then the balancer, the sampler's refinement, the monitored value, the schedule and early stopping.

The toggles reach the loop only as strategy objects, one per role (`cpikan.strategies`), through
the hooks their Protocols state; the loop never reads a config string.

Error against time: every `eval_every` Adam epochs and L-BFGS iterations (and on each phase's
last row) the history records ``rel_l2``, the relative L2 error on a fixed evaluation subset
(None on the other rows), beside ``time_s``, the training time so far. Scoring is timed apart
(``eval_time_s``) and left out of ``time_s``, ``adam_time_s`` and ``lbfgs_time_s``; the monitored
value is not left out: it is part of what early stopping and the plateau schedule cost.

NaN guard (always on): a non-finite loss or gradient in full precision stops the run with
``stop_reason = "nonfinite"`` and restores the last weights that gave a finite loss. Under AMP
(``Precision.skips_nonfinite``) such a step is skipped and counted instead; 100 skips in a row
also stop the run.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from cpikan.losses import PhysicsLoss, total
from cpikan.progress import bar as progress_bar
from cpikan.sampling import PointSets, uniform_box
from cpikan.strategies import Strategies

MAX_CONSECUTIVE_SKIPS = 100
log = logging.getLogger(__name__)


@dataclass
class TrainOutcome:
    history: dict[str, list] = field(default_factory=dict)
    stop_reason: str = "max_epochs"
    epochs_run: int = 0
    lbfgs_iterations: int = 0
    best_epoch: int | None = None
    adam_time_s: float = 0.0  # training time of each phase, scoring left out
    lbfgs_time_s: float = 0.0
    eval_time_s: float = 0.0  # time spent scoring rel_l2 for the history
    refinements: list[dict] = field(default_factory=list)


class StopTraining(Exception):
    """Raised inside the loop to end training with a reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Trainer:
    """Trains `modules` (network, and the unknowns of inverse problems) on `loss`.

    Args:
        loss: the physics-informed loss of the problem.
        points: interior, condition and data points.
        modules: what is trained and checkpointed (network first).
        strategies: the toggles' strategy objects.
        epochs, lr: Adam phase length and base rate.
        monitor: the value the schedule and early stopping watch, when one of them wants it:
            "heldout" (PDE residual on held-out points) or "loss" (see `MONITORS`).
        monitor_every: epochs between evaluations of the monitored value (and the last epoch).
        evaluate: the relative L2 error of the current weights on the evaluation subset.
        eval_every: Adam epochs, and L-BFGS iterations, between scorings by `evaluate`; the
            rows of epoch 0, k, 2k, ... and of the first, (k+1)-th, ... L-BFGS iteration are
            scored, and each phase's last row is scored with the weights the phase hands on
            (after early stopping's restore, L-BFGS's last step, or the NaN guard's restore).
        heldout: held-out interior points for the "heldout" monitor.
        log_every: history row every this many epochs (and every scored epoch).
        on_epoch: called with each history row; returning True stops training ("stopped").
        compile: run the Adam phase's loss terms through `torch.compile` (see `compile_terms`).
    """

    def __init__(self, loss: PhysicsLoss, points: PointSets, modules: list[torch.nn.Module],
                 strategies: Strategies, epochs: int, lr: float, monitor: str, monitor_every: int,
                 evaluate: Callable[[], float], eval_every: int, heldout: torch.Tensor | None = None,
                 log_every: int = 1,
                 progress: bool = False, on_epoch: Callable[[dict], bool | None] | None = None,
                 compile: bool = False) -> None:
        self.loss, self.points, self.modules, self.s = loss, points, modules, strategies
        self._terms = compile_terms(loss.terms) if compile else loss.terms
        self.epochs, self.log_every = epochs, log_every
        self.monitor, self.monitor_every, self.heldout = monitor, monitor_every, heldout
        self.evaluate, self.eval_every = evaluate, eval_every
        self.progress, self.on_epoch = progress, on_epoch
        self.params = [p for m in modules for p in m.parameters()]
        # Built here, before any clock starts: the first Adam of a process imports torch._dynamo
        # (about a second), which would otherwise inflate the first run's times.
        self._adam_optimizer = torch.optim.Adam(self.params, lr=lr)
        self.outcome = TrainOutcome()
        self._last_finite = [p.detach().clone() for p in self.params]

    # ------------------------------------------------------------ helpers

    def _log(self, row: dict) -> bool:
        for key, value in row.items():
            self.outcome.history.setdefault(key, []).append(value)
        return bool(self.on_epoch and self.on_epoch(row))

    def _snapshot(self) -> None:
        with torch.no_grad():
            for keep, p in zip(self._last_finite, self.params):
                keep.copy_(p)

    def _restore_last_finite(self) -> None:
        with torch.no_grad():
            for keep, p in zip(self._last_finite, self.params):
                p.copy_(keep)

    def _score(self) -> float:
        """`evaluate` for the current weights, its time added to ``eval_time_s`` (after a CUDA sync,
        so that pending training work is not counted as scoring)."""
        _sync(self.params)
        start = time.perf_counter()
        value = self.evaluate()
        self.outcome.eval_time_s += time.perf_counter() - start
        return value

    def _score_last_row(self, phase: str) -> None:
        """Score the weights `phase` hands on into its last history row."""
        history = self.outcome.history
        if history.get("phase") and history["phase"][-1] == phase:
            history["rel_l2"][-1] = self._score()

    def _training_time(self, start: float, scoring: float) -> float:
        """Seconds since `start` less the scoring done since (``eval_time_s`` was `scoring` then)."""
        return time.perf_counter() - start - (self.outcome.eval_time_s - scoring)

    def monitored_value(self) -> float:
        """The value `monitor` names (see `MONITORS`), for the current weights, in full precision."""
        return MONITORS[self.monitor](self)

    # ------------------------------------------------------------ Adam phase

    def _adam_step(self, optimizer: torch.optim.Optimizer, batch: torch.Tensor, first: bool) -> tuple[dict, float]:
        s = self.s
        with s.precision.autocast():
            terms = self._terms(self.points, batch)
        loss = total(terms, s.balancer.weights)
        if not torch.isfinite(loss.detach()):
            return _floats(terms), math.nan
        if first:
            self._snapshot()
        s.balancer.update(self._epoch, terms, self.params)
        optimizer.zero_grad(set_to_none=True)
        s.precision.backward(loss)
        s.precision.unscale(optimizer)
        norm = s.clipper.clip(self.params)
        if not math.isfinite(norm) and not s.precision.step_checks_gradients:
            return _floats(terms), math.nan
        applied = s.precision.step(optimizer)
        return _floats(terms), norm if applied else math.nan

    def _adam(self) -> None:
        s, out = self.s, self.outcome
        optimizer = self._adam_optimizer
        skipped = consecutive = points_seen = 0
        start, scoring = time.perf_counter(), out.eval_time_s
        bar = progress_bar(self.epochs, "adam", self.progress)
        try:
            for epoch in range(self.epochs):
                self._epoch = epoch
                lr = s.schedule.apply(optimizer, epoch)
                sums: dict[str, float] = {}
                norms, n_batches = [], 0
                for i, batch in enumerate(s.sampler.batches(epoch)):
                    terms, norm = self._adam_step(optimizer, batch, first=i == 0)
                    if math.isnan(norm) or not all(map(math.isfinite, terms.values())):
                        if not s.precision.skips_nonfinite:
                            self._restore_last_finite()
                            raise StopTraining("nonfinite")
                        skipped, consecutive = skipped + 1, consecutive + 1
                        if consecutive >= MAX_CONSECUTIVE_SKIPS:
                            self._restore_last_finite()
                            raise StopTraining("nonfinite")
                        continue
                    consecutive = 0
                    for term, value in terms.items():
                        sums[term] = sums.get(term, 0.0) + value
                    norms.append(norm)
                    n_batches += 1
                    points_seen += batch.shape[0]
                out.epochs_run = epoch + 1
                refinement = s.sampler.refine(epoch, self.loss.residual)
                if refinement:
                    out.refinements.append({"epoch": epoch, **refinement})
                terms = {t: v / max(n_batches, 1) for t, v in sums.items()}
                current = total(terms, s.balancer.weights) if terms else math.nan
                monitored = None
                due = epoch % self.monitor_every == 0 or epoch == self.epochs - 1
                if due and (s.schedule.wants_monitor or s.stopper.wants_monitor):
                    monitored = self.monitored_value()
                    s.schedule.observe(epoch, monitored)
                elapsed = self._training_time(start, scoring)
                scored = epoch % self.eval_every == 0
                error = self._score() if scored else None
                row = {"epoch": epoch, "phase": "adam", "loss": current, "lr": lr,
                       "grad_norm": max(norms) if norms else math.nan, "amp_skipped": skipped,
                       "time_s": elapsed, "points_per_s": points_seen / max(elapsed, 1e-12),
                       "monitor": monitored, "rel_l2": error,
                       **{f"loss_{t}": v for t, v in terms.items()},
                       **{f"{t}_weight": w for t, w in s.balancer.weights.items()}}
                stop = False
                if scored or epoch % self.log_every == 0 or epoch == self.epochs - 1:
                    stop = self._log(row)
                if epoch % 50 == 0:
                    bar.set_postfix(loss=f"{current:.3e}", refresh=False)
                bar.update(1)
                if monitored is not None and s.stopper.update(epoch, monitored, self.modules):
                    s.stopper.restore(self.modules)
                    out.best_epoch = s.stopper.best_epoch
                    raise StopTraining("early_stopping")
                if stop:
                    raise StopTraining("stopped")
        except StopTraining as stop:
            out.stop_reason = stop.reason
        finally:
            bar.close()
            _sync(self.params)
            out.adam_time_s = self._training_time(start, scoring)
        out.best_epoch = s.stopper.best_epoch
        self._score_last_row("adam")

    # ------------------------------------------------------------ L-BFGS phase

    def _lbfgs(self, iterations: int) -> None:
        """Strong-Wolfe L-BFGS on the weighted loss, full precision, no autocast."""
        out = self.outcome
        optimizer = torch.optim.LBFGS(self.params, lr=1.0, max_iter=iterations, max_eval=iterations * 5 // 4,
                                      history_size=50, tolerance_grad=1e-12, tolerance_change=1e-15,
                                      line_search_fn="strong_wolfe")
        weights = dict(self.s.balancer.weights)
        start, scoring = time.perf_counter(), out.eval_time_s
        base_epoch = out.epochs_run

        def closure() -> torch.Tensor:
            optimizer.zero_grad(set_to_none=True)
            terms = self.loss.terms(self.points, self.s.sampler.points.to(self.points.pde.dtype))
            loss = total(terms, weights)
            if not torch.isfinite(loss):
                raise StopTraining("nonfinite")
            loss.backward()
            self._snapshot()
            elapsed = self._training_time(start, scoring)
            error = self._score() if out.lbfgs_iterations % self.eval_every == 0 else None
            out.lbfgs_iterations += 1
            stop = self._log({"epoch": base_epoch + out.lbfgs_iterations - 1, "phase": "lbfgs",
                              "loss": float(loss.detach()), "lr": 1.0, "grad_norm": math.nan, "amp_skipped": 0,
                              "time_s": out.adam_time_s + elapsed, "points_per_s": math.nan, "monitor": None,
                              "rel_l2": error,
                              **{f"loss_{t}": v for t, v in _floats(terms).items()},
                              **{f"{t}_weight": w for t, w in weights.items()}})
            if stop:
                raise StopTraining("stopped")
            return loss

        try:
            optimizer.step(closure)
        except StopTraining as stop:
            if stop.reason == "nonfinite":
                self._restore_last_finite()
            out.stop_reason = stop.reason
        out.lbfgs_time_s = self._training_time(start, scoring)
        self._score_last_row("lbfgs")

    def fit(self, lbfgs_iterations: int = 0, lbfgs_dtype: torch.dtype | None = None) -> TrainOutcome:
        """Adam phase, then (unless it ended on a non-finite loss or a user stop) the L-BFGS phase.

        `lbfgs_dtype` (e.g. torch.float64) converts weights and points before L-BFGS.
        """
        self._adam()
        if lbfgs_iterations > 0 and self.outcome.stop_reason not in ("nonfinite", "stopped"):
            if lbfgs_dtype is not None:
                for module in self.modules:
                    module.to(lbfgs_dtype)
                self.points = self.points.to(lbfgs_dtype)
                self.params = [p for m in self.modules for p in m.parameters()]
                self._last_finite = [p.detach().clone() for p in self.params]
            self._lbfgs(lbfgs_iterations)
        return self.outcome


def training_loss(trainer: Trainer) -> float:
    """``train.monitor = "loss"``: the weighted training loss on all points."""
    return float(total(trainer.loss.terms(trainer.points), trainer.s.balancer.weights).detach())


def heldout_residual(trainer: Trainer) -> float:
    """``train.monitor = "heldout"``: the mean squared PDE residual on the held-out points (the
    training loss when there are none)."""
    if trainer.heldout is None:
        return training_loss(trainer)
    return float(trainer.loss.residual_value(trainer.heldout).square().mean())


MONITORS: dict[str, Callable[[Trainer], float]] = {"heldout": heldout_residual, "loss": training_loss}


def compile_terms(terms: Callable) -> Callable:
    """`terms` under `torch.compile`: the forward pass and, through AOTAutograd, its backward.

    Needs a derivative engine without double backward (``derivatives="taylor"``; the config
    refuses ``"autograd"``). Dynamo's caches are reset first, so every run compiles its own
    step and many runs in one kernel never reach the recompile limit. The first step pays the
    compile: on a busy 2-core CPU, 67-87 s with an empty Inductor cache, 11-14 s when an earlier
    process left the same graph in its on-disk cache (diffusion1d, poisson3d quick); the held-out
    monitor, the sampler and the L-BFGS phase stay eager.
    """
    log.info("train.compile: compiling the loss terms (the first step includes the compile)")
    torch.compiler.reset()
    return torch.compile(terms)


def _floats(terms: dict[str, torch.Tensor]) -> dict[str, float]:
    return {t: float(v.detach()) for t, v in terms.items()}


def _sync(params: list[torch.Tensor]) -> None:
    if params and params[0].is_cuda:
        torch.cuda.synchronize(params[0].device)


def heldout_points(problem, n: int, gen: torch.Generator, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Interior points never trained on, for the "heldout" monitor."""
    return uniform_box(problem.box, n, gen).to(device, dtype)
