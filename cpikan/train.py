"""Trainer: an Adam phase with the toggles' hooks, then an optional L-BFGS phase, for S members.

The members (one per seed, `cpikan.models.Network`) train side by side: every tensor of the loop
carries the member axis first, every strategy acts on each member alone, and a member that stops
(early stopping, the NaN guard) keeps its weights while the others go on. One seed is S = 1.

One Adam epoch, for each mini-batch the sampler yields (one, in the plain recipe):
    forward under the precision strategy's autocast -> loss terms (S,) each -> weighted total
    -> balancer -> backward -> unscale -> clip (records the pre-clip norm) -> step of the members
    whose loss and gradient are finite -> NaN guard
then the sampler's refinement, the monitored value, the schedule and early stopping.

The toggles reach the loop only as strategy objects, one per role (`cpikan.strategies`), through
the hooks their Protocols state; the loop never reads a config string. Nothing is read back from
the device inside the loop but every `log_every` epochs (`cpikan.history`): losses, norms and
the NaN guard's decisions stay tensors until then (a refinement of the collocation points reads
its residuals when it happens).

Error against time: every `eval_every` Adam epochs and L-BFGS evaluations (and on each phase's
last row) the history records ``rel_l2``, the relative L2 error on a fixed evaluation subset
(None on the other rows), beside ``time_s``, the training time so far. Scoring is timed apart
(``eval_time_s``) and left out of ``time_s``, ``adam_time_s`` and ``lbfgs_time_s``; the monitored
value is not left out: it is part of what early stopping and the plateau schedule cost. All members
share one clock: a member's times are those of the batched run it trained in, up to its stop. On
CUDA a row's ``time_s`` is taken when the host queued the epoch; rows read back are exact.

NaN guard (always on), per member: a non-finite loss or gradient in full precision stops the member
with ``stop_reason = "nonfinite"`` and restores its last weights that gave a finite loss. Under AMP
(``Precision.skips_nonfinite``) such a step is skipped and counted instead; 100 skips in a row
also stop the member.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from cpikan.history import History, Row, member_row
from cpikan.losses import PhysicsLoss, total
from cpikan.lbfgs import MemberLBFGS
from cpikan.models import member_view
from cpikan.optim import MemberAdam
from cpikan.progress import bar as progress_bar
from cpikan.sampling import PointSets
from cpikan.strategies import Strategies

MAX_CONSECUTIVE_SKIPS = 100
STOPS = ("max_epochs", "early_stopping", "nonfinite", "stopped")  # stop reasons, by code 0..3
log = logging.getLogger(__name__)


@dataclass
class TrainOutcome:
    """What training did to one member."""

    history: dict[str, list] = field(default_factory=dict)
    stop_reason: str = "max_epochs"
    epochs_run: int = 0
    lbfgs_iterations: int = 0  # L-BFGS evaluations of the loss, line searches included
    best_epoch: int | None = None
    adam_time_s: float = 0.0  # training time of each phase, scoring left out
    lbfgs_time_s: float = 0.0
    eval_time_s: float = 0.0  # time spent scoring rel_l2 for the history
    rel_l2_adam: float = math.nan  # rel_l2 on the evaluation subset of the weights the Adam phase hands on
    refinements: list[dict] = field(default_factory=list)


class StopTraining(Exception):
    """Raised inside the L-BFGS phase to end training with a reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Trainer:
    """Trains the S members of `modules` (network, and the unknowns of inverse problems) on `loss`.

    Args:
        loss: the physics-informed loss of the problem.
        points: interior, condition and data points of the members.
        modules: what is trained (network first); every parameter has the member axis first.
        strategies: the toggles' strategy objects.
        epochs, lr: Adam phase length and base rate.
        monitor: the value the schedule and early stopping watch, when one of them wants it:
            "heldout" (PDE residual on held-out points) or "loss" (see `MONITORS`).
        monitor_every: epochs between evaluations of the monitored value (and the last epoch).
        evaluate: the relative L2 error (S,) of the current weights on the evaluation subset.
        eval_every: Adam epochs, and L-BFGS evaluations, between scorings by `evaluate`; the
            rows of epoch 0, k, 2k, ... and of the first, (k+1)-th, ... L-BFGS evaluation are
            scored, and each phase's last row is scored with the weights the phase hands on
            (after early stopping's restore, L-BFGS's last step, or the NaN guard's restore).
        heldout: held-out interior points (S, n, d) for the "heldout" monitor.
        log_every: history row every this many epochs (and every scored epoch, and a member's
            last); the rows are read back from the device then, not before.
        on_epoch: called with each history row as it is read back; returning True stops training ("stopped").
        compile: run the Adam phase's loss terms through `torch.compile` (see `compile_terms`).
    """

    def __init__(self, loss: PhysicsLoss, points: PointSets, modules: list[torch.nn.Module],
                 strategies: Strategies, epochs: int, lr: float, monitor: str, monitor_every: int,
                 evaluate: Callable[[], torch.Tensor], eval_every: int, heldout: torch.Tensor | None = None,
                 log_every: int = 10, progress: bool = False, on_epoch: Callable[[Row], bool | None] | None = None,
                 compile: bool = False) -> None:
        self.loss, self.points, self.modules, self.s = loss, points, modules, strategies
        self._terms = compile_terms(loss.terms) if compile else loss.terms
        self.epochs, self.lr, self.log_every = epochs, lr, log_every
        self.monitor, self.monitor_every, self.heldout = monitor, monitor_every, heldout
        self.evaluate, self.eval_every = evaluate, eval_every
        self.progress = progress
        self.params = [p for m in modules for p in m.parameters() if p.numel()]
        self.members = self.params[0].shape[0]
        self.history = History(self.members, on_epoch)
        self.outcomes = [TrainOutcome() for _ in range(self.members)]
        self.eval_time_s = 0.0
        # Built here, before any clock starts.
        self._adam_optimizer = MemberAdam(self.params)
        self._last_finite = [p.detach().clone() for p in self.params]
        device = self.params[0].device
        self.live = torch.ones(self.members, dtype=torch.bool, device=device)
        self.stop_code = torch.zeros(self.members, dtype=torch.long, device=device)
        self.epochs_run = torch.zeros(self.members, dtype=torch.long, device=device)

    # ------------------------------------------------------------ helpers

    def _score(self) -> torch.Tensor:
        """`evaluate` for the current weights, its time added to ``eval_time_s`` (after a CUDA sync,
        so that pending training work is not counted as scoring)."""
        _sync(self.params)
        start = time.perf_counter()
        value = self.evaluate()
        _sync(self.params)
        self.eval_time_s += time.perf_counter() - start
        return value

    def _training_time(self, start: float, scoring: float) -> float:
        """Seconds since `start` less the scoring done since (``eval_time_s`` was `scoring` then)."""
        return time.perf_counter() - start - (self.eval_time_s - scoring)

    def _where(self, members: torch.Tensor, sources: list[torch.Tensor], targets: list[torch.Tensor]) -> None:
        """targets[i][m] <- sources[i][m] for the `members` (S,) that are True."""
        with torch.no_grad():
            for source, target in zip(sources, targets):
                target.copy_(torch.where(member_view(members, target), source, target))

    def _stop(self, members: torch.Tensor, reason: str) -> None:
        """End the Adam phase of the live `members` (S,) with `reason`."""
        self.stop_code = torch.where(members & self.live, STOPS.index(reason), self.stop_code)
        self.live = self.live & ~members

    def monitored_value(self) -> torch.Tensor:
        """The value `monitor` names (see `MONITORS`) per member, for the current weights, in full precision."""
        return MONITORS[self.monitor](self)

    # ------------------------------------------------------------ Adam phase

    def _adam_step(self, batch: torch.Tensor, groups: tuple[torch.Tensor, torch.Tensor], lr: float | torch.Tensor,
                   first: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One optimizer step of the live members on `batch` (S, B, d); returns the terms (T, S) in the
        order of the balancer's weights, the pre-clip gradient norms (S,) and which members stepped (S,)."""
        s = self.s
        with s.precision.autocast():
            terms = self._terms(self.points, batch, groups)
        loss = total(terms, s.balancer.weights)
        finite = torch.isfinite(loss.detach()) & self.live
        if first:
            self._where(finite, self.params, self._last_finite)
        s.balancer.update(self._epoch, terms, self.params)
        for p in self.params:
            p.grad = None
        s.precision.backward(loss)
        s.precision.unscale(self.params)
        norm = s.clipper.clip(self.params)
        stepped = finite & torch.isfinite(norm)
        self._adam_optimizer.step(lr, stepped)
        s.precision.update(stepped)
        failed = self.live & ~stepped
        if s.precision.skips_nonfinite:
            self._skipped += failed
            self._consecutive = torch.where(failed, self._consecutive + 1, 0)
            failed = self._consecutive >= MAX_CONSECUTIVE_SKIPS
        self._where(failed, self._last_finite, self.params)
        self._stop(failed, "nonfinite")
        return torch.stack([terms[t].detach() for t in s.balancer.weights]).double(), norm, stepped

    def _adam(self) -> None:
        s = self.s
        start, scoring = time.perf_counter(), self.eval_time_s
        self._skipped = torch.zeros_like(self.epochs_run)
        self._consecutive = torch.zeros_like(self.epochs_run)
        self._emitted = [-1] * self.members
        self._carry: list[tuple[Row, dict]] = []
        groups = self.points.groups()
        names = list(s.balancer.weights)
        bar = progress_bar(self.epochs, "adam", self.progress)
        points_seen = 0
        try:
            for epoch in range(self.epochs):
                self._epoch = epoch
                lr = s.schedule.lr_at(epoch)
                fresh = s.sampler.conditions(epoch)
                if fresh is not None:
                    self.points = dataclasses.replace(self.points, conditions=fresh)
                    groups = self.points.groups()
                sums, steps, top = 0.0, 0.0, None
                for i, batch in enumerate(s.sampler.batches(epoch)):
                    terms, norm, stepped = self._adam_step(batch, groups, lr, first=i == 0)
                    sums = sums + torch.where(stepped, terms, 0.0)
                    steps = steps + stepped
                    bounded = torch.where(stepped, norm, -math.inf)
                    top = bounded if top is None else torch.maximum(top, bounded)
                    points_seen += batch.shape[1]
                self.epochs_run += self.live
                self._refine(epoch)
                mean_terms = sums / steps  # NaN for a member that stepped on no batch
                weights = torch.stack([s.balancer.weights[t] for t in names]).double()
                monitored = None
                if (epoch % self.monitor_every == 0 or epoch == self.epochs - 1) and (
                        s.schedule.wants_monitor or s.stopper.wants_monitor):
                    monitored = self.monitored_value()
                    s.schedule.observe(epoch, monitored)
                    stops = s.stopper.update(epoch, monitored, self.params, self.live)
                    if stops is not None:
                        self._stop(stops, "early_stopping")
                elapsed = self._training_time(start, scoring)
                scored = epoch % self.eval_every == 0
                host = {"epoch": epoch, "phase": "adam", "time_s": elapsed,
                        "points_per_s": points_seen / max(elapsed, 1e-12), "monitor": monitored is not None,
                        "scored": scored, "logged": scored or epoch % self.log_every == 0 or epoch == self.epochs - 1}
                device = {"loss": (weights * mean_terms).sum(0), "grad_norm": top, "amp_skipped": self._skipped,
                          **({"monitor": monitored} if monitored is not None else {}),
                          **({"rel_l2": self._score()} if scored else {}),
                          **({"lr": lr} if torch.is_tensor(lr) else {}),
                          **{f"loss_{t}": v for t, v in zip(names, mean_terms)},
                          **{f"{t}_weight": w for t, w in zip(names, weights)}}
                self.history.add(host | ({} if torch.is_tensor(lr) else {"lr": lr}), device)
                bar.update(1)
                if epoch % self.log_every == 0 and self._read_adam(finished=False):
                    break
        finally:
            bar.close()
            _sync(self.params)
            self._read_adam(finished=True)
        phase_time = self._training_time(start, scoring)
        best = s.stopper.best_epoch if s.stopper.best_epoch is not None else torch.full_like(self.epochs_run, -1)
        codes = torch.stack([self.stop_code, self.epochs_run, best])
        for m, (code, run, best) in enumerate(zip(*codes.tolist())):
            out = self.outcomes[m]
            out.stop_reason, out.epochs_run = STOPS[code], run
            out.best_epoch = best if best >= 0 else None
            out.adam_time_s = phase_time if code == 0 else (self.history.last(m, "time_s") or 0.0)
        self._score_last_rows("adam", "rel_l2_adam")

    def _refine(self, epoch: int) -> None:
        """The sampler's refinement after `epoch`, recorded for the members still training."""
        refinement = self.s.sampler.refine(epoch, self.loss.residual_value)
        if refinement:
            for m, live in enumerate(self.live.tolist()):
                if live:
                    self.outcomes[m].refinements.append({"epoch": epoch, **refinement[m]})

    def _read_adam(self, finished: bool) -> bool:
        """Read the queued Adam rows back and emit each member's: the logged rows of the epochs it
        completed and, once it has stopped (or the phase ends: `finished`), its last completed one.
        Returns True when training must end: no member is left, or `on_epoch` asked to stop."""
        rows, state = self.history.read({"live": self.live, "epochs_run": self.epochs_run})
        every = self._carry + rows
        for m in range(self.members):
            run, over = int(state["epochs_run"][m]), finished or not state["live"][m]
            for host, device in every:
                e = host["epoch"]
                if self._emitted[m] < e < run and (host["logged"] or (over and e == run - 1)):
                    self.history.emit(m, member_row(host, device, m))
                    self._emitted[m] = e
        self._carry = every[-1:]
        if self.history.stop_requested and not finished:
            self._stop(self.live, "stopped")
        return self.history.stop_requested or not any(state["live"])

    def _score_last_rows(self, phase: str, outcome_key: str | None = None) -> None:
        """Score the weights each member hands on from `phase` into its last row of that phase (and
        into its outcome's `outcome_key`)."""
        scores = self._score().tolist()
        for m, score in enumerate(scores):
            if self.history.last(m, "phase") == phase:
                self.history.set_last(m, "rel_l2", score)
            if outcome_key is not None:
                setattr(self.outcomes[m], outcome_key, score)

    # ------------------------------------------------------------ L-BFGS phase

    def _lbfgs(self, iterations: int) -> None:
        """Strong-Wolfe L-BFGS (`cpikan.lbfgs.MemberLBFGS`) on each member's weighted loss, full
        precision, no autocast, for the members whose Adam phase neither failed nor was stopped."""
        active = [o.stop_reason not in ("nonfinite", "stopped") for o in self.outcomes]
        weights = {t: w.clone() for t, w in self.s.balancer.weights.items()}
        sizes = [p.shape[1] for p in self.params]
        start, scoring = time.perf_counter(), self.eval_time_s
        counts = [0] * self.members  # evaluations per member
        interior = self.s.sampler.points.to(self.points.pde.dtype)
        groups = self.points.groups()
        names = list(weights)

        def load(x: torch.Tensor) -> None:
            """The parameters from their concatenation x (S, P), the optimizer's point."""
            with torch.no_grad():
                for p, part in zip(self.params, x.split(sizes, dim=1)):
                    p.copy_(part)

        def evaluate(x: torch.Tensor, evaluated: list[bool]) -> tuple[torch.Tensor, torch.Tensor]:
            load(x)
            for p in self.params:
                p.grad = None
            terms = self.loss.terms(self.points, interior, groups)
            loss = total(terms, weights)
            loss.sum().backward()
            elapsed = self._training_time(start, scoring)
            due = [e and counts[m] % self.eval_every == 0 for m, e in enumerate(evaluated)]
            host = {"epoch": [o.epochs_run + c for o, c in zip(self.outcomes, counts)], "phase": "lbfgs", "lr": 1.0,
                    "time_s": [o.adam_time_s + elapsed for o in self.outcomes], "points_per_s": math.nan,
                    "monitor": False, "scored": due, "logged": True}
            zero = torch.zeros_like(loss)
            device = {"loss": loss.detach(), "grad_norm": zero + math.nan, "amp_skipped": zero,
                      **({"rel_l2": self._score()} if any(due) else {}),
                      **{f"loss_{t}": terms[t].detach() for t in names},
                      **{f"{t}_weight": weights[t] for t in names}}
            self.history.add(host, device)
            [(host, device)], _ = self.history.read()
            for m, e in enumerate(evaluated):
                if e:
                    self.history.emit(m, member_row(host, device, m))
                    counts[m] += 1
            if self.history.stop_requested:
                raise StopTraining("stopped")
            return loss.detach(), torch.cat([p.grad for p in self.params], dim=1)

        optimizer = MemberLBFGS(iterations, max_eval=iterations * 5 // 4, history_size=50,
                                tolerance_grad=1e-12, tolerance_change=1e-15)
        try:
            x, result = optimizer.run(torch.cat([p.detach() for p in self.params], dim=1), evaluate, active)
            load(x)
            reasons = result.reasons
        except StopTraining:
            reasons = ["stopped" if a else "" for a in active]
        for m, out in enumerate(self.outcomes):
            out.lbfgs_iterations = counts[m]
            if reasons[m] in ("nonfinite", "stopped"):
                out.stop_reason = reasons[m]
            if counts[m]:  # until its last evaluation: the members do not wait for each other
                out.lbfgs_time_s = self.history.last(m, "time_s") - out.adam_time_s
        self._score_last_rows("lbfgs")

    def fit(self, lbfgs_iterations: int = 0, lbfgs_dtype: torch.dtype | None = None) -> list[TrainOutcome]:
        """Adam phase, then (for the members whose Adam phase neither failed nor was stopped) the
        L-BFGS phase. `lbfgs_dtype` (e.g. torch.float64) converts weights and points before L-BFGS.
        Returns one outcome per member."""
        self._adam()
        if lbfgs_iterations > 0 and any(o.stop_reason not in ("nonfinite", "stopped") for o in self.outcomes):
            if lbfgs_dtype is not None:
                for module in self.modules:
                    module.to(lbfgs_dtype)
                self.points = self.points.to(lbfgs_dtype)
                self.params = [p for m in self.modules for p in m.parameters() if p.numel()]
            self._lbfgs(lbfgs_iterations)
        for m, out in enumerate(self.outcomes):
            out.history, out.eval_time_s = self.history.rows[m], self.eval_time_s
        return self.outcomes


def training_loss(trainer: Trainer) -> torch.Tensor:
    """``train.monitor = "loss"``: each member's weighted training loss on all its points."""
    with torch.no_grad():
        return total(trainer.loss.terms(trainer.points, trainer.s.sampler.points), trainer.s.balancer.weights)


def heldout_residual(trainer: Trainer) -> torch.Tensor:
    """``train.monitor = "heldout"``: each member's mean squared PDE residual on its held-out points
    (the training loss when there are none)."""
    if trainer.heldout is None:
        return training_loss(trainer)
    return trainer.loss.residual_value(trainer.heldout).square().mean(dim=1)


MONITORS: dict[str, Callable[[Trainer], torch.Tensor]] = {"heldout": heldout_residual, "loss": training_loss}


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


def _sync(params: list[torch.Tensor]) -> None:
    if params and params[0].is_cuda:
        torch.cuda.synchronize(params[0].device)
