"""Choosing torch's CPU thread count per batch from measured speed, for encoders on a shared machine.

OpenMP worker threads spin at every barrier. When other processes keep the cores busy, a descheduled worker stalls
the rest, and more threads run slower: on 2 shared cores at load ~15, one MiniLM batch (32 × 128 tokens) took
3.5-4.8 s on one thread and 5.6-7.0 s on two. On an idle machine two threads are nearly twice as fast as one. No fixed
setting is right for both, so :class:`ThreadTuner` times batches (seconds per padded token) at the thread counts
around the best one, uses the fastest and re-checks its neighbours now and then, less often while the best holds.

torch's thread count is process-wide: :func:`torch_threads` sets it for the duration of a block and restores the
caller's setting when the last concurrent user leaves.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from typing import Any, Literal

from ragloom.errors import ConfigError

__all__ = ["ThreadSetting", "ThreadTuner", "available_cpus", "check_thread_setting", "torch_threads"]


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    with contextlib.suppress(AttributeError):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


ThreadSetting = int | Literal["auto"] | None

_LOCK = threading.Lock()
_STATE = {"users": 0, "saved": 0}


def check_thread_setting(threads: object) -> ThreadSetting:
    """``threads`` if it is ``"auto"``, ``None`` or a positive int; else a ConfigError saying what is allowed."""
    if (
        threads is None
        or threads == "auto"
        or (isinstance(threads, int) and not isinstance(threads, bool) and threads > 0)
    ):
        return threads
    raise ConfigError(
        f"threads must be 'auto' (tuned per batch), a positive number of CPU threads, or None (leave torch's "
        f"setting alone); got {threads!r}"
    )


@contextlib.contextmanager
def torch_threads(torch: Any) -> Iterator[None]:
    """Save torch's intra-op thread count on entry (first user) and restore it on exit (last user)."""
    with _LOCK:
        if _STATE["users"] == 0:
            _STATE["saved"] = int(torch.get_num_threads())
        _STATE["users"] += 1
    try:
        yield
    finally:
        with _LOCK:
            _STATE["users"] -= 1
            if _STATE["users"] == 0:
                torch.set_num_threads(_STATE["saved"])


def baseline_threads(torch: Any) -> int:
    """The caller's thread count: the saved one while a tuned block runs, else torch's current one."""
    with _LOCK:
        return int(_STATE["saved"]) if _STATE["users"] else int(torch.get_num_threads())


class ThreadTuner:
    """Pick a thread count for each batch; learn from how long batches took.

    Candidates are ``most``, ``most // 2``, … down to 1. The tuner starts at ``most``, then tries the best count's
    neighbours (one step down, one step up): after every ``interval`` batches on the best one it probes a neighbour,
    doubling ``interval`` (up to ``max_interval``) while the best holds and going back to ``min_interval`` when it
    changes. A probe costs at most one batch at a neighbouring count.
    """

    def __init__(self, most: int, *, min_interval: int = 1, max_interval: int = 64) -> None:
        counts = {max(1, int(most))}
        n = max(1, int(most))
        while n > 1:
            n //= 2
            counts.add(max(1, n))
        self.candidates: tuple[int, ...] = tuple(sorted(counts, reverse=True))
        self._cost: dict[int, float] = {}
        self._min, self._max = min_interval, max_interval
        self._interval = min_interval
        self._since_probe = min_interval  # probe right after the first measured batch
        self._flip = 0
        self._best = self.candidates[0]

    @property
    def best(self) -> int:
        return self._best

    def choose(self) -> int:
        """The thread count for the next batch."""
        if self._best not in self._cost:
            return self._best
        if self._since_probe < self._interval:
            self._since_probe += 1
            return self._best
        neighbours = self._neighbours()
        if not neighbours:
            return self._best
        self._since_probe = 0
        self._flip += 1
        untried = [n for n in neighbours if n not in self._cost]
        return untried[0] if untried else neighbours[self._flip % len(neighbours)]

    def record(self, threads: int, seconds: float, tokens: int) -> None:
        """Fold one batch's time (per padded token) into ``threads``' running cost and re-pick the best."""
        cost = seconds / max(1, tokens)
        old = self._cost.get(threads)
        self._cost[threads] = cost if old is None else 0.5 * old + 0.5 * cost
        best = min(self._cost, key=self._cost.__getitem__)
        if best != self._best:
            self._best = best
            self._interval = self._min
        elif threads != self._best:
            self._interval = min(self._max, self._interval * 2)

    def _neighbours(self) -> list[int]:
        i = self.candidates.index(self._best)
        return [self.candidates[j] for j in (i + 1, i - 1) if 0 <= j < len(self.candidates)]
