"""MILP back ends: HiGHS (embedded, from highspy) and Gurobi (from gurobipy).

`solve(milp, solver="auto" | "highs" | "gurobi", time_limit=, mip_gap=, threads=, start=)`
returns a `SolveResult` with the solver used, its status and the best solution found (on a time
limit: the incumbent, status "time_limit"; if the solver found none, the start completed into a
full feasible solution, when one was given). Without a time limit a solve gets
DEFAULT_TIME_LIMIT seconds and, if it has no schedule by then, runs on until it has one;
`time_limit=math.inf` asks for the full proof of optimality. `auto` uses Gurobi when gurobipy
is installed and its licence accepts the model (the pip licence is size-limited: 2000 variables
and 2000 linear constraints), HiGHS otherwise; `SolveResult.message` says why.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Optional

from .errors import SolverError

SOLVERS = ("highs", "gurobi")
SOLVER_CHOICES = ("auto",) + SOLVERS
# Tight integrality: log2 tile sizes differ by ~1/(capacity * ln 2) near a capacity, so a
# loose tolerance could round a solution just over a buffer's size.
INT_TOL = 1e-7
LP_TOL = 1e-9  # Gurobi's primal / dual feasibility tolerances


@dataclass
class SolveResult:
    solver: str
    status: str  # optimal | time_limit | infeasible | unbounded | stopped | error
    values: Optional[list]
    objective: Optional[float]
    bound: Optional[float]
    gap: Optional[float]
    solve_time_s: float
    message: str = ""

    @property
    def has_solution(self) -> bool:
        return self.values is not None


# Relative gap at which a solve stops when none is given. The objective's access counts are
# tangent cuts of 2^x, up to 1.5 % below the true count near the optimum, so proving the last
# 0.1 % buys nothing measurable: on ResNet-50 / simba, 1e-3 instead of the solvers' own 1e-4
# changed no layer's cycles and energy by at most 0.1 %, and cut the median solve time by a
# quarter (the optimum is usually found early; the rest of the time went into the proof).
DEFAULT_MIP_GAP = 1e-3
# Solver seconds a solve gets when no time limit is given. The optimum is nearly always found
# well before (median 0.4 s on ResNet-50 / simba) and the rest is proof; a few models with a weak
# LP bound took 4-5 s to prove what they had found by 2 s.
DEFAULT_TIME_LIMIT = 2.5


def effective_time_limit(time_limit: Optional[float]) -> float:
    """The limit a solve asked for `time_limit` runs under (math.inf: none)."""
    return DEFAULT_TIME_LIMIT if time_limit is None else float(time_limit)


def solve(milp, solver: str = "auto", *, time_limit: Optional[float] = None,
          mip_gap: Optional[float] = None, threads: int = 1, start: Optional[dict] = None
          ) -> SolveResult:
    """Minimise the MILP with the chosen back end (see the module docstring)."""
    if solver not in SOLVER_CHOICES:
        raise SolverError(f"unknown solver {solver!r}; expected one of {list(SOLVER_CHOICES)}")
    if time_limit is not None and not time_limit > 0:
        raise SolverError(f"time_limit must be a positive number of seconds, got {time_limit!r}")
    if mip_gap is not None and not 0 <= mip_gap < 1:
        raise SolverError(f"mip_gap must be in [0, 1), got {mip_gap!r}")
    if mip_gap is None:
        mip_gap = DEFAULT_MIP_GAP
    note, auto = "", solver == "auto"
    if auto:
        solver, note = choose_solver(milp.num_vars, milp.num_constraints)
    elif solver == "gurobi":
        refusal = gurobi_refusal(milp.num_vars, milp.num_constraints)
        if refusal:
            raise SolverError(refusal)
    run = _solve_gurobi if solver == "gurobi" else _solve_highs
    if milp.num_vars == 0:  # nothing to decide (every dimension has size 1)
        run = _solve_empty
    if start and len(start) < milp.num_vars:
        start = complete_start(milp, start, threads)
    limit = effective_time_limit(time_limit)

    def attempt(seconds):
        nonlocal run, solver, note
        seconds = None if math.isinf(seconds) else seconds
        try:
            return run(milp, seconds, mip_gap, max(1, int(threads)), start or {})
        except SolverError as err:
            if not (auto and solver == "gurobi"):
                raise
            run, solver = _solve_highs, "highs"
            note = f"auto: using HiGHS (Gurobi refused: {err})"
            return run(milp, seconds, mip_gap, max(1, int(threads)), start or {})

    result = attempt(limit)
    if time_limit is None and not result.has_solution and result.status == "time_limit":
        spent = result.solve_time_s  # the default budget never costs the schedule: go on
        result = attempt(math.inf)
        result.solve_time_s += spent
    result.solver = solver
    if not result.has_solution and result.status == "time_limit" and start:
        result.values = [start[i] for i in range(milp.num_vars)]
        result.objective = milp.objective_value(result.values)
        result.message = "no schedule better than the starting one was found in time"
    result.message = "; ".join(m for m in (note, result.message) if m)
    return result


def complete_start(milp, partial: dict, threads: int = 1) -> Optional[dict]:
    """A full feasible solution extending `partial` (its values fixed), or None."""
    saved = {i: (milp.lb[i], milp.ub[i]) for i in partial}
    try:
        for i, v in partial.items():
            milp.lb[i] = milp.ub[i] = v
        result = _solve_highs(milp, 10.0, None, threads, {})
    finally:
        for i, (lo, hi) in saved.items():
            milp.lb[i], milp.ub[i] = lo, hi
    return dict(enumerate(result.values)) if result.has_solution else None


def choose_solver(num_vars: int, num_constraints: int) -> tuple[str, str]:
    """`auto`: Gurobi if its licence accepts a model of this size, else HiGHS (and why)."""
    refusal = gurobi_refusal(num_vars, num_constraints)
    if refusal is None:
        return "gurobi", "auto: Gurobi's licence accepts the model"
    return "highs", f"auto: using HiGHS ({refusal})"


def gurobi_refusal(num_vars: int, num_constraints: int) -> Optional[str]:
    """Why Gurobi cannot solve a model of this size here, or None if it can."""
    try:
        import gurobipy  # noqa: F401
    except ImportError:
        return "gurobipy is not installed (pip install 'tvm_cosa[gurobi]')"
    limit = gurobi_size_limit()
    if isinstance(limit, str):
        return limit
    if limit is not None and (num_vars > limit or num_constraints > limit):
        return (f"Gurobi's size-limited licence accepts at most {limit} variables and {limit} "
                f"constraints; this model has {num_vars} and {num_constraints}")
    return None


@lru_cache(maxsize=1)
def gurobi_size_limit():
    """The licence's model-size limit (None: unlimited), or a message if no licence works.

    Probes once per process with an empty model one column over the pip licence's limit.
    """
    import gurobipy as gp

    try:
        env = _gurobi_env()
    except gp.GurobiError as err:
        return f"no usable Gurobi licence ({err})"
    try:
        probe = gp.Model(env=env)
        probe.addVars(2001)
        probe.optimize()
        return None
    except gp.GurobiError as err:
        if getattr(err, "errno", None) == 10010:  # "Model too large for size-limited license"
            return 2000
        return f"no usable Gurobi licence ({err})"


_ENV_LOCK = threading.Lock()
_GUROBI_ENV = None


def _gurobi_env():
    global _GUROBI_ENV
    import gurobipy as gp

    with _ENV_LOCK:
        if _GUROBI_ENV is None:
            env = gp.Env(empty=True)
            env.setParam("OutputFlag", 0)
            with _quiet_stdout():
                env.start()
            _GUROBI_ENV = env
        return _GUROBI_ENV


def solver_version(name: str = "highs") -> str:
    """`highs 1.16.0` / `gurobi 13.0.3`: for cache keys (a new solver may find another optimum)."""
    if name == "highs":
        import highspy

        h = _new_highs()
        return f"highs {h.versionMajor()}.{h.versionMinor()}.{h.versionPatch()}"
    if name == "gurobi":
        try:
            import gurobipy as gp
        except ImportError:
            raise SolverError("gurobipy is not installed (pip install 'tvm_cosa[gurobi]')")
        return "gurobi " + ".".join(map(str, gp.gurobi.version()))
    if name == "auto":
        return " / ".join(solver_version(s) for s in available_solvers())
    raise SolverError(f"unknown solver {name!r}; expected one of {list(SOLVER_CHOICES)}")


def available_solvers() -> list[str]:
    out = ["highs"]
    try:
        import gurobipy  # noqa: F401
        out.append("gurobi")
    except ImportError:
        pass
    return out


def _solve_empty(milp, *_) -> SolveResult:
    return SolveResult("", "optimal", [], milp.obj_const, milp.obj_const, 0.0, 0.0)


# ---------------------------------------------------------------------------------------------
# HiGHS
# ---------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _quiet_stdout():
    """Silence C-level stdout (HiGHS prints a banner when constructed, Gurobi one on start)."""
    try:
        sys.stdout.flush()
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        fd = 1  # sys.stdout was replaced (e.g. captured): the C library still writes to fd 1
    try:
        saved = os.dup(fd)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), fd)
            yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)


def _new_highs():
    import highspy

    with _quiet_stdout():
        h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    return h


_HIGHS_LOCK = threading.Lock()
_HIGHS_STATE = {"threads": None, "running": 0}


@contextlib.contextmanager
def _highs_session(h, threads):
    """HiGHS's thread pool is global and fixed at its first use: a different count needs a
    reset, which is only safe while no other solve runs (otherwise keep the current pool)."""
    import highspy

    with _HIGHS_LOCK:
        current = _HIGHS_STATE["threads"]
        if current is not None and current != threads:
            if _HIGHS_STATE["running"]:
                threads = current
            else:
                highspy.Highs.resetGlobalScheduler(True)
        _HIGHS_STATE["threads"] = threads
        _HIGHS_STATE["running"] += 1
    try:
        h.setOptionValue("threads", int(threads))
        yield
    finally:
        with _HIGHS_LOCK:
            _HIGHS_STATE["running"] -= 1


def _solve_highs(milp, time_limit, mip_gap, threads, start) -> SolveResult:
    import highspy
    import numpy as np

    h = _new_highs()
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = milp.num_vars, milp.num_constraints
    lp.col_cost_ = np.array(milp.cost, dtype=float)
    lp.col_lower_ = np.array(milp.lb, dtype=float)
    lp.col_upper_ = np.array(milp.ub, dtype=float)
    lp.row_lower_ = np.array([r[1] for r in milp.rows], dtype=float)
    lp.row_upper_ = np.array([r[2] for r in milp.rows], dtype=float)
    lp.offset_ = milp.obj_const
    starts, index, value = milp.csr()
    lp.a_matrix_.format_ = highspy.MatrixFormat.kRowwise
    lp.a_matrix_.start_ = np.array(starts, dtype=np.int32)
    lp.a_matrix_.index_ = np.array(index, dtype=np.int32)
    lp.a_matrix_.value_ = np.array(value, dtype=float)
    lp.integrality_ = [highspy.HighsVarType.kInteger if k else highspy.HighsVarType.kContinuous
                       for k in milp.integer]
    h.passModel(lp)
    h.setOptionValue("mip_feasibility_tolerance", INT_TOL)
    h.setOptionValue("random_seed", 0)
    if time_limit is not None:
        h.setOptionValue("time_limit", float(time_limit))
    if mip_gap is not None:
        h.setOptionValue("mip_rel_gap", float(mip_gap))
    # No h.setSolution(start): with HiGHS 1.16 a user start can end the search at once with a
    # wrong objective (reported 45.4 for a start worth 72.7, "optimal", on a model whose true
    # optimum is 56.3), so HiGHS always starts from scratch.
    began = time.perf_counter()
    with _highs_session(h, threads):
        h.run()
    elapsed = time.perf_counter() - began
    status = h.getModelStatus()
    info = h.getInfo()
    has_solution = info.primal_solution_status == 2  # kSolutionStatusFeasible
    names = {highspy.HighsModelStatus.kOptimal: "optimal",
             highspy.HighsModelStatus.kTimeLimit: "time_limit",
             highspy.HighsModelStatus.kInfeasible: "infeasible",
             highspy.HighsModelStatus.kUnbounded: "unbounded",
             highspy.HighsModelStatus.kUnboundedOrInfeasible: "infeasible"}
    text = names.get(status, "stopped")
    values = list(h.getSolution().col_value) if has_solution else None
    objective = info.objective_function_value if has_solution else None
    bound = info.mip_dual_bound if math.isfinite(info.mip_dual_bound) else None
    gap = info.mip_gap if has_solution and math.isfinite(info.mip_gap) else None
    return SolveResult("highs", text, values, objective, bound, gap, elapsed,
                       "" if text in ("optimal", "time_limit") else h.modelStatusToString(status))


# ---------------------------------------------------------------------------------------------
# Gurobi
# ---------------------------------------------------------------------------------------------
def _solve_gurobi(milp, time_limit, mip_gap, threads, start) -> SolveResult:
    import gurobipy as gp
    from gurobipy import GRB

    try:
        model = gp.Model(env=_gurobi_env())
    except gp.GurobiError as err:
        raise SolverError(f"Gurobi refused to start: {err}") from None
    try:
        xs = model.addVars(milp.num_vars, lb=milp.lb, ub=milp.ub, obj=milp.cost,
                           vtype=[GRB.INTEGER if k else GRB.CONTINUOUS for k in milp.integer])
        model.ObjCon = milp.obj_const
        for terms, lo, hi, _ in milp.rows:
            expr = gp.LinExpr(list(terms.values()), [xs[i] for i in terms])
            if lo == hi:
                model.addLConstr(expr, GRB.EQUAL, lo)
            elif math.isinf(lo):
                model.addLConstr(expr, GRB.LESS_EQUAL, hi)
            elif math.isinf(hi):
                model.addLConstr(expr, GRB.GREATER_EQUAL, lo)
            else:
                model.addRange(expr, lo, hi)
        model.Params.Threads = threads
        model.Params.IntFeasTol = INT_TOL
        # the tangent rows of 2^v differ in scale by orders of magnitude: at the default 1e-6
        # Gurobi's bound can cut off the optimum (seen: 8e-5 above HiGHS's solution on simba)
        model.Params.FeasibilityTol = LP_TOL
        model.Params.OptimalityTol = LP_TOL
        model.Params.Seed = 0
        if time_limit is not None:
            model.Params.TimeLimit = float(time_limit)
        if mip_gap is not None:
            model.Params.MIPGap = float(mip_gap)
        for i, v in start.items():
            xs[i].Start = v
        began = time.perf_counter()
        model.optimize()
        elapsed = time.perf_counter() - began
    except gp.GurobiError as err:
        if getattr(err, "errno", None) == 10010:
            raise SolverError(f"Gurobi's licence refused the model ({milp.num_vars} variables, "
                              f"{milp.num_constraints} constraints): {err}") from None
        raise SolverError(f"Gurobi failed: {err}") from None
    names = {GRB.OPTIMAL: "optimal", GRB.TIME_LIMIT: "time_limit", GRB.INFEASIBLE: "infeasible",
             GRB.INF_OR_UNBD: "infeasible", GRB.UNBOUNDED: "unbounded"}
    text = names.get(model.Status, "stopped")
    has_solution = model.SolCount > 0
    values = [xs[i].X for i in range(milp.num_vars)] if has_solution else None
    objective = model.ObjVal if has_solution else None
    bound = model.ObjBound if model.IsMIP and has_solution else (model.ObjVal if has_solution
                                                                 else None)
    gap = (model.MIPGap if model.IsMIP else 0.0) if has_solution else None
    result = SolveResult("gurobi", text, values, objective, bound, gap, elapsed,
                         "" if text in ("optimal", "time_limit") else f"status {model.Status}")
    model.dispose()
    return result
