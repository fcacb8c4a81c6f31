"""Training histories of S members, gathered on the device and read back in blocks.

The trainer adds one row per epoch (Adam) or per round of evaluations (L-BFGS): host values
(epoch, phase, times) and device values, one (S,) tensor per key. Nothing is read back until
`read`, which copies every pending row (and any state vectors asked for) in one transfer, so
the hot loop never waits on the device. The trainer then `emit`s the rows each member keeps.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping

import torch

Row = dict[str, Any]


class History:
    """Per-member history rows (key -> list, one entry per row), in the order rows are emitted.

    Args:
        members: S.
        on_row: called with each emitted row (a dict, member index under ``"member"`` when S > 1);
            returning True asks training to stop (`stop_requested`).
    """

    def __init__(self, members: int, on_row: Callable[[Row], bool | None] | None = None) -> None:
        self.rows: list[dict[str, list]] = [{} for _ in range(members)]
        self.on_row = on_row
        self.stop_requested = False
        self._pending: list[tuple[Row, tuple[str, ...], torch.Tensor | None]] = []

    def add(self, host: Row, device: Mapping[str, torch.Tensor]) -> None:
        """Queue a row: `host` values shared by the members (or lists, one per member) and `device`
        values (S,) each (stacked now, on the device; read at the next `read`)."""
        values = torch.stack([v if v.dtype == torch.float64 else v.double() for v in device.values()]) if device else None
        self._pending.append((host, tuple(device), values))

    def read(self, state: Mapping[str, torch.Tensor] | None = None) -> tuple[list[tuple[Row, dict]], dict[str, list]]:
        """Every pending row as (host values, device values as lists per key), and `state` (S,) vectors
        as lists: one copy from the device for all of it. Clears the queue."""
        state = dict(state or {})
        blocks = [v.flatten() for _, _, v in self._pending if v is not None]
        blocks += [v.to(torch.float64).flatten() for v in state.values()]
        flat = torch.cat(blocks).tolist() if blocks else []
        at, rows = 0, []
        for host, names, values in self._pending:
            width = values.shape[1] if values is not None else 0
            read = {}
            for name in names:
                read[name], at = flat[at:at + width], at + width
            rows.append((host, read))
        out_state = {}
        for name, v in state.items():
            out_state[name], at = flat[at:at + v.numel()], at + v.numel()
        self._pending.clear()
        return rows, out_state

    def emit(self, member: int, row: Row) -> None:
        """Append `row` to `member`'s history and tell `on_row`."""
        history = self.rows[member]
        for key, value in row.items():
            history.setdefault(key, []).append(value)
        if self.on_row is not None and self.on_row(row if len(self.rows) == 1 else {**row, "member": member}):
            self.stop_requested = True

    def last(self, member: int, key: str) -> Any:
        """The newest value of `key` in `member`'s history (None when there is none)."""
        values = self.rows[member].get(key)
        return values[-1] if values else None

    def set_last(self, member: int, key: str, value: Any) -> None:
        if self.rows[member].get(key):
            self.rows[member][key][-1] = value


def member_row(host: Row, device: dict[str, list], m: int) -> Row:
    """Member m's history row from a read row (`History.read`), keys in the order of every run's history;
    host values that are lists hold one value per member."""
    def at(value):
        return value[m] if isinstance(value, list) else value

    lr = device["lr"][m] if "lr" in device else host["lr"]
    norm = device["grad_norm"][m]
    row = {"epoch": at(host["epoch"]), "phase": host["phase"], "loss": device["loss"][m], "lr": lr,
           "grad_norm": norm if norm > -math.inf else math.nan, "amp_skipped": int(device["amp_skipped"][m]),
           "time_s": at(host["time_s"]), "points_per_s": host["points_per_s"],
           "monitor": device["monitor"][m] if host["monitor"] else None,
           "rel_l2": device["rel_l2"][m] if at(host["scored"]) else None}
    row |= {k: v[m] for k, v in device.items() if k.startswith("loss_") or k.endswith("_weight")}
    return row
