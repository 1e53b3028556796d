"""Solve and check one layer. Runs in a worker process, so it imports no TVM and never raises:
the result is a plain dict the parent turns into a report record.
"""

from __future__ import annotations

import time

# error kinds -> the words the report uses
INFEASIBLE, SOLVER, INVALID, CHECK = "infeasible", "solver failure", "invalid schedule", \
    "check failure"


def solve_layer(problem, arch, *, objective=None, solver="auto", check="auto", time_limit=None,
                mip_gap=None, uneven=False, polish=True) -> dict:
    """{"mapping": dict | None, "solve_time_s", "error": (kind, message) | None,
    "evaluation": dict | None}."""
    from ..errors import InfeasibleError, SolverError
    from ..scheduler import schedule
    from ..validity import InvalidMappingError, assert_valid

    out = {"mapping": None, "error": None, "evaluation": None, "solve_time_s": 0.0}
    start = time.perf_counter()
    try:
        mapping = schedule(problem, arch, objective=objective, solver=solver,
                           time_limit=time_limit, mip_gap=mip_gap, threads=1, uneven=uneven,
                           polish=polish)
        assert_valid(mapping, problem, arch)  # trust no solver
    except InfeasibleError as err:
        out["error"] = (INFEASIBLE, str(err))
    except SolverError as err:
        out["error"] = (SOLVER, str(err))
    except InvalidMappingError as err:
        out["error"] = (INVALID, str(err))
    except Exception as err:  # noqa: BLE001 - any solver crash must leave the compile going
        out["error"] = (SOLVER, f"{type(err).__name__}: {err}")
    out["solve_time_s"] = time.perf_counter() - start
    if out["error"]:
        return out
    out["mapping"] = mapping.to_dict()
    out["solve_time_s"] = float(mapping.info.get("solve_time_s", out["solve_time_s"]))
    if check:
        out["evaluation"], out["error"] = check_layer(mapping, problem, arch, check)
    return out


def check_layer(mapping, problem, arch, backend) -> tuple:
    """(evaluation dict, None) or (None, (CHECK, message))."""
    from ..check import check

    try:
        ev = check(mapping, problem, arch, backend=backend)
    except Exception as err:  # noqa: BLE001 - Timeloop missing or failing is a check failure
        return None, (CHECK, f"{type(err).__name__}: {err}")
    if not getattr(ev, "valid", True):
        return None, (CHECK, f"{getattr(ev, 'backend', backend)}: "
                             f"{getattr(ev, 'error', '') or 'mapping rejected'}")
    return evaluation_dict(ev), None


def evaluation_dict(ev) -> dict:
    return {"cycles": _float(ev.cycles), "energy_pJ": _float(ev.energy_pJ),
            "utilization": _float(ev.utilization),
            "energy_estimated": bool(getattr(ev, "energy_estimated", False)),
            "backend": str(getattr(ev, "backend", ""))}


def _float(x):
    return None if x is None else float(x)
