"""Progress bars for long loops: tqdm when it is installed, otherwise a bar that shows nothing.

The core needs only torch, numpy and scipy; tqdm comes with the ``study`` extra (and is on most
machines anyway), so a bare install trains silently instead of failing to import.
"""

from __future__ import annotations

from typing import Any

try:
    from tqdm.auto import tqdm as _tqdm
except ImportError:
    _tqdm = None


class _Silent:
    """The part of tqdm's interface the core uses, doing nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        return None

    def update(self, n: int = 1) -> None:
        return None

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        return None

    def close(self) -> None:
        return None


def bar(total: int, desc: str, enabled: bool) -> Any:
    """A progress bar over `total` steps; silent when not `enabled` or tqdm is missing."""
    if not enabled or _tqdm is None:
        return _Silent()
    return _tqdm(total=total, desc=desc, mininterval=0.5, leave=False)
