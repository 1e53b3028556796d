"""Sweep tasks: one per (configuration, unique layer), run the same way by every backend.

`run_task` is what a worker process (local pool) or a Ray task executes. It imports no TVM and
never raises for a layer that cannot be scheduled: the outcome (schedule, evaluation, or the
reason it failed) comes back as a plain dict, which the driver stores in the schedule cache.

Fault injection for tests: when a task carries `crash_marker` (the driver copies it from the
environment variable CRASH_ONCE_ENV) and that file does not exist yet, the worker creates it and
exits hard, once, as a worker killed by the OS would.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Optional

CRASH_ONCE_ENV = "TVM_COSA_SWEEP_CRASH_ONCE"


@dataclass(frozen=True)
class Task:
    config: int  # index of the configuration in the sweep
    layer: int  # index of the unique layer in the sweep
    problem: Any
    arch: Any
    options: tuple  # ((name, value), ...): solve_layer's keyword arguments
    crash_marker: Optional[str] = None

    @property
    def id(self) -> tuple:
        return (self.config, self.layer)


def run_task(task: Task) -> dict:
    """{"id", "mapping", "evaluation", "error", "solve_time_s", "wall_s", "pid"}."""
    if task.crash_marker and not os.path.exists(task.crash_marker):
        with open(task.crash_marker, "w") as marker:
            marker.write(f"{os.getpid()}\n")
        os._exit(17)
    from ..relax.solve import solve_layer

    began = time.perf_counter()
    out = solve_layer(task.problem, task.arch, **dict(task.options))
    out["id"] = task.id
    out["wall_s"] = time.perf_counter() - began
    out["pid"] = os.getpid()
    return out


def worker_failure(task: Task, message: str) -> dict:
    """The outcome of a task whose worker died more often than the retry budget."""
    from ..relax.solve import SOLVER

    return {"id": task.id, "mapping": None, "evaluation": None, "solve_time_s": 0.0,
            "wall_s": 0.0, "error": (SOLVER, message), "pid": None}
