"""Throughput of a repeated in-process call, by wall clock and by CPU time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def users_per_second(call: Callable[[], Any], users: int, repeats: int) -> tuple[float, float]:
    """(users/s wall clock, users/s of CPU time) over ``repeats`` calls after one warm-up."""
    call()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(repeats):
        call()
    done = users * repeats
    return done / (time.perf_counter() - wall), done / (time.process_time() - cpu)
