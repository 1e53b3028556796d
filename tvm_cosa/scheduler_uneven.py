"""`schedule(..., uneven=True)`: the best of the even schedule and two uneven solves.

1. the even schedule (the usual MILP);
2. its boundaries re-chosen: the uneven model (`formulation_uneven`) with the even schedule's
   factors and loop orders pinned, so only CoSA's Z is free (small, solved to optimality);
3. the joint uneven model, factors, orders and boundaries together, within a time budget
   (`time_limit` if given, else JOINT_TIME_LIMIT): with HiGHS it can be much slower than the
   even model (big-M couplings), so on a time-out its best schedule only competes.
The even schedule is feasible in both uneven models with the same objective value, so the one
returned (least objective) is never worse than the even one. `info["uneven"]` says which won
and holds the even objective.
"""

from __future__ import annotations

import time

from .errors import SolverError

JOINT_TIME_LIMIT = 10.0  # seconds; the joint model is optional, the refinement is not
SIGNIFICANT = 1e-6  # relative objective gain an uneven schedule needs to be preferred


def schedule_uneven(problem, arch, *, objective=None, solver="auto", time_limit=None,
                    mip_gap=None, threads=1, min_utilization=None, keeps=None,
                    tile_levels=None, global_buffer=None, polish=True):
    from .scheduler import build_model, schedule, solve_checked

    options = dict(keeps=keeps, tile_levels=tile_levels, global_buffer=global_buffer,
                   min_utilization=min_utilization)
    began = time.perf_counter()
    even = schedule(problem, arch, objective=objective, solver=solver, time_limit=time_limit,
                    mip_gap=mip_gap, threads=threads, polish=polish, **options)
    tried = [("even", even)]

    refine = build_model(problem, arch, objective, uneven=True, **options)
    refine.fix(even)
    try:
        tried.append(("boundaries", solve_checked(refine, problem, arch, keeps=keeps,
                                                  solver=solver, mip_gap=mip_gap,
                                                  threads=threads)))
    except SolverError as err:  # never expected (the even schedule is feasible): report it
        even.info["uneven_note"] = f"boundary refinement failed: {err}"

    joint = build_model(problem, arch, objective, uneven=True, **options)
    try:
        tried.append(("joint", solve_checked(
            joint, problem, arch, keeps=keeps, solver=solver, mip_gap=mip_gap, threads=threads,
            time_limit=time_limit if time_limit is not None else JOINT_TIME_LIMIT)))
    except SolverError as err:  # e.g. nothing found in time: the other two stand
        even.info["uneven_note"] = f"joint uneven model: {err}"

    # An uneven schedule must gain more than rounding: at a tie the even one is simpler (and
    # Timeloop can check it).
    target = even.info["objective"] - SIGNIFICANT * abs(even.info["objective"])
    kind, best = min(tried, key=lambda kv: kv[1].info["objective"])
    if best.info["objective"] >= target:
        kind, best = "even", even
    best.info["uneven"] = {"chosen": kind, "even_objective": even.info["objective"],
                           **{f"{k}_objective": m.info["objective"] for k, m in tried},
                           "even_mapping": even.to_dict()}  # to compare (not serialized)
    best.info["solve_time_s"] = sum(m.info["solve_time_s"] for _, m in tried)
    best.info["wall_time_s"] = time.perf_counter() - began
    return best
