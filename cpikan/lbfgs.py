"""L-BFGS over S members at once (`MemberLBFGS`): torch.optim.LBFGS with its strong-Wolfe line search
run for every member side by side, one batched evaluation serving every member that needs one.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Callable, Generator, Sequence

import torch


@dataclass
class LBFGSOutcome:
    """Per member: function evaluations, iterations, and why its L-BFGS ended."""

    evaluations: list[int]
    iterations: list[int]
    reasons: list[str]


@dataclass
class _Member:
    """One member's L-BFGS state on the host: the scalars that steer it."""

    f: float = math.nan
    evals: int = 0
    iterations: int = 0
    done: bool = False
    reason: str = ""
    search: Generator | None = None  # its line search, while one runs
    trial: float = 0.0  # the step its line search asks to evaluate next
    start: int | None = None  # the round of its line search's first evaluation
    fresh: bool = False  # at a new iterate: takes a direction next
    prev_f: float = math.nan


def _cubic_interpolate(x1: float, f1: float, g1: float, x2: float, f2: float, g2: float,
                       bounds: tuple[float, float] | None = None) -> float:
    """Minimizer of the cubic through (x1, f1, g1) and (x2, f2, g2), kept within `bounds` (as torch.optim.lbfgs)."""
    lo, hi = bounds if bounds is not None else ((x1, x2) if x1 <= x2 else (x2, x1))
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    square = d1 * d1 - g1 * g2
    if square < 0:
        return (lo + hi) / 2.0
    d2 = math.sqrt(square)
    if x1 <= x2:
        pos = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
    else:
        pos = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
    return min(max(pos, lo), hi)


def strong_wolfe(f: float, gtd: float, t: float, d_norm: float, max_ls: int, c1: float = 1e-4, c2: float = 0.9,
                 tolerance_change: float = 1e-9) -> Generator[float, tuple[float, float, int], tuple[float, int, float, int]]:
    """torch.optim.lbfgs's strong-Wolfe line search on the scalars of one member, as a generator.

    It yields each trial step t and is sent back (f(x + t d), g(x + t d) . d, ref), `ref` naming the
    evaluation so that its gradient can be fetched later (-1: the starting point's). It returns
    (f, ref, t, evaluations) of the point it accepts. The logic, branch for branch, is torch's
    ``_strong_wolfe`` (bracketing, then zoom by cubic interpolation); only the gradient vectors are
    replaced by their references.
    """
    f_new, gtd_new, ref_new = yield t
    evals, ls_iter = 1, 0
    t_prev, f_prev, gtd_prev, ref_prev = 0.0, f, gtd, -1
    done = False
    bracket: list[float] = []
    while ls_iter < max_ls:
        if f_new > f + c1 * t * gtd or (ls_iter > 1 and f_new >= f_prev):
            bracket, bf, bg, br = [t_prev, t], [f_prev, f_new], [gtd_prev, gtd_new], [ref_prev, ref_new]
            break
        if abs(gtd_new) <= -c2 * gtd:
            bracket, bf, bg, br = [t], [f_new], [gtd_new], [ref_new]
            done = True
            break
        if gtd_new >= 0:
            bracket, bf, bg, br = [t_prev, t], [f_prev, f_new], [gtd_prev, gtd_new], [ref_prev, ref_new]
            break
        t_next = _cubic_interpolate(t_prev, f_prev, gtd_prev, t, f_new, gtd_new, bounds=(t + 0.01 * (t - t_prev), t * 10))
        t_prev, f_prev, gtd_prev, ref_prev = t, f_new, gtd_new, ref_new
        t = t_next
        f_new, gtd_new, ref_new = yield t
        evals += 1
        ls_iter += 1
    if ls_iter == max_ls:
        bracket, bf, bg, br = [0.0, t], [f, f_new], [gtd, gtd_new], [-1, ref_new]
    insufficient = False
    low, high = (0, 1) if bf[0] <= bf[-1] else (1, 0)
    while not done and ls_iter < max_ls:
        if abs(bracket[1] - bracket[0]) * d_norm < tolerance_change:
            break
        t = _cubic_interpolate(bracket[0], bf[0], bg[0], bracket[1], bf[1], bg[1])
        eps = 0.1 * (max(bracket) - min(bracket))
        if min(max(bracket) - t, t - min(bracket)) < eps:
            if insufficient or t >= max(bracket) or t <= min(bracket):
                t = max(bracket) - eps if abs(t - max(bracket)) < abs(t - min(bracket)) else min(bracket) + eps
                insufficient = False
            else:
                insufficient = True
        else:
            insufficient = False
        f_new, gtd_new, ref_new = yield t
        evals += 1
        ls_iter += 1
        if f_new > f + c1 * t * gtd or f_new >= bf[low]:
            bracket[high], bf[high], bg[high], br[high] = t, f_new, gtd_new, ref_new
            low, high = (0, 1) if bf[0] <= bf[1] else (1, 0)
        else:
            if abs(gtd_new) <= -c2 * gtd:
                done = True
            elif gtd_new * (bracket[high] - bracket[low]) >= 0:
                bracket[high], bf[high], bg[high], br[high] = bracket[low], bf[low], bg[low], br[low]
            bracket[low], bf[low], bg[low], br[low] = t, f_new, gtd_new, ref_new
    return bf[low], br[low], bracket[low], evals


