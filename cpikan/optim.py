"""Adam over S members at once: each trainable tensor has a member axis first, (S, P), and member
m's step depends on row m alone (its gradient, its rate, whether it steps at all).

`MemberAdam` is Adam (torch.optim.Adam's update, bias corrections included) with a per-member step
mask and rate; `cpikan.lbfgs.MemberLBFGS` is the L-BFGS phase's optimizer.
"""

from __future__ import annotations

from typing import Sequence

import torch

from cpikan.models import member_view


class MemberAdam:
    """Adam on tensors of shape (S, ...), a step per member.

    Per member, with g its gradient, t its own count of steps taken (a skipped step is not counted):
        m <- b1 m + (1 - b1) g,   v <- b2 v + (1 - b2) g^2
        p <- p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
    as torch.optim.Adam (Kingma & Ba 2015, Algorithm 1). A member whose `mask` is False keeps its
    parameters, moments and count; its gradient may then be non-finite.
    """

    def __init__(self, params: Sequence[torch.Tensor], betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8) -> None:
        self.params = list(params)
        self.b1, self.b2 = betas
        self.eps = eps
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        self.steps = torch.zeros(self.params[0].shape[0], dtype=self.params[0].dtype, device=self.params[0].device)

    @torch.no_grad()
    def step(self, lr: float | torch.Tensor, mask: torch.Tensor) -> None:
        """One step of the members where `mask` (S,) is True, at rate `lr` (a float, or (S,) per member)."""
        taken = mask.to(self.steps.dtype)
        self.steps += taken
        bias1 = 1 - torch.pow(self.b1, self.steps)
        bias2 = torch.where(mask, torch.sqrt(1 - torch.pow(self.b2, self.steps)), 1.0)
        size = lr * taken / torch.where(mask, bias1, 1.0)
        w1, w2 = ((1 - b) * taken for b in (self.b1, self.b2))
        for p, m, v in zip(self.params, self.m, self.v):
            g = torch.where(member_view(mask, p), p.grad, 0.0)
            m.lerp_(g, member_view(w1, p))
            v.lerp_(g * g, member_view(w2, p))
            p.addcdiv_(m * member_view(size, p), v.sqrt().div_(member_view(bias2, p)).add_(self.eps), value=-1)
