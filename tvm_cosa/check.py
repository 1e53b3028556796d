"""The check step of the scheduler and the TVM pass: evaluate a schedule with real Timeloop when
it is installed, else with the built-in model (which counts the same way).

`check(mapping, problem, arch, backend="auto")`:
* "builtin": `tvm_cosa.cost_model.evaluate`;
* "timeloop": `tvm_cosa.timeloop.run_timeloop` (raises `TimeloopError` if it is missing or fails);
* "auto": Timeloop when `find_timeloop(timeloop)` finds it and the mapping is even, else the
  built-in model.
An invalid mapping returns `Evaluation(valid=False)` with Timeloop's reason either way.
"""

from __future__ import annotations

from .cost_model import evaluate
from .cost_model.result import Evaluation
from .errors import InputError
from .timeloop.runner import find_timeloop, run_timeloop
from .uneven import is_uneven

BACKENDS = ("auto", "timeloop", "builtin")
# Fields compared between the two backends: exact counts, energy within a tolerance.
COUNT_FIELDS = ("utilized_capacity", "utilized_instances", "reads", "fills", "updates")


def check(mapping, problem, arch, backend: str = "auto", timeloop=None, **timeloop_options
          ) -> Evaluation:
    """Evaluate `mapping`; `timeloop`: path of timeloop-model or its folder (default: PATH /
    $TIMELOOP_DIR); `timeloop_options`: `timeout`, `workdir`, `keep` of `run_timeloop`."""
    if backend not in BACKENDS:
        raise InputError(f"unknown backend {backend!r}; expected one of {list(BACKENDS)}")
    # Timeloop has no uneven mappings (tile_levels): "auto" counts those with the built-in model.
    if backend == "builtin" or (backend == "auto" and (is_uneven(mapping)
                                                       or find_timeloop(timeloop) is None)):
        return evaluate(mapping, problem, arch)
    return run_timeloop(mapping, problem, arch, timeloop=timeloop, **timeloop_options)


def differences(a: Evaluation, b: Evaluation, *, energy_tolerance: float = 0.01) -> list:
    """Where two evaluations disagree: validity and reason, cycles, per level and tensor the
    capacities, instances and access counts (exactly), total energy (relative tolerance)."""
    out = []
    if a.valid != b.valid:
        return [f"valid: {a.valid} ({a.error}) vs {b.valid} ({b.error})"]
    if not a.valid:
        return [] if a.error == b.error else [f"error: {a.error!r} vs {b.error!r}"]
    if a.cycles != b.cycles:
        out.append(f"cycles: {a.cycles} vs {b.cycles}")
    levels_b = {lv.name: lv for lv in b.levels}
    for lv in a.levels:
        other = levels_b.get(lv.name)
        if other is None:
            out.append(f"level {lv.name}: missing in {b.backend}")
            continue
        if lv.cycles != other.cycles:
            out.append(f"{lv.name} cycles: {lv.cycles} vs {other.cycles}")
        if set(lv.tensors) != set(other.tensors):
            out.append(f"{lv.name} tensors: {sorted(lv.tensors)} vs {sorted(other.tensors)}")
        for t, stats in lv.tensors.items():
            if t not in other.tensors:
                continue
            for field in COUNT_FIELDS:
                x, y = getattr(stats, field), getattr(other.tensors[t], field)
                if x != y:
                    out.append(f"{lv.name}.{t}.{field}: {x} vs {y}")
    if b.energy_pJ and abs(a.energy_pJ - b.energy_pJ) > energy_tolerance * abs(b.energy_pJ):
        out.append(f"energy: {a.energy_pJ:.2f} vs {b.energy_pJ:.2f} pJ "
                   f"({(a.energy_pJ - b.energy_pJ) / b.energy_pJ:+.2%})")
    return out
