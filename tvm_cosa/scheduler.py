"""Scheduling entry points: the typed `schedule()` and the original CoSA's `cosa()`.

`schedule(problem, arch, objective=, solver=, time_limit=, mip_gap=, threads=)` builds the MILP
(`tvm_cosa.formulation`), solves it (`tvm_cosa.solvers`), turns the solution into a `Mapping`
and checks it with the independent validity checker before returning it.

`cosa(prob, arch, A, B, part_ratios, global_buf_idx, Z=None)` keeps the original CoSA's
signature and return values (see its docstring).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Mapping as MappingT, Optional

from .architecture import Architecture
from .errors import InfeasibleError, InputError, SolverError
from .formulation import Objective, ScheduleModel
from .mapping import Mapping
from .problem import Problem, prime_factors
from .solvers import solve
from .validity import check_mapping

__all__ = ["Objective", "schedule", "cosa", "build_model"]


def build_model(problem: Problem, arch: Architecture, objective: Optional[Objective] = None,
                **options) -> ScheduleModel:
    """The MILP of a layer (for inspection: `.m.num_vars`, `.m.rows`, `.notes`)."""
    _check_types(problem, arch, objective)
    uneven = options.pop("uneven", False)
    if uneven or options.get("tile_levels"):
        # per-tensor boundaries (CoSA's Z): chosen by the MILP, or fixed by tile_levels
        from .formulation_uneven import UnevenScheduleModel

        return UnevenScheduleModel(problem, arch, objective or Objective(), uneven=uneven,
                                   **options)
    return ScheduleModel(problem, arch, objective or Objective(), **options)


def schedule(problem: Problem, arch: Architecture, *, objective: Optional[Objective] = None,
             solver: str = "auto", time_limit: Optional[float] = None,
             mip_gap: Optional[float] = None, threads: int = 1,
             min_utilization: Optional[float] = None, keeps=None, tile_levels=None,
             global_buffer: Optional[int] = None, uneven: bool = False,
             polish: bool = True) -> Mapping:
    """The best schedule of `problem` on `arch` under `objective` (default `Objective()`).

    solver: "auto" (Gurobi if its licence accepts the model, else HiGHS), "highs" or "gurobi".
    time_limit (solver seconds) / mip_gap (relative): on a time-out the best schedule found is
        returned with `info["status"] == "time_limit"`; no schedule found in time raises
        SolverError. Defaults (`tvm_cosa.solvers`): DEFAULT_TIME_LIMIT (2.5 s; a solve with no
        schedule by then runs on until it has one) and DEFAULT_MIP_GAP (1e-3);
        `time_limit=math.inf` proves optimality however long it takes.
    min_utilization: require the spatial factors to use at least this fraction of the MACs.
    keeps ({level: tensors}), tile_levels ({(tensor, level): j}, uneven mapping) and
        global_buffer (level of CoSA's permutation terms) are CoSA's B, Z and global_buf_idx.
    uneven: the MILP also picks each tensor's tile boundary at each level (CoSA's Z as a
        decision, `tvm_cosa.formulation_uneven`); entries of tile_levels stay fixed. The
        objective is never worse than the even schedule's (`tvm_cosa.scheduler_uneven`).
    polish: with a latency / energy objective, improve the MILP's schedule by single moves
        judged by the exact cost model (`tvm_cosa.polish`; never worse by Timeloop's metrics;
        `info["polish"]` says what it did). `info["model_cycles"]` and `["objective"]` stay
        the MILP's own values for its solution.
    The result passed `assert_valid`; `info` holds solver, status, objective, bound, gap,
    solve_time_s, build_time_s, num_vars, num_constraints, and the model's own estimates.
    Raises InfeasibleError (naming level, tensor and sizes) or SolverError.
    """
    began = time.perf_counter()
    if min_utilization is not None and not 0 < min_utilization <= 1:
        raise InputError(f"min_utilization must be in (0, 1], got {min_utilization!r}")
    try:
        if uneven:
            from .scheduler_uneven import schedule_uneven

            return schedule_uneven(problem, arch, objective=objective, solver=solver,
                                   time_limit=time_limit, mip_gap=mip_gap, threads=threads,
                                   min_utilization=min_utilization, keeps=keeps,
                                   tile_levels=tile_levels, global_buffer=global_buffer,
                                   polish=polish)
        model = build_model(problem, arch, objective, keeps=keeps, tile_levels=tile_levels,
                            global_buffer=global_buffer, min_utilization=min_utilization)
        built = time.perf_counter() - began
        mapping = solve_checked(model, problem, arch, keeps=keeps, solver=solver,
                                time_limit=time_limit, mip_gap=mip_gap, threads=threads,
                                build_time=built)
        return polished(mapping, model, problem, arch, keeps) if polish else mapping
    except InfeasibleError as err:
        if not arch.mapspace_missing or keeps is not None:
            raise
        raise InfeasibleError(
            f"{err}. {arch.name} was read from a CoSA / Timeloop 0.3 file without a mapspace, so "
            "every level keeps every tensor: its mapspace (bypass) file is probably missing",
            option=("mapspace", "MAPSPACE.yaml"), remedy="; give it with {option}") from err


def solve_checked(model, problem, arch, *, keeps=None, solver="auto", time_limit=None,
                  mip_gap=None, threads=1, build_time=0.0) -> Mapping:
    """Solve a built model, decode its Mapping and check it (see `schedule`)."""
    min_utilization = model.min_utilization
    built = build_time
    # A feasible start (every loop at the outermost level) guarantees a schedule on a time-out
    start = model.start_values() if time_limit is not None and not min_utilization else None
    result = solve(model.m, solver, time_limit=time_limit, mip_gap=mip_gap, threads=threads,
                   start=start)
    if not result.has_solution:
        _raise_unsolved(model, result, time_limit)
    mapping = model.decode(result.values)
    checked_arch = _arch_with_keeps(arch, model) if keeps is not None else arch
    violations = check_mapping(mapping, problem, checked_arch)
    if violations:  # never expected: the model is conservative; say so loudly if it happens
        raise SolverError(f"{result.solver} returned a schedule that breaks the validity rules "
                          f"(a formulation bug, please report it): "
                          + "; ".join(map(str, violations)))
    mapping.info.update(_info(model, result, built))
    return mapping


def polished(mapping: Mapping, model: ScheduleModel, problem, arch, keeps=None) -> Mapping:
    """The schedule after `tvm_cosa.polish` under the model's objective (unchanged for CoSA's
    log-domain terms, which the cost model does not score)."""
    objective = model.objective
    if not objective.uses_cost_terms or objective.uses_cosa_terms:
        return mapping
    from .polish import polish, score_function

    checked_arch = _arch_with_keeps(arch, model) if keeps is not None else arch
    score = score_function(objective, model.lb_cycles, model.energy_ref)
    best, _, report = polish(mapping, problem, checked_arch, score,
                             min_utilization=model.min_utilization)
    best.info = {**mapping.info, "polish": report}
    return best


def _info(model: ScheduleModel, result, build_time) -> dict:
    info = {"solver": result.solver, "status": result.status, "objective": result.objective,
            "bound": result.bound, "gap": result.gap, "solve_time_s": result.solve_time_s,
            "build_time_s": build_time, "objective_name": model.objective.name,
            **model.stats()}
    if result.message:
        info["solver_note"] = result.message
    if hasattr(model, "latency_var"):
        x = result.values
        info["model_cycles"] = model.m.value(model.latency_var, x) * model.lb_cycles
        info["model_energy_pJ"] = model.m.value(model.energy_expr, x)
        info["lower_bound_cycles"] = model.lb_cycles
    return info


def _raise_unsolved(model, result, time_limit):
    if result.status == "infeasible":
        raise InfeasibleError(
            f"no schedule of {model.problem.name} fits {model.arch.name}: the buffers and "
            f"fanouts admit no placement of the factors ({result.solver} proved it infeasible)"
            + ("; relax min_utilization" if model.min_utilization else ""))
    if result.status == "time_limit":
        raise SolverError(f"{result.solver} found no schedule within the time limit of "
                          f"{time_limit:g} s; raise time_limit")
    raise SolverError(f"{result.solver} stopped without a schedule: {result.status} "
                      f"{result.message}".strip())


def _arch_with_keeps(arch, model):
    return arch.with_bypass({arch.levels[i].name: model.keeps[i] for i in range(arch.num_levels)})


def _check_types(problem, arch, objective):
    if not isinstance(problem, Problem):
        raise InputError(f"expected a tvm_cosa.Problem, got {type(problem).__name__}; use "
                         "Problem.conv2d / Problem.matmul / Problem.from_yaml")
    if not isinstance(arch, Architecture):
        raise InputError(f"expected a tvm_cosa.Architecture, got {type(arch).__name__}; use "
                         "tvm_cosa.preset(name) or tvm_cosa.load_architecture(path)")
    if objective is not None and not isinstance(objective, Objective):
        raise InputError(f"objective must be a tvm_cosa.Objective, got {type(objective).__name__}")


# ---------------------------------------------------------------------------------------------
# The original CoSA's interface
# ---------------------------------------------------------------------------------------------
def cosa(prob, arch, A, B, part_ratios, global_buf_idx, Z=None, *, objective=None,
         solver="auto", time_limit=None, mip_gap=None, return_mapping=False):
    """Run CoSA: tiling, temporal/spatial placement and permutation in one MILP.

    Args (as the original documents them):
        prob: the layer: a `Problem`, a CoSA problem YAML path (as `Prob(path)`), a dict with a
            `problem` key, or an object with a `.prob` dict (the original's `Prob`).
        arch: the hardware: an `Architecture`, a CoSA architecture YAML path (as `Arch(path)`),
            or a preset name.
        A: A[d][t] = 1 if dimension d (in the problem's order, R S P Q C K N for a convolution)
            indexes tensor t (Weights, Inputs, Outputs). As in the original, R and S may be 0
            for Inputs: the sliding window is handled exactly either way. Any other change
            really changes the tensors' relations (a custom problem).
        B: B[t][i] = 1 if tensor t is kept at memory level i (even mapping; the bypass pattern).
        part_ratios: part_ratios[i][t] = share of level i's entries tensor t may use.
        global_buf_idx: the level whose loop order is returned (and, with the original
            objective, the only level whose order is optimised and whose traffic is counted).
        Z: Z[t][i][j] = 1 if the temporal loops of level j count toward the tile of tensor t
            at level i (uneven mapping; the spatial loops of levels <= i always do, see
            `tvm_cosa.uneven`). Each Z[t][i] must be a prefix (1 for j <= some level).
            Default: derived from B (Z[t][i][j] = 1 for j <= i where B[t][i] = 1).
        objective: default `Objective.cosa_original()` (weights 10 / -0.1 / 1); pass
            `Objective()` for the latency / energy objective.

    Returns (factor_config, spatial_config, perm_config, run_time), the original's formats:
        factor_config[j][n]: memory level of the n-th prime factor (ascending) of dimension j; a
            dimension of size 1 has the single factor 1 at the outermost level.
        spatial_config[j][n]: 0 temporal, 1 spatial (on the X axis), 2 spatial on the Y axis.
        perm_config[j]: rank of dimension j in the loop order of level global_buf_idx,
            0 = innermost.
        run_time: the solver's time in seconds.
    With return_mapping=True the full `Mapping` (every level's order) is appended.
    """
    problem = _as_problem(prob)
    architecture = _as_architecture(arch)
    problem = problem_with_relevance(problem, A)
    keeps = _keeps_from_b(problem, architecture, B)
    tile_levels = {}
    if Z is not None:
        keeps, tile_levels = _from_z(problem, architecture, Z, keeps)
    architecture = _with_part_ratios(problem, architecture, part_ratios, keeps)
    g = _level_index(architecture, global_buf_idx)
    began = time.perf_counter()
    mapping = schedule(problem, architecture, objective=objective or Objective.cosa_original(),
                       solver=solver, time_limit=time_limit, mip_gap=mip_gap, keeps=keeps,
                       tile_levels=tile_levels, global_buffer=g)
    run_time = mapping.info.get("solve_time_s", time.perf_counter() - began)
    factor_config, spatial_config = _factor_configs(problem, architecture, mapping)
    order = mapping.levels[g].full_order(problem.dims)
    perm_config = [order.index(d) for d in problem.dims]
    out = (factor_config, spatial_config, perm_config, run_time)
    return out + (mapping,) if return_mapping else out


def _factor_configs(problem, arch, mapping):
    """Per dimension, per prime factor (ascending): its level and temporal/spatial kind."""
    factor_config, spatial_config = [], []
    top = arch.num_levels - 1
    for d in problem.dims:
        primes = prime_factors(problem.size[d]) or [1]
        places = []  # (level, kind, remaining factor) pools, innermost level first
        for i, lm in enumerate(mapping.levels):
            for kind, factors in ((0, lm.temporal), (1, lm.spatial_x), (2, lm.spatial_y)):
                if factors.get(d, 1) > 1:
                    places.append([i, kind, factors[d]])
        levels, kinds = [], []
        for p in primes:
            if p == 1:
                levels.append(top)
                kinds.append(0)
                continue
            for place in places:
                if place[2] % p == 0:
                    place[2] //= p
                    levels.append(place[0])
                    kinds.append(place[1])
                    break
        factor_config.append(levels)
        spatial_config.append(kinds)
    return factor_config, spatial_config


def _as_problem(prob) -> Problem:
    if isinstance(prob, Problem):
        return prob
    if isinstance(prob, (str, Path)):
        return Problem.from_yaml(prob)
    if isinstance(prob, MappingT):
        return Problem.from_dict(prob)
    if isinstance(getattr(prob, "prob", None), MappingT):  # the original's Prob object
        return Problem.from_dict({"problem": prob.prob}, name=Path(str(getattr(
            prob, "path", "layer"))).stem)
    raise InputError(f"prob must be a Problem, a CoSA problem YAML path or dict, got "
                     f"{type(prob).__name__}")


def _as_architecture(arch) -> Architecture:
    from .architecture_yaml import load_architecture

    if isinstance(arch, Architecture):
        return arch
    if isinstance(arch, (str, Path)):
        return load_architecture(arch)
    if getattr(arch, "path", None) is not None:  # the original's Arch object
        return load_architecture(arch.path)
    raise InputError(f"arch must be an Architecture, a CoSA architecture YAML path or a preset "
                     f"name, got {type(arch).__name__}")


def _matrix(value, rows, cols, what, hint):
    try:
        mat = [[float(v) for v in row] for row in value]
    except (TypeError, ValueError):
        raise InputError(f"{what} must be a {rows} x {cols} matrix of numbers ({hint})") from None
    if len(mat) != rows or any(len(r) != cols for r in mat):
        shape = f"{len(mat)} x {', '.join(sorted({str(len(r)) for r in mat}))}"
        raise InputError(f"{what} must be {rows} x {cols} ({hint}), got {shape}")
    return mat


def problem_with_relevance(problem: Problem, A) -> Problem:
    """The problem whose tensors follow CoSA's A (rows: dims in order; columns: tensors)."""
    from .problem import Tensor

    names = problem.tensor_names
    mat = _matrix(A, len(problem.dims), len(names), "A",
                  f"rows {' '.join(problem.dims)}, columns {' '.join(names)}")
    if any(v not in (0.0, 1.0) for row in mat for v in row):
        raise InputError("A must hold only 0 and 1")
    wanted = {t: {d for d, row in zip(problem.dims, mat) if row[k]} for k, t in enumerate(names)}
    tensors, changed = [], False
    for t in problem.tensors:
        windowed = {d for axis in t.axes if len(axis) > 1 for d, _ in axis}
        keep = wanted[t.name] | {d for d in windowed if _window_partner_kept(t, d, wanted[t.name])}
        if keep == set(t.dims):
            tensors.append(t)
            continue
        changed = True
        axes = [tuple((d, c) for d, c in axis if d in keep) for axis in t.axes]
        axes = [a for a in axes if a]
        covered = {d for a in axes for d, _ in a}
        axes += [((d, 1),) for d in problem.dims if d in keep - covered]
        tensors.append(Tensor(t.name, tuple(axes), t.is_output))
    if not changed:
        return problem
    return Problem(problem.name, "custom", problem.sizes, tuple(tensors), problem.params)


def _window_partner_kept(tensor, dim, kept):
    """The original's A marks R, S -> Inputs 0 and handles the window apart: keep a window dim
    when its partner on the same axis (P for R, Q for S) is kept."""
    for axis in tensor.axes:
        dims = [d for d, _ in axis]
        if dim in dims and len(dims) > 1:
            return any(d in kept for d in dims if d != dim)
    return False


def _keeps_from_b(problem, arch, B):
    if B is None:
        return None
    names = problem.tensor_names
    mat = _matrix(B, len(names), arch.num_levels, "B",
                  f"rows {' '.join(names)}, columns levels {' '.join(arch.level_names)}")
    return {i: frozenset(t for k, t in enumerate(names) if mat[k][i])
            for i in range(arch.num_levels)}


def _from_z(problem, arch, Z, keeps):
    """Keeps and uneven tile levels from Z[t][i][j] (each row a prefix of ones, or all zero)."""
    names, L = problem.tensor_names, arch.num_levels
    if not isinstance(Z, (list, tuple)) or len(Z) != len(names):
        raise InputError(f"Z must have one {L} x {L} matrix per tensor ({' '.join(names)})")
    kept, tiles = {i: set() for i in range(L)}, {}
    for k, t in enumerate(names):
        mat = _matrix(Z[k], L, L, f"Z[{t}]", "Z[t][level][loop level]")
        for i, row in enumerate(mat):
            ones = [j for j, v in enumerate(row) if v]
            if not ones:
                continue
            if ones != list(range(len(ones))):
                raise InputError(f"Z[{t}][{i}] = {row} is not a prefix of ones: a tile spans the "
                                 "loops of every level up to some level")
            if keeps is not None and t not in keeps[i]:
                raise InputError(f"Z gives {t} a tile at level {arch.levels[i].name} but B "
                                 f"bypasses {t} there")
            kept[i].add(t)
            if ones[-1] != i:
                tiles[(t, i)] = ones[-1]
    return {i: frozenset(v) for i, v in kept.items()}, tiles


def _with_part_ratios(problem, arch, part_ratios, keeps):
    if part_ratios is None:
        return arch
    names = problem.tensor_names
    mat = _matrix(part_ratios, arch.num_levels, len(names), "part_ratios",
                  f"rows levels {' '.join(arch.level_names)}, columns {' '.join(names)}")
    shares = {}
    for i, lv in enumerate(arch.levels):
        if lv.entries is None:
            continue  # the backing store is unbounded; its ratios do not matter
        kept = keeps[i] if keeps is not None else lv.keeps
        level_shares = {}
        for k, t in enumerate(names):
            r = mat[i][k]
            if t not in kept:
                continue
            if not 0 < r <= 1:
                raise InputError(f"part_ratios[{i}][{k}] = {r:g}: level {lv.name} keeps {t}, so "
                                 f"its share must be in (0, 1] (or bypass {t} there in B)")
            level_shares[t] = r
        if level_shares:
            shares[lv.name] = level_shares
    return arch.with_shares(shares)


def _level_index(arch, idx):
    if isinstance(idx, str):
        return arch.level_index(idx)
    if not isinstance(idx, int) or isinstance(idx, bool) or not 0 <= idx < arch.num_levels:
        raise InputError(f"global_buf_idx must be a level index 0..{arch.num_levels - 1} "
                         f"({', '.join(arch.level_names)}), got {idx!r}")
    return idx
