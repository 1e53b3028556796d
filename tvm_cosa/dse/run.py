"""`sweep()`: every model on every configuration of a space, scheduled by CoSA.

    from tvm_cosa.dse import sweep
    result = sweep(["resnet50.onnx"], "space.yaml", out="sweep-out", jobs=2)   # or ray=True
    print(result.table())

Steps: load the space (every configuration built and checked first) and the models (layers
extracted once, identical layers merged across models); make one task per (configuration, unique
layer); answer what the schedule cache knows (keyed by problem, architecture, objective and solver
version, shared with CoSAPass); run the rest on the backend, storing each outcome in the cache as
it arrives, so an interrupted sweep resumes where it stopped and a repeated sweep solves nothing.
Infeasible layers are remembered too (under a key of their own), so they are not solved again.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from ..errors import InputError
from ..relax.cache import ScheduleCache, cache_key
from ..relax.solve import INFEASIBLE, check_layer
from . import results as res
from .area import AREA_LABEL, estimate_area
from .backends import DEFAULT_RETRIES, make_backend
from .models import ModelLayers, unique_models
from .space import Space, load_space
from .tasks import CRASH_ONCE_ENV, Task

EVALUATORS = ("builtin", "timeloop")


@dataclass
class SweepResult:
    rows: list
    space: Space
    models: list
    out: Optional[Path]
    stats: dict = field(default_factory=dict)
    task_times: list = field(default_factory=list)  # (wall_s, solve_time_s) of each task run

    def table(self) -> str:
        return res.pareto_table(self.rows, self.space.param_names)

    def comparable(self) -> list:
        """The rows without timing columns (what must not depend on the backend)."""
        return [{k: v for k, v in r.items() if k != "solve_time_s"} for r in self.rows]


def sweep(models, space, out=None, *, jobs: int = 2, ray=None, solver: str = "auto",
          objective=None, evaluate: str = "builtin", time_limit: Optional[float] = None,
          mip_gap: Optional[float] = None, cache=None, progress: bool = True,
          max_retries: int = DEFAULT_RETRIES, plot: bool = True,
          on_result: Optional[Callable[[dict], None]] = None) -> SweepResult:
    """Run a design-space sweep. models: ONNX / layer YAML paths, layer directories or
    `ModelLayers`; space: a `Space`, a YAML path or a dict. ray: None (local pool of `jobs`
    processes), True (a local Ray runtime with `jobs` CPUs) or a cluster address. evaluate:
    "builtin" (the built-in model, equal to Timeloop) or "timeloop" (timeloop-model on every
    worker). cache: None (default directory), a directory, or False. on_result(outcome) is called
    in the driver after each finished task is stored."""
    from ..scheduler import Objective
    from ..solvers import solver_version

    if evaluate not in EVALUATORS:
        raise InputError(f"evaluate must be one of {EVALUATORS}, got {evaluate!r}",
                         field="evaluate")
    began = time.perf_counter()
    if not isinstance(space, Space):
        space = load_space(space)
    models = _models(models)
    load_s = time.perf_counter() - began
    objective = objective or Objective()
    cache = ScheduleCache(cache)
    version = solver_version(solver)
    options = (("objective", objective), ("solver", solver), ("check", evaluate),
               ("time_limit", time_limit), ("mip_gap", mip_gap))
    layer_index, problems = _unique_layers(models)

    outcomes, todo, keys = {}, [], {}
    crash_marker = os.environ.get(CRASH_ONCE_ENV) or None
    for point in space.points:
        for index, problem in enumerate(problems):
            key = cache_key(problem, point.arch, objective.key(), solver, version)
            keys[(point.index, index)] = key
            known = _from_cache(cache, key, problem, point.arch, evaluate)
            if known is not None:
                outcomes[(point.index, index)] = known
            else:
                todo.append(Task(point.index, index, problem, point.arch, options, crash_marker))

    stats = {"configurations": len(space.points), "models": len(models),
             "unique_layers": len(problems), "tasks": len(space.points) * len(problems),
             "cached": len(outcomes), "solved": 0, "retried": 0, "worker_failures": 0,
             "load_s": load_s, "driver_s": 0.0}
    task_times = []
    backend = make_backend(jobs, ray, max_retries)
    bar = _progress(stats["tasks"], len(outcomes), progress)
    stats["backend"] = "none: every task from the cache"
    try:
        with backend if todo else contextlib.nullcontext():  # nothing to run: start no Ray
            if todo:
                stats["backend"] = backend.description
            for outcome in backend.run(todo) if todo else ():
                received = time.perf_counter()
                task_id = tuple(outcome["id"])
                outcomes[task_id] = outcome
                _store(cache, keys[task_id], outcome, problems[task_id[1]], evaluate)
                stats["solved"] += 1
                if outcome.get("pid") is None:
                    stats["worker_failures"] += 1
                task_times.append((outcome.get("wall_s", 0.0), outcome.get("solve_time_s", 0.0)))
                bar.update()
                stats["driver_s"] += time.perf_counter() - received
                if on_result is not None:
                    on_result(outcome)
    finally:
        bar.close()
        stats["retried"] = backend.retried
    stats["wall_s"] = time.perf_counter() - began  # loading, cache look-ups, tasks, not output

    rows = []
    for point in space.points:
        area = estimate_area(point.arch).total_mm2
        rows.extend(res.model_row(point, m, outcomes, layer_index, area) for m in models)
    res.mark_pareto(rows)
    result = SweepResult(rows=rows, space=space, models=models, out=None, stats=stats,
                         task_times=task_times)
    if out is not None:
        result.out = _write(result, Path(out), plot)
    return result


def _models(models) -> list:
    if isinstance(models, (str, os.PathLike, ModelLayers)):
        models = [models]
    models = list(models)
    if not models:
        raise InputError("no model given; expected ONNX files, layer YAML files or directories",
                         field="models")
    loaded = [m for m in models if isinstance(m, ModelLayers)]
    paths = [m for m in models if not isinstance(m, ModelLayers)]
    return loaded + unique_models(paths)


def _unique_layers(models):
    """(problem key -> index, [Problem]) over all models; a layer shared by models is one task."""
    layer_index, problems = {}, []
    for model in models:
        for key, (problem, _) in model.layers.items():
            if key not in layer_index:
                layer_index[key] = len(problems)
                problems.append(problem)
    return layer_index, problems


def _infeasible_key(key: str) -> str:
    return hashlib.sha256(f"{key}/infeasible".encode()).hexdigest()


def _from_cache(cache, key, problem, arch, evaluate) -> Optional[dict]:
    """The outcome the cache holds for this task, or None (a miss)."""
    entry = cache.get(key)
    if entry is not None and "mapping" in entry:
        from ..mapping import Mapping
        from ..validity import is_valid

        try:
            mapping = Mapping.from_dict(entry["mapping"])
        except (KeyError, TypeError, ValueError):
            mapping = None
        if mapping is not None and is_valid(mapping, problem, arch):
            evaluation, error = entry.get("evaluation"), None
            if evaluation is None or evaluation.get("backend") != evaluate:
                evaluation, error = check_layer(mapping, problem, arch, evaluate)
            return {"mapping": entry["mapping"], "evaluation": evaluation, "error": error,
                    "solve_time_s": 0.0, "cached": True}
    verdict = cache.get(_infeasible_key(key))
    if verdict is not None and verdict.get("error"):
        return {"mapping": None, "evaluation": None, "error": tuple(verdict["error"]),
                "solve_time_s": 0.0, "cached": True}
    return None


def _store(cache, key, out, problem, evaluate):
    if out.get("mapping") is not None and not out.get("error"):
        cache.put(key, {"mapping": out["mapping"], "evaluation": out["evaluation"],
                        "check": evaluate, "solve_time_s": out["solve_time_s"],
                        "problem": str(problem)})
    elif out.get("error") and out["error"][0] == INFEASIBLE:
        # deterministic: no schedule exists; solver failures and dead workers are tried again
        cache.put(_infeasible_key(key), {"error": list(out["error"]), "problem": str(problem)})


def _write(result: SweepResult, out: Path, plot: bool) -> Path:
    try:
        out.mkdir(parents=True, exist_ok=True)
        res.write_csv(result.rows, result.space.param_names, out / "results.csv")
        if plot:
            res.plot(result.rows, out / "pareto.png",
                     title=f"{result.space.base}: {len(result.space.points)} configurations; "
                           f"area: {AREA_LABEL.split(':')[0]}")
    except OSError as err:
        raise InputError(f"cannot write the sweep's results: {err}", source=out) from None
    return out


class _NoBar:
    def update(self, n=1):
        pass

    def close(self):
        pass


def _progress(total, done, enabled):
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, initial=done, desc="sweep", unit="task", leave=False)
