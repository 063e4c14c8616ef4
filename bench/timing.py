"""How the benchmarks time a step: the best of repeated batches, per call."""

from __future__ import annotations

import time
from collections.abc import Callable


def best_per_call(batch: Callable[[int], object], calls: int, seconds: float) -> float:
    """Seconds per call: ``batch(calls)`` makes ``calls`` calls, and batches are timed
    for ``seconds`` (at least one); the fastest batch counts, the one least disturbed
    by the rest of the machine."""
    best = float("inf")
    deadline = time.perf_counter() + seconds
    while True:
        start = time.perf_counter()
        batch(calls)
        best = min(best, (time.perf_counter() - start) / calls)
        if time.perf_counter() >= deadline:
            return best