class MemberLBFGS:
    """L-BFGS with a strong-Wolfe line search, for S members side by side.

    Per member this is torch.optim.LBFGS (``lr=1``, ``line_search_fn="strong_wolfe"``): the same
    iteration, line search, curvature test (s.y > 1e-10), initial step min(1, 1 / |g|_1) and the same
    five ways to stop (`max_iter` iterations, `max_eval` evaluations, |g|_inf <= `tolerance_grad`,
    |t d|_inf <= `tolerance_change`, |f - f_prev| < `tolerance_change`), each member on its own.
    The inverse-Hessian product uses the compact form of Byrd, Nocedal & Schnabel (1994), Nocedal &
    Wright eq. (7.24) with H_0 = gamma I, instead of the two-loop recursion: the same matrix, a handful
    of batched products instead of 4 per stored pair, so the rounding differs from torch's.

    The members do not wait for each other: every round of evaluations serves each member that is
    not done, at the point its own line search asks for (a member whose line search has just
    accepted a step first takes its next direction), so a run takes as many rounds as its busiest
    member has evaluations. Each round reads back S losses and directional derivatives. `evaluate(x,
    evaluated)` takes the points (S, P) and which members' values count, and returns the losses (S,)
    and gradients (S, P). A member whose loss or directional derivative turns non-finite stops there
    (reason ``"nonfinite"``), at its last iterate, whose loss was finite.
    """

    def __init__(self, max_iter: int, max_eval: int | None = None, history_size: int = 50,
                 tolerance_grad: float = 1e-12, tolerance_change: float = 1e-15) -> None:
        self.max_iter, self.history_size = max_iter, history_size
        self.max_eval = max_iter * 5 // 4 if max_eval is None else max_eval
        self.tolerance_grad, self.tolerance_change = tolerance_grad, tolerance_change

    def run(self, x: torch.Tensor, evaluate: Callable[[torch.Tensor, list[bool]], tuple[torch.Tensor, torch.Tensor]],
            active: Sequence[bool]) -> tuple[torch.Tensor, LBFGSOutcome]:
        """Minimize from x (S, P) for the `active` members (the others keep their x); returns the
        final points and the outcome. `evaluate` may raise to end every member's run."""
        x = x.clone()
        count = x.shape[0]
        members = [_Member(done=not a, reason="" if a else "inactive") for a in active]
        memory = _Memory(count, x.shape[1], self.history_size, x)
        f, g = evaluate(x, [not m.done for m in members])
        first = torch.stack([f, g.abs().amax(1), g.abs().sum(1)]).tolist()
        for i, m in enumerate(members):
            if not m.done:
                m.f, m.evals, m.fresh = first[0][i], 1, True
                self._stop_if(m, not math.isfinite(m.f), "nonfinite") or self._stop_if(
                    m, first[1][i] <= self.tolerance_grad, "tolerance_grad")
        d, g_prev = torch.zeros_like(x), g.clone()
        t_last = torch.zeros(count, dtype=x.dtype, device=x.device)
        rounds: dict[int, torch.Tensor] = {}  # round -> the gradients it evaluated (what line searches may accept)
        for round_ in itertools.count():
            fresh = [m.fresh and not m.done for m in members]
            if any(fresh):
                d, g_prev = self._directions(members, fresh, memory, g, g_prev, d, t_last, first[2])
            searching = [m.search is not None for m in members]
            if not any(searching):
                break
            trial = torch.tensor([m.trial if s else 0.0 for m, s in zip(members, searching)], dtype=x.dtype,
                                 device=x.device)
            f_new, g_new = evaluate(x + trial[:, None] * d, searching)
            rounds[round_] = g_new
            read = torch.stack([f_new, (g_new * d).sum(1)]).tolist()
            accepted = [None] * count
            for i, m in enumerate(members):
                if searching[i]:
                    accepted[i] = self._advance(m, read[0][i], read[1][i], round_)
            if any(a is not None for a in accepted):
                x, g, t_last = self._accept(members, accepted, x, g, d, t_last, rounds)
            oldest = min([m.start for m in members if m.search is not None], default=round_ + 1)
            rounds = {r: v for r, v in rounds.items() if r >= oldest}
        return x, LBFGSOutcome([m.evals for m in members], [m.iterations for m in members],
                               [m.reason for m in members])

    @staticmethod
    def _stop_if(m: _Member, hit: bool, reason: str) -> bool:
        if hit:
            m.done, m.reason, m.search = True, reason, None
        return hit

    def _directions(self, members: list[_Member], fresh: list[bool], memory: "_Memory", g: torch.Tensor,
                    g_prev: torch.Tensor, d: torch.Tensor, t_last: torch.Tensor,
                    l1: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
        """The next direction d = -H g of the `fresh` members (their curvature pair stored first),
        and the start of their line searches."""
        mask = torch.tensor(fresh, device=g.device)
        memory.update(g - g_prev, d * t_last[:, None], mask & (t_last != 0))
        d = torch.where(mask[:, None], -memory.apply(g), d)
        g_prev = torch.where(mask[:, None], g, g_prev)
        stats = torch.stack([(g * d).sum(1), d.abs().amax(1)]).tolist()
        for i, m in enumerate(members):
            if not fresh[i]:
                continue
            m.fresh, m.iterations, m.prev_f = False, m.iterations + 1, m.f
            if self._stop_if(m, stats[0][i] > -self.tolerance_change, "tolerance_change"):
                continue
            t0 = min(1.0, 1.0 / l1[i]) if m.iterations == 1 else 1.0
            m.search = strong_wolfe(m.f, stats[0][i], t0, stats[1][i], self.max_eval - m.evals)
            m.trial = m.search.send(None)
        return d, g_prev

    def _advance(self, m: _Member, f: float, gtd: float, round_: int) -> tuple[float, int, float] | None:
        """Feed a member's line search its evaluation; the (f, round, t) it accepts, if it ends."""
        m.evals += 1
        if m.start is None:
            m.start = round_
        if self._stop_if(m, not (math.isfinite(f) and math.isfinite(gtd)), "nonfinite"):
            return None
        try:
            m.trial = m.search.send((f, gtd, round_))
        except StopIteration as end:
            f_accepted, ref, t, _ = end.value
            m.search, m.start = None, None
            return f_accepted, ref, t
        return None

    def _accept(self, members: list[_Member], accepted: list, x: torch.Tensor, g: torch.Tensor, d: torch.Tensor,
                t_last: torch.Tensor, rounds: dict[int, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """Move the members whose line search ended to x + t d, with the loss and gradient of the point
        it accepted (ref -1: where it started), then apply torch.optim.LBFGS's stopping tests."""
        now = [a is not None for a in accepted]
        mask = torch.tensor(now, device=x.device)
        steps = torch.tensor([a[2] if a else 0.0 for a in accepted], dtype=x.dtype, device=x.device)
        grads = torch.stack([rounds[a[1]][i] if a and a[1] >= 0 else g[i] for i, a in enumerate(accepted)])
        x = x + steps[:, None] * d
        g = torch.where(mask[:, None], grads, g)
        t_last = torch.where(mask, steps, t_last)
        stats = torch.stack([g.abs().amax(1), (d * steps[:, None]).abs().amax(1)]).tolist()
        for i, m in enumerate(members):
            if not now[i]:
                continue
            m.f, m.fresh = accepted[i][0], True
            tests = (("max_iter", m.iterations == self.max_iter), ("max_eval", m.evals >= self.max_eval),
                     ("tolerance_grad", stats[0][i] <= self.tolerance_grad),
                     ("tolerance_change", stats[1][i] <= self.tolerance_change),
                     ("tolerance_change", abs(m.f - m.prev_f) < self.tolerance_change))
            any(self._stop_if(m, hit, reason) for reason, hit in tests)
        return x, g, t_last


class _Memory:
    """The stored curvature pairs (s, y) of S members, at most `size` each, and the product H g.

    Pairs live in ring buffers (S, size, P) in physical slots; the small matrices S^T Y and Y^T Y are
    kept up to date slot by slot, and put in time order only when a direction is computed.
    """

    def __init__(self, members: int, dim: int, size: int, like: torch.Tensor) -> None:
        self.size = size
        self.s = like.new_zeros(members, size, dim)
        self.y = like.new_zeros(members, size, dim)
        self.sy = like.new_zeros(members, size, size)  # sy[i, j] = s_i . y_j (physical slots)
        self.yy = like.new_zeros(members, size, size)
        self.count = torch.zeros(members, dtype=torch.long, device=like.device)
        self.head = torch.zeros(members, dtype=torch.long, device=like.device)
        self.gamma = like.new_ones(members)
        self.rows = torch.arange(members, device=like.device)

    def update(self, y: torch.Tensor, s: torch.Tensor, candidates: torch.Tensor) -> None:
        """Store (s, y) for the `candidates` whose s . y > 1e-10 (the oldest pair goes when full);
        gamma = s.y / y.y for them (torch.optim.LBFGS's H_diag)."""
        ys = (y * s).sum(1)
        take = candidates & (ys > 1e-10)
        full = self.count == self.size
        slot = torch.where(full, self.head, (self.head + self.count) % self.size)
        old_s, old_y = self.s[self.rows, slot], self.y[self.rows, slot]
        new_s, new_y = torch.where(take[:, None], s, old_s), torch.where(take[:, None], y, old_y)
        self.s[self.rows, slot], self.y[self.rows, slot] = new_s, new_y
        row_sy = torch.bmm(new_s[:, None], self.y.transpose(1, 2))[:, 0]  # s_new . y_j
        col_sy = torch.bmm(self.s, new_y[:, :, None])[:, :, 0]  # s_i . y_new
        row_yy = torch.bmm(new_y[:, None], self.y.transpose(1, 2))[:, 0]
        self.sy[self.rows, slot] = row_sy
        self.sy[self.rows, :, slot] = col_sy
        self.yy[self.rows, slot] = row_yy
        self.yy[self.rows, :, slot] = row_yy
        self.head = torch.where(take & full, (self.head + 1) % self.size, self.head)
        self.count = torch.where(take & ~full, self.count + 1, self.count)
        self.gamma = torch.where(take, ys / (y * y).sum(1), self.gamma)

    def apply(self, g: torch.Tensor) -> torch.Tensor:
        """H g per member, H the L-BFGS inverse-Hessian approximation of its stored pairs:
        H g = gamma g + S u - gamma Y z, z = R^-1 S^T g, u = R^-T ((D + gamma Y^T Y) z - gamma Y^T g),
        R the upper triangle of S^T Y in time order and D its diagonal (N&W eq. 7.24)."""
        order = (self.head[:, None] + torch.arange(self.size, device=g.device)) % self.size  # (S, m) time order
        valid = torch.arange(self.size, device=g.device)[None] < self.count[:, None]
        both = valid[:, :, None] & valid[:, None, :]
        sy = _reorder(self.sy, order)
        yy = torch.where(both, _reorder(self.yy, order), 0.0)
        eye = torch.eye(self.size, dtype=g.dtype, device=g.device).expand_as(sy)
        r = torch.where(both, torch.triu(sy), eye)
        diag = torch.where(valid, torch.diagonal(sy, dim1=1, dim2=2), 0.0)
        a = torch.where(valid, torch.gather(torch.bmm(self.s, g[:, :, None])[:, :, 0], 1, order), 0.0)
        b = torch.where(valid, torch.gather(torch.bmm(self.y, g[:, :, None])[:, :, 0], 1, order), 0.0)
        gamma = self.gamma[:, None]
        z = torch.linalg.solve_triangular(r, a[:, :, None], upper=True)
        rhs = diag[:, :, None] * z + gamma[:, :, None] * torch.bmm(yy, z) - gamma[:, :, None] * b[:, :, None]
        u = torch.linalg.solve_triangular(r.transpose(1, 2), rhs, upper=False)
        u_phys, z_phys = (torch.zeros_like(a).scatter_(1, order, v[:, :, 0]) for v in (u, z))
        return (gamma * g + torch.bmm(u_phys[:, None], self.s)[:, 0]
                - gamma * torch.bmm(z_phys[:, None], self.y)[:, 0])


def _reorder(m: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """m[s][order[s]][:, order[s]] for each member s: a (S, k, k) matrix of physical slots in time order."""
    rows = torch.gather(m, 1, order[:, :, None].expand(-1, -1, m.shape[2]))
    return torch.gather(rows, 2, order[:, None, :].expand(-1, m.shape[1], -1))
