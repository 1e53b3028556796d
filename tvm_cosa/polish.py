"""Exact-model polish of a solved schedule: a local search judged by the built-in cost model.

The MILP (`tvm_cosa.formulation`) judges schedules by estimates: access counts are 2^(log sums)
under tangent cuts, and it does not see every reuse Timeloop counts (the halo a neighbouring
instance held the step before, sliding-window reuse across time). Two schedules it rates equal
can differ by several percent in Timeloop's cycles or energy. The polish starts from the MILP's
schedule and takes single moves (one prime factor to another level or mesh axis, one loop to
another position in its level's order, two factors in two places exchanged) while the cost
model (`tvm_cosa.cost_model`, equal to timeloop-model) says the schedule gets strictly better.
Every candidate passes the validity checker first, so the result is as valid and as writable as
the MILP's, and it is never worse by the exact model. Moves are tried in a fixed order, within
an evaluation budget and half a second (only a layer on a large mesh meets the latter).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

from .cost_model import evaluate
from .mapping import LevelMapping, Mapping
from .problem import prime_factors
from .validity import check_mapping

DEFAULT_BUDGET = 1500  # cost-model evaluations (about 50 us each on a ResNet-50 layer)
# ... and seconds, a safety net; results depend on machine speed where it is reached (a few
# simba layers under the latency objective)
DEFAULT_SECONDS = 0.5
TOLERANCE = 1e-9  # relative: smaller gains are rounding


@dataclass(frozen=True)
class Score:
    """What the polish minimises: the objective first, then the other metric at a tie."""

    primary: float
    secondary: float

    def better_than(self, other: "Score") -> bool:
        if self.primary < other.primary * (1 - TOLERANCE):
            return True
        return (self.primary <= other.primary * (1 + TOLERANCE)
                and self.secondary < other.secondary * (1 - TOLERANCE))


def score_function(objective, lower_bound_cycles: float, energy_reference_pJ: float
                   ) -> Callable:
    """Score of an evaluation under the MILP's cost objective (same weights, same
    normalisation: cycles over the lower bound, energy over MAC + compulsory DRAM energy)."""
    if objective.latency and not objective.energy:
        return lambda ev: Score(ev.cycles, ev.energy_pJ)
    if objective.energy and not objective.latency:
        return lambda ev: Score(ev.energy_pJ, ev.cycles)

    def weighted(ev):
        return Score(objective.latency * ev.cycles / lower_bound_cycles
                     + objective.energy * ev.energy_pJ / energy_reference_pJ, ev.cycles)
    return weighted


def _with_level(mapping: Mapping, index: int, level: LevelMapping) -> Mapping:
    levels = list(mapping.levels)  # unchanged levels are shared: nothing here mutates them
    levels[index] = level
    return Mapping(levels, mapping.tile_levels, {})


def _copy_level(lv: LevelMapping, **changes) -> LevelMapping:
    fields = dict(temporal=lv.temporal, spatial_x=lv.spatial_x, spatial_y=lv.spatial_y,
                  order=lv.order, keeps=lv.keeps)
    fields.update(changes)
    return LevelMapping(**fields)


def _slots(arch) -> list[tuple[int, str]]:
    out = []
    for i in range(arch.num_levels):
        fx, fy = arch.fanout(i)
        out.append((i, "temporal"))
        if fx > 1:
            out.append((i, "spatial_x"))
        if fy > 1:
            out.append((i, "spatial_y"))
    return out


def _placed(mapping: Mapping, arch) -> list[tuple[tuple[int, str], str, int]]:
    """(slot, dimension, prime) of every distinct prime factor in the mapping."""
    return [((i, kind), d, p) for i, kind in _slots(arch)
            for d, f in getattr(mapping.levels[i], kind).items()
            for p in sorted(set(prime_factors(f)))]


def _moved(mapping: Mapping, d: str, p: int, src, dst) -> Mapping:
    (si, sk), (di, dk) = src, dst
    source = dict(getattr(mapping.levels[si], sk))
    source[d] //= p
    if source[d] == 1:
        del source[d]
    out = _with_level(mapping, si, _copy_level(mapping.levels[si], **{sk: source}))
    target = dict(getattr(out.levels[di], dk))
    target[d] = target.get(d, 1) * p
    return _with_level(out, di, _copy_level(out.levels[di], **{dk: target}))


def factor_moves(mapping: Mapping, arch) -> Iterator[Mapping]:
    """Each prime factor of each loop, moved to every other slot (level and kind)."""
    slots = _slots(arch)
    for src, d, p in _placed(mapping, arch):
        for dst in slots:
            if dst != src:
                yield _moved(mapping, d, p, src, dst)


def swap_moves(mapping: Mapping, arch) -> Iterator[Mapping]:
    """Two factors in two slots exchanged (e.g. K at DRAM with P in the buffer): what a single
    move cannot reach when the buffer has room for the exchange but not for either half."""
    placed = _placed(mapping, arch)
    for a, (slot_a, d, p) in enumerate(placed):
        for slot_b, e, q in placed[a + 1:]:
            if slot_a != slot_b and (d, p) != (e, q):
                yield _moved(_moved(mapping, d, p, slot_a, slot_b), e, q, slot_b, slot_a)


def order_moves(mapping: Mapping, dims) -> Iterator[Mapping]:
    """Each temporal loop of a level with several, moved to every other place in the order."""
    for i, lv in enumerate(mapping.levels):
        loops = [d for d in lv.full_order(dims) if lv.temporal.get(d, 1) > 1]
        if len(loops) < 2:
            continue
        for d in loops:
            rest = [x for x in loops if x != d]
            current = loops.index(d)
            for pos in range(len(loops)):
                if pos != current:
                    order = tuple(rest[:pos] + [d] + rest[pos:])
                    yield _with_level(mapping, i, _copy_level(lv, order=order))


def polish(mapping: Mapping, problem, arch, score: Callable, *,
           min_utilization: Optional[float] = None, budget: int = DEFAULT_BUDGET,
           seconds: float = DEFAULT_SECONDS):
    """(best mapping, its evaluation, report): first-improvement local search from `mapping`
    (which must be valid on `arch`) by `score` of the cost model's evaluation, within `budget`
    evaluations and `seconds` (`report["converged"]`: no better neighbour was left)."""
    began = time.perf_counter()
    best = _strip_info(mapping)
    best_eval = evaluate(best, problem, arch)
    start_eval = best_eval
    best_score = score(best_eval)
    dims = list(problem.dims)
    least_macs = (min_utilization or 0) * arch.num_macs
    room = _spatial_room(problem, arch)
    evaluations, moves, improved = 1, 0, True
    deadline, cut = began + seconds, False
    while improved and evaluations < budget and time.perf_counter() < deadline:
        improved = False
        for candidate in _neighbours(best, arch, dims):
            if (not _fits_mesh(candidate, room) or candidate.utilized_macs() < least_macs
                    or check_mapping(candidate, problem, arch)):
                continue
            ev = evaluate(candidate, problem, arch)
            evaluations += 1
            if ev.valid:
                s = score(ev)
                if s.better_than(best_score):
                    best, best_eval, best_score, improved = candidate, ev, s, True
                    moves += 1
                    break
            if evaluations >= budget or time.perf_counter() >= deadline:
                cut = True
                break
    report = {"moves": moves, "evaluations": evaluations,
              "time_s": time.perf_counter() - began,
              "cycles_before": start_eval.cycles, "energy_before_pJ": start_eval.energy_pJ,
              "cycles": best_eval.cycles, "energy_pJ": best_eval.energy_pJ,
              "converged": not improved and not cut}
    return best, best_eval, report


def _spatial_room(problem, arch) -> dict:
    """{(level, kind): (fanout, allowed dims)} of every mesh axis, for a cheap first test."""
    return {(i, kind): (fan, lv.allowed_spatial_dims(problem, axis))
            for i, lv in enumerate(arch.levels)
            for kind, axis, fan in zip(("spatial_x", "spatial_y"), "XY", arch.fanout(i))}


def _fits_mesh(mapping: Mapping, room: dict) -> bool:
    """The spatial factors fit each axis and use only its allowed dimensions (the validity
    checker says the same, at much greater cost: most rejected moves fail here)."""
    for (i, kind), (fan, allowed) in room.items():
        factors = getattr(mapping.levels[i], kind)
        if math.prod(factors.values()) > fan or any(f > 1 and d not in allowed
                                                     for d, f in factors.items()):
            return False
    return True


def _neighbours(mapping, arch, dims):
    yield from order_moves(mapping, dims)
    yield from factor_moves(mapping, arch)
    yield from swap_moves(mapping, arch)


def _strip_info(mapping: Mapping) -> Mapping:
    return Mapping(list(mapping.levels), dict(mapping.tile_levels), {})
