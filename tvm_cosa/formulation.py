"""CoSA's scheduling problem as a mixed-integer *linear* program, solver-neutral.

Decisions (per prime factor p of each dimension d, identical primes counted together so that
they need no symmetry breaking): an integer count n[d, p, slot] of how many copies of p sit in
each slot, a slot being "temporal at level i" or "spatial on the X / Y axis of the fanout below
level i" (only where that fanout exceeds 1 and the level allows d there). Every product of
factors is a sum of log2 terms, so tile sizes, fanouts and cycle counts are linear in n.

Constraints
- each dimension's factors are all placed; spatial factors fit each link's X and Y fanout;
  a dimension is spatial on one axis per fanout (a binary picks X or Y: a Timeloop map gives
  each dimension one spatial factor per level);
- capacity: every kept tile fits its share of the level (per tensor, in log2; counted in rows
  at a row-addressed level, `MemoryLevel.row_dims`: words over the spatial factor of the row
  dimension, Gemmini's layout, so exact); when several
  tensors share a level without user shares, their *sum* must fit (Timeloop's rule): the set
  {sum_t 2^u_t <= C} is convex in the log sizes u, so chords between points of its boundary (two
  tensors) or the convex hull of share boxes (three or more) give a linear inner approximation:
  never wrong, and within a few percent of the full capacity;
- the input halo is exact: each sliding-window axis (extent = stride*(p-1) + dilation*(r-1) + 1)
  gets a one-hot over the divisor pairs (p, r) of its cumulative tile, tied to the log sums by
  equalities, so its log extent is a linear function of that one-hot;
- loop order at every level above the innermost: for convolutions and matmuls each dimension
  is irrelevant to at most one tensor, so the innermost loops of a level can give reuse to one
  tensor only (for other operators the model below stays valid, only conservative). A one-hot sigma[level, tensor] picks that ("stationary") tensor, whose irrelevant
  loops go innermost; a binary h[tensor, level] says the level has a loop relevant to the tensor.
  A child tile of tensor t is refilled by every temporal loop above it except the irrelevant
  loops reached before the first relevant one; `saved` variables (one-sided linearisation of
  log factor x binary) subtract exactly those. This is Timeloop's reuse rule, across levels.
  (The innermost level's order changes no count: the MACs read their operands every cycle.)

Objective (weights in `Objective`)
- CoSA's terms (log2 domain): compute (log cycles), utilization (log tile sizes below the global
  buffer, negative weight) and traffic; `Objective.cosa_original()` is the reference 10/-0.1/1;
- latency and energy in the linear domain: access counts are 2^(linear log expression); each
  gets a variable y >= tangent cuts of 2^v at several points (exact at the points, at most
  1.5 % low between them near the best values, 5.8 % further away). Latency L >= compute
  cycles and L >= traffic / bandwidth of every bandwidth-limited level (Timeloop's
  throttling); energy = sum of accesses x energy per access. Both are normalised by the
  layer's lower bounds.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Optional

from .architecture import Architecture
from .errors import InfeasibleError, InputError
from .mapping import LevelMapping, Mapping
from .problem import Problem, prime_factors

INF = math.inf


# ---------------------------------------------------------------------------------------------
# A solver-neutral sparse MILP (a dict per row: the models have a few hundred variables)
# ---------------------------------------------------------------------------------------------
class Lin(dict):
    """A linear expression: {variable index: coefficient} plus a constant."""

    __slots__ = ("const",)

    def __init__(self, terms=(), const=0.0):
        super().__init__(terms)
        self.const = float(const)

    @classmethod
    def var(cls, index: int, coef: float = 1.0) -> "Lin":
        return cls({index: coef})

    @classmethod
    def total(cls, parts) -> "Lin":
        out = cls()
        for p in parts:
            out.add(p)
        return out

    def copy(self) -> "Lin":
        return Lin(self, self.const)

    def add(self, other, scale: float = 1.0) -> "Lin":
        """In-place self += scale * other (other: Lin or number)."""
        if isinstance(other, Lin):
            for i, c in other.items():
                self[i] = self.get(i, 0.0) + scale * c
            self.const += scale * other.const
        else:
            self.const += scale * float(other)
        return self

    def __add__(self, other):
        return self.copy().add(other)

    __radd__ = __add__

    def __sub__(self, other):
        return self.copy().add(other, -1.0)

    def __rsub__(self, other):
        return (-self).add(other)

    def __neg__(self):
        return self * -1.0

    def __mul__(self, k):
        return Lin({i: c * k for i, c in self.items()}, self.const * k)

    __rmul__ = __mul__

    def key(self) -> tuple:
        """Hashable identity (for caching derived variables of the same expression)."""
        return (round(self.const, 12),) + tuple(sorted((i, round(c, 12)) for i, c in self.items()
                                                       if c != 0.0))


@dataclass
class Milp:
    """min cost.x + const  s.t.  row_lo <= A x <= row_hi,  lb <= x <= ub,  some x_j integer."""

    names: list = field(default_factory=list)
    lb: list = field(default_factory=list)
    ub: list = field(default_factory=list)
    integer: list = field(default_factory=list)
    cost: list = field(default_factory=list)
    rows: list = field(default_factory=list)  # (terms dict, lo, hi, name)
    obj_const: float = 0.0

    @property
    def num_vars(self) -> int:
        return len(self.names)

    @property
    def num_constraints(self) -> int:
        return len(self.rows)

    @property
    def num_integer(self) -> int:
        return sum(self.integer)

    def add_var(self, name: str, lb: float = 0.0, ub: float = INF, integer: bool = False,
                cost: float = 0.0) -> Lin:
        self.names.append(name)
        self.lb.append(float(lb))
        self.ub.append(float(ub))
        self.integer.append(bool(integer))
        self.cost.append(float(cost))
        return Lin.var(len(self.names) - 1)

    def add_binary(self, name: str) -> Lin:
        return self.add_var(name, 0.0, 1.0, integer=True)

    def add_row(self, expr: Lin, lo: float = -INF, hi: float = INF, name: str = "") -> None:
        """lo <= expr <= hi (the expression's constant moves to the bounds)."""
        terms = {i: c for i, c in expr.items() if c != 0.0}
        lo, hi = lo - expr.const, hi - expr.const
        if not terms:
            if lo > 1e-9 or hi < -1e-9:
                raise ValueError(f"constant constraint {name!r} cannot hold: {lo} <= 0 <= {hi}")
            return
        self.rows.append((terms, lo, hi, name))

    def le(self, expr: Lin, rhs: float = 0.0, name: str = "") -> None:
        self.add_row(expr, -INF, rhs, name)

    def ge(self, expr: Lin, rhs: float = 0.0, name: str = "") -> None:
        self.add_row(expr, rhs, INF, name)

    def eq(self, expr: Lin, rhs: float = 0.0, name: str = "") -> None:
        self.add_row(expr, rhs, rhs, name)

    def minimize(self, expr: Lin, weight: float = 1.0) -> None:
        for i, c in expr.items():
            self.cost[i] += weight * c
        self.obj_const += weight * expr.const

    def bounds(self, expr: Lin) -> tuple[float, float]:
        """Interval of the expression's values over the variable bounds."""
        lo = hi = expr.const
        for i, c in expr.items():
            a, b = c * self.lb[i], c * self.ub[i]
            lo += min(a, b)
            hi += max(a, b)
        return lo, hi

    def value(self, expr: Lin, x) -> float:
        return expr.const + sum(c * x[i] for i, c in expr.items())

    def objective_value(self, x) -> float:
        return self.obj_const + sum(c * v for c, v in zip(self.cost, x))

    def csr(self):
        """Row-wise arrays (start, index, value) of the constraint matrix."""
        start, index, value = [0], [], []
        for terms, _, _, _ in self.rows:
            for i, c in terms.items():
                index.append(i)
                value.append(c)
            start.append(len(index))
        return start, index, value


# ---------------------------------------------------------------------------------------------
# Objective
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Objective:
    """Weights of the objective terms. Hashable; `key()` identifies it in caches.

    latency:     cycles / lower bound (max of compute cycles and traffic / bandwidth per level).
    energy:      energy / (MAC energy + compulsory DRAM energy).
    compute, utilization, traffic: CoSA's log2-domain terms (original weights 10, -0.1, 1).
    """

    latency: float = 1.0
    energy: float = 0.25
    compute: float = 0.0
    utilization: float = 0.0
    traffic: float = 0.0
    name: str = "latency-energy"

    def __post_init__(self):
        weights = (self.latency, self.energy, self.compute, self.utilization, self.traffic)
        if not all(isinstance(w, (int, float)) and math.isfinite(w) for w in weights):
            raise InputError(f"objective weights must be finite numbers, got {weights}")
        if self.latency < 0 or self.energy < 0:
            raise InputError("latency and energy weights must be >= 0 (they are minimised)")
        if not any(weights):
            raise InputError("every objective weight is 0: nothing to optimise")

    @classmethod
    def cosa_original(cls) -> "Objective":
        """The original CoSA objective: 10 x compute + (-0.1) x utilization + 1 x traffic."""
        return cls(latency=0.0, energy=0.0, compute=10.0, utilization=-0.1, traffic=1.0,
                   name="cosa-original")

    @classmethod
    def preset(cls, name: str) -> "Objective":
        """By name: "default" (latency + energy), "cosa" (the original), "latency", "energy"."""
        presets = {"default": cls, "latency-energy": cls, "cosa": cls.cosa_original,
                   "cosa-original": cls.cosa_original, "latency": cls.latency_only,
                   "energy": cls.energy_only}
        if name not in presets:
            raise InputError(f"unknown objective {name!r}; expected one of "
                             f"{sorted(set(presets))}")
        return presets[name]()

    @classmethod
    def latency_only(cls) -> "Objective":
        return cls(latency=1.0, energy=0.0, name="latency")

    @classmethod
    def energy_only(cls) -> "Objective":
        return cls(latency=0.0, energy=1.0, name="energy")

    @property
    def uses_cost_terms(self) -> bool:
        return bool(self.latency or self.energy)

    @property
    def uses_cosa_terms(self) -> bool:
        return bool(self.compute or self.utilization or self.traffic)

    def key(self) -> tuple:
        return ("objective", self.latency, self.energy, self.compute, self.utilization,
                self.traffic)


# ---------------------------------------------------------------------------------------------
# Energy per access (pJ per word) for the objective
# ---------------------------------------------------------------------------------------------
def access_energy_table(arch: Architecture, cluster_shared: bool = True):
    """(MAC pJ, [read pJ/word per level], [write pJ/word per level]) for the objective.

    The architecture's own energies when given, else the cost model's estimate (Timeloop's
    built-in model): per vector access, divided by the block size (one vector access moves a
    block) and, with `cluster_shared`, by the cluster size (Timeloop spreads an access over the
    utilized instances of a cluster: exact when the whole cluster is used; the MILP models the
    spread itself, `ScheduleModel.cluster_spread_log`).
    """
    from .cost_model.energy import arithmetic_energy, level_energies

    reads, writes = [], []
    for lv in arch.levels:
        r, w, _ = level_energies(lv)
        words = max(1, lv.block_size) * (max(1, lv.cluster_size) if cluster_shared else 1)
        reads.append(r / words)
        writes.append(w / words)
    return arithmetic_energy(arch.arithmetic)[0], reads, writes


# ---------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------
TEMPORAL, SPATIAL_X, SPATIAL_Y = "T", "X", "Y"
LN2 = math.log(2.0)
TANGENT_STEP = 0.5  # log2 spacing of the tangent cuts of 2^v (<= 1.5 % below the true value)
MAX_TANGENTS = 32
SHARE_GRID = 32  # two tensors sharing a level: chords through shares k/32 (and the extremes)


def divisors(n: int) -> list[int]:
    return [k for k in range(1, n + 1) if n % k == 0]


def prime_counts(n: int) -> dict[int, int]:
    out: dict[int, int] = {}
    for p in prime_factors(n):
        out[p] = out.get(p, 0) + 1
    return out


@dataclass
class Access:
    """One access count of the cost model: 2^log_total accesses of `tensor` at `level`."""

    level: int
    tensor: str
    kind: str  # read | fill | update
    log_total: Lin
    log_per_instance: Lin
    from_macs: bool = False  # the arithmetic's operand accesses at the first kept level


def used_words(problem: Problem, tensor) -> int:
    """Words of `tensor` the layer touches: per axis, the distinct values of its index sum (a
    strided 1x1 convolution skips input rows its bounding box contains)."""
    words = 1
    for axis in tensor.axes:
        values = {0}
        for d, c in axis:
            values = {v + c * x for v in values for x in range(problem.size[d])}
        words *= len(values)
    return words


def tangent_points(lo: float, hi: float) -> list[float]:
    """Where to cut 2^v: every 0.5 in the 4 units above lo, where good schedules are, then
    every 1 (coarser only if that would exceed MAX_TANGENTS points)."""
    near = [a for a in (lo + TANGENT_STEP * k for k in range(int(4 / TANGENT_STEP))) if a < hi]
    start = lo + 4
    far_steps = max(0, math.ceil(hi - start - 1e-9))
    far_steps = min(far_steps, MAX_TANGENTS - len(near) - 1)
    far = [start + (hi - start) * k / far_steps for k in range(far_steps)] if far_steps > 0 else []
    return near + far + [hi]


class ScheduleModel:
    """The MILP of one layer on one architecture, and the decoding of a solution to a Mapping.

    keeps: {level: tensors} overrides the architecture's bypass pattern (CoSA's B).
    tile_levels: {(tensor, level): j}: uneven mapping (CoSA's Z), the tile of `tensor` at `level`
        spans the loops of levels 0..j.
    global_buffer: the level of CoSA's permutation and traffic terms (default: the level below
        the outermost).
    min_utilization: fraction of the MACs the spatial factors must use (None: no requirement).
    """

    def __init__(self, problem: Problem, arch: Architecture, objective: Optional[Objective] = None,
                 *, keeps=None, tile_levels=None, global_buffer=None, min_utilization=None):
        self.problem, self.arch = problem, arch
        self.objective = objective or Objective()
        self.L = arch.num_levels
        self.top = self.L - 1
        self.size = problem.size
        self.keeps_override = keeps is not None
        self.keeps = {i: frozenset(keeps[i]) if keeps is not None else lv.keeps
                      for i, lv in enumerate(arch.levels)}
        self.tile_levels = {k: v for k, v in dict(tile_levels or {}).items() if k[1] != v}
        self.g = max(0, self.top - 1) if global_buffer is None else int(global_buffer)
        self.min_utilization = min_utilization
        self.dims = [d for d in problem.dims if self.size[d] > 1]
        self.rel = {t.name: {d for d in t.dims if self.size[d] > 1} for t in problem.tensors}
        self.chain = {t.name: [i for i in range(self.L) if t.name in self.keeps[i]]
                      for t in problem.tensors}
        self.m = Milp()
        self._cache: dict = {}
        self.notes: list[str] = []
        check_request(self)
        self._build()

    # ---- small queries -------------------------------------------------------------------
    def tile_level(self, tensor: str, level: int) -> int:
        return self.tile_levels.get((tensor, level), level)

    def kept(self, level: int) -> list[str]:
        return [t for t in self.problem.tensor_names if t in self.keeps[level]]

    def spatial_axes(self, level: int):
        """[(axis, fanout, allowed dims)] of the fanout below `level` (only axes wider than 1)."""
        lv = self.arch.levels[level]
        fx, fy = self.arch.fanout(level)
        out = []
        for axis, fan, name in ((SPATIAL_X, fx, "X"), (SPATIAL_Y, fy, "Y")):
            if fan > 1:
                out.append((axis, fan, lv.allowed_spatial_dims(self.problem, name)))
        return out

    def lower_bound_cycles(self) -> float:
        """max(MACs / MAC count, compulsory traffic / bandwidth at the outermost level)."""
        top = self.arch.levels[self.top]
        reads = sum(used_words(self.problem, t) for t in self.problem.tensors if not t.is_output)
        writes = sum(used_words(self.problem, t) for t in self.problem.tensors if t.is_output)
        bound = self.problem.macs / self.arch.num_macs
        for words, bw in ((reads, top.read_bandwidth), (writes, top.write_bandwidth),
                          (reads + writes, top.shared_bandwidth)):
            if bw:
                bound = max(bound, words / bw)
        return bound

    # ---- building ------------------------------------------------------------------------
    def _build(self):
        obj = self.objective
        self.order_levels: set[int] = set()
        if obj.uses_cost_terms:
            self.order_levels |= set(range(1, self.L))
        if obj.traffic and 0 < self.g <= self.top:
            self.order_levels.add(self.g)
        self._place_factors()
        self._fanout_constraints()
        self._capacity_constraints()
        total = Lin()
        if obj.uses_cost_terms:
            total.add(self._cost_objective())
        if obj.compute:
            total.add(self.log_compute(), obj.compute)
        if obj.utilization:
            total.add(self._cosa_utilization(), obj.utilization)
        if obj.traffic:
            total.add(self._cosa_traffic(), obj.traffic)
        self.m.minimize(total)

    def _place_factors(self):
        """Integer n[d, p, slot]: copies of prime p of dimension d placed in each slot."""
        m = self.m
        self.n: dict[tuple, Lin] = {}
        self.groups: list[tuple[str, int, int]] = []
        for d in self.dims:
            for p, count in prime_counts(self.size[d]).items():
                self.groups.append((d, p, count))
                parts = []
                for slot in self._slots(d):
                    ub = count if slot[0] == TEMPORAL else min(
                        count, int(math.log(slot[2]) / math.log(p) + 1e-9))
                    if ub <= 0:
                        continue
                    key = (d, p, slot[:2])
                    self.n[key] = m.add_var(f"n[{d}{p},{slot[0]}{slot[1]}]", 0, ub, integer=True)
                    parts.append(self.n[key])
                m.eq(Lin.total(parts), count, f"place[{d}{p}]")

    def _slots(self, d):
        out = []
        for i in range(self.L):
            out.append((TEMPORAL, i, None))
            for axis, fan, ok in self.spatial_axes(i):
                if d in ok:
                    out.append((axis, i, fan))
        return out

    def _log_sum(self, d, kinds, level) -> Lin:
        out = Lin()
        for dd, p, _ in self.groups:
            if dd != d:
                continue
            for kind in kinds:
                v = self.n.get((d, p, (kind, level)))
                if v is not None:
                    out.add(v, math.log2(p))
        return out

    def TL(self, d, level) -> Lin:
        """log2 of the temporal factor of d at a level."""
        key = ("TL", d, level)
        if key not in self._cache:
            self._cache[key] = self._log_sum(d, (TEMPORAL,), level)
        return self._cache[key]

    def SL(self, d, level) -> Lin:
        """log2 of the spatial factor (X and Y) of d at a level."""
        key = ("SL", d, level)
        if key not in self._cache:
            self._cache[key] = self._log_sum(d, (SPATIAL_X, SPATIAL_Y), level)
        return self._cache[key]

    def E(self, d, level) -> Lin:
        """log2 of d's extent in a tile spanning levels 0..level."""
        key = ("E", d, level)
        if key not in self._cache:
            out = Lin()
            for i in range(level + 1):
                out.add(self.TL(d, i)).add(self.SL(d, i))
            self._cache[key] = out
        return self._cache[key]

    def spatial_log(self, levels, dims=None) -> Lin:
        dims = self.dims if dims is None else dims
        return Lin.total(self.SL(d, i) for i in levels for d in dims)

    def temporal_log(self, level, dims=None) -> Lin:
        dims = self.dims if dims is None else dims
        return Lin.total(self.TL(d, level) for d in dims)

    def log_compute(self) -> Lin:
        """log2(compute cycles) = sum of every temporal factor."""
        return Lin.total(self.temporal_log(i) for i in range(self.L))

    # ---- tiles ---------------------------------------------------------------------------
    def tile_log(self, tensor: str, level: int) -> Lin:
        """log2 of the words of `tensor`'s tile at `level` (input halo exact)."""
        tau = self.tile_level(tensor, level)
        t = self.problem.tensor(tensor)
        return Lin.total(self._axis_log(t, a, tau) for a in range(len(t.axes)))

    def _axis_log(self, t, a, tau) -> Lin:
        key = ("axis", t.name, a, tau)
        if key in self._cache:
            return self._cache[key]
        terms = [(d, c) for d, c in t.axes[a] if self.size[d] > 1]
        if not terms:
            out = Lin()
        elif tau >= self.top:  # every factor is inside: the whole axis
            out = Lin(const=math.log2(sum(c * (self.size[d] - 1) for d, c in terms) + 1))
        elif len(terms) == 1 and terms[0][1] == 1:
            out = self.E(terms[0][0], tau)
        else:
            out = self._window_one_hot(t, a, tau, terms)
        self._cache[key] = out
        return out

    def _window_one_hot(self, t, a, tau, terms) -> Lin:
        """Exact log extent of sum_k c_k * (tile_k - 1) + 1 via a one-hot over divisor tuples."""
        m = self.m
        choices = list(itertools.product(*(divisors(self.size[d]) for d, _ in terms)))
        ys = [m.add_binary(f"win[{t.name}{a},L{tau},{'x'.join(map(str, ch))}]")
              for ch in choices]
        m.eq(Lin.total(ys), 1, f"win1[{t.name}{a},L{tau}]")
        for k, (d, _) in enumerate(terms):
            tie = Lin.total(y * math.log2(ch[k]) for y, ch in zip(ys, choices))
            m.eq(tie - self.E(d, tau), 0, f"wintie[{t.name}{a},{d},L{tau}]")
        return Lin.total(
            y * math.log2(sum(c * (ch[k] - 1) for k, (_, c) in enumerate(terms)) + 1)
            for y, ch in zip(ys, choices))

    # ---- constraints ---------------------------------------------------------------------
    def _fanout_constraints(self):
        m = self.m
        all_spatial = Lin()
        for i in range(self.L):
            for axis, fan, _ in self.spatial_axes(i):
                expr = Lin.total(v * math.log2(p) for (d, p, (kind, lvl)), v in self.n.items()
                                 if kind == axis and lvl == i)
                all_spatial.add(expr)
                m.le(expr, math.log2(fan + 0.5), f"fanout[L{i}{axis}]")
            self._one_axis_per_dim(i)
        if self.min_utilization:
            need = math.log2(self.min_utilization * self.arch.num_macs)
            m.ge(all_spatial, need - 1e-9, "min_utilization")

    def _one_axis_per_dim(self, i):
        """A Timeloop map gives each dimension one spatial factor per level, on X or on Y (the
        `split` of its permutation): a binary per dimension allowed on both axes picks one."""
        for d in self.dims:
            on = {axis: [(p, self.n[(d, p, (axis, i))]) for dd, p, _ in self.groups
                         if dd == d and (d, p, (axis, i)) in self.n]
                  for axis in (SPATIAL_X, SPATIAL_Y)}
            if not on[SPATIAL_X] or not on[SPATIAL_Y]:
                continue
            on_x = self.m.add_binary(f"onX[{d},L{i}]")
            for p, v in on[SPATIAL_X]:
                self.m.le(v - on_x * self.m.ub[next(iter(v))], 0, f"axisX[{d}{p},L{i}]")
            for p, v in on[SPATIAL_Y]:
                ub = self.m.ub[next(iter(v))]
                self.m.le(v + on_x * ub, ub, f"axisY[{d}{p},L{i}]")

    def _capacity_constraints(self):
        """Capacity in words, or in rows at a row-addressed level (then the same model with
        rows for words: exact, since a tile's rows are its words over a spatial factor)."""
        m = self.m
        for i, lv in enumerate(self.arch.levels):
            kept = self.kept(i)
            if lv.entries is None or not kept:
                continue
            if lv.row_capacity is None:
                total = lv.entries
                logs = {t: self.tile_log(t, i) for t in kept}
            else:
                total = lv.row_capacity
                logs = {t: self.tile_log(t, i) - self._row_width_log(t, i) for t in kept}
            caps = {t: math.floor(total * lv.share.get(t, 1.0)) for t in kept}
            for t in kept:
                m.le(logs[t], math.log2(caps[t] + 0.5), f"cap[L{i},{t}]")
            if len(kept) >= 2 and sum(caps.values()) > total:
                if len(kept) == 2:
                    self._shared_capacity_chords(i, total, [logs[t] for t in kept])
                else:
                    self._shared_capacity_hull(i, total, [logs[t] for t in kept])

    def _row_width_log(self, tensor, level) -> Lin:
        """log2 of the words one row of `tensor`'s tile holds at a row-addressed level: the
        spatial factor of its row dimensions inside the tile (at most a row, `block_size`)."""
        lv = self.arch.levels[level]
        tau = self.tile_level(tensor, level)
        dims = lv.row_dims_of(self.problem, tensor) & set(self.dims)
        width = Lin.total(self.SL(d, j) for d in sorted(dims) for j in range(tau + 1))
        if width:
            self.m.le(width, math.log2(lv.block_size), f"row_width[L{level},{tensor}]")
        return width

    def _shared_capacity_chords(self, i, entries, logs):
        """2^u + 2^v <= C: chords between boundary points (a linear inner approximation)."""
        u, v = logs
        cap = entries + 0.5  # tiles are integers: sum <= C  <=>  sum < C + 0.5
        firsts = {1, entries - 1} | {max(1, round(entries * k / SHARE_GRID))
                                    for k in range(1, SHARE_GRID)}
        firsts |= {max(1, round(entries / 2 ** k)) for k in range(6, 12)}
        firsts |= {entries - s for s in set(firsts)}
        points = sorted(s for s in firsts if 1 <= s <= entries - 1)
        pts = [(math.log2(s), math.log2(cap - s)) for s in points]
        for (u0, v0), (u1, v1) in zip(pts, pts[1:]):
            slope = (v1 - v0) / (u1 - u0)
            self.m.le(v - u * slope, v0 - slope * u0, f"share[L{i}]")
        self.m.le(u, math.log2(cap - 1), f"share_u[L{i}]")
        self.m.le(v, math.log2(cap - 1), f"share_v[L{i}]")
        self.notes.append(f"level {self.arch.levels[i].name}: shared capacity by chords")

    def _shared_capacity_hull(self, i, entries, logs, grid=8):
        """sum_t 2^u_t <= C for 3+ tensors: the convex hull of boxes [0, log2(w_t C)] over a
        grid of shares w (sum w = 1), written with the usual disjunctive lifting (exact hull)."""
        m, n = self.m, len(logs)
        grid = min(grid, entries)  # entries >= n (checked), so every grid point gets >= 1 word
        comps = [c for c in itertools.product(range(1, grid + 1), repeat=n) if sum(c) == grid]
        lams, zs = [], [[] for _ in range(n)]
        for k, comp in enumerate(comps):
            caps = [math.floor(entries * c / grid) for c in comp]
            if min(caps) < 1:
                continue
            lam = m.add_var(f"shareλ[L{i},{k}]", 0, 1)
            lams.append(lam)
            for t in range(n):
                z = m.add_var(f"sharez[L{i},{k},{t}]", 0, math.log2(caps[t]))
                m.le(z - lam * math.log2(caps[t]), 0)
                zs[t].append(z)
        m.eq(Lin.total(lams), 1, f"share_hull[L{i}]")
        for t in range(n):
            m.eq(logs[t] - Lin.total(zs[t]), 0)
        self.notes.append(f"level {self.arch.levels[i].name}: shared capacity by share hull")

    # ---- loop order and reuse ------------------------------------------------------------
    def _irrelevant_dims(self, tensor):
        return [d for d in self.dims if d not in self.rel[tensor]]

    def sigma(self, level) -> dict:
        """One-hot (at most one) over tensors: whose irrelevant loops are innermost at `level`."""
        key = ("sigma", level)
        if key not in self._cache:
            out = {}
            if level in self.order_levels:
                for t in self.problem.tensor_names:
                    if self.temporal_log(level, self._irrelevant_dims(t)):
                        out[t] = self.m.add_binary(f"sigma[L{level},{t}]")
                if len(out) > 1:
                    self.m.le(Lin.total(out.values()), 1, f"sigma1[L{level}]")
            self._cache[key] = out
        return self._cache[key]

    def has_relevant_loop(self, tensor, level) -> Lin:
        """Binary h: 1 if `level` has a temporal loop relevant to `tensor` (0 if it cannot)."""
        key = ("h", tensor, level)
        if key not in self._cache:
            counts = [(v, self.m.ub[next(iter(v))]) for (d, p, (kind, lvl)), v in self.n.items()
                      if kind == TEMPORAL and lvl == level and d in self.rel[tensor]]
            h = Lin()
            if counts:
                h = self.m.add_binary(f"h[{tensor},L{level}]")
                for v, ub in counts:
                    self.m.ge(h - v * (1.0 / ub), 0)
            self._cache[key] = h
        return self._cache[key]

    def saved(self, tensor, start, level) -> Lin:
        """log2 of the loops at `level` that do not refill a tile of `tensor` whose loops end at
        level `start`: its irrelevant loops, if no level in between has a relevant loop and
        this level either has none or puts the irrelevant ones innermost (sigma)."""
        key = ("saved", tensor, start, level)
        if key in self._cache:
            return self._cache[key]
        m = self.m
        irr = self.temporal_log(level, self._irrelevant_dims(tensor))
        big = m.bounds(irr)[1]
        if big <= 1e-12:
            self._cache[key] = Lin()
            return self._cache[key]
        s = m.add_var(f"saved[{tensor},{start},L{level}]", 0, big)
        m.le(s - irr, 0)
        sig = self.sigma(level).get(tensor, Lin())
        h = self.has_relevant_loop(tensor, level)
        # s <= big * (sigma + 1 - h): reuse needs this level stationary or without relevant loops
        m.le(s - big * (sig - h), big)
        for mid in range(start + 1, level):
            h_mid = self.has_relevant_loop(tensor, mid)
            if h_mid:
                m.le(s + big * h_mid, big)
        self._cache[key] = s
        return s

    def fill_log(self, tensor, start) -> Lin:
        """log2(times a tile of `tensor` whose loops end at level `start` is filled)."""
        key = ("fill", tensor, start)
        if key not in self._cache:
            out = Lin()
            for level in range(start + 1, self.L):
                out.add(self.temporal_log(level)).add(self.saved(tensor, start, level), -1.0)
            self._cache[key] = out
        return self._cache[key]

    # ---- cost model ----------------------------------------------------------------------
    def accesses(self) -> list[Access]:
        """Every access count Timeloop charges, as log2 expressions (totals over instances)."""
        out = []
        macs = math.log2(self.problem.macs)
        for t in self.problem.tensors:
            chain = self.chain[t.name]
            rel, irr = self.rel[t.name], self._irrelevant_dims(t.name)
            kind = "update" if t.is_output else "read"
            # the arithmetic reads (or updates) its operand every MAC; multicast / spatial
            # reduction over the irrelevant spatial factors below the first kept level
            out.append(self._access(chain[0], t.name, kind,
                                    Lin(const=macs) - self.spatial_log(range(chain[0] + 1), irr),
                                    from_macs=True))
            for c, p in zip(chain, chain[1:]):
                bases = self.tile_fills(t.name, c)
                to_parent = (self.spatial_log(range(c + 1, p + 1), rel)
                             + self.spatial_log(range(p + 1, self.L)))
                out.append(self._choice_access(p, t.name, kind,
                                               [(z, e + to_parent) for z, e in bases]))
                # Outputs too: 019f107 counts every tile load of partial sums as fills, the
                # cold first one included, and the child's write port carries them
                filled = self.spatial_log(range(c + 1, self.L))
                out.append(self._choice_access(c, t.name, "fill",
                                               [(z, e + filled) for z, e in bases]))
        return out

    def tile_fills(self, tensor, level) -> list:
        """[(choice binary or None, log2(tile words x times filled))] of the tensor's tile at
        `level`: one option here; the uneven model offers one per tile boundary."""
        return [(None, self.tile_log(tensor, level)
                 + self.fill_log(tensor, self.tile_level(tensor, level)))]

    def _choice_access(self, level, tensor, kind, options) -> Access:
        (_, log_total), = options
        return self._access(level, tensor, kind, log_total)

    def _access(self, level, tensor, kind, log_total, from_macs=False) -> Access:
        per_instance = log_total - self.spatial_log(range(level + 1, self.L))
        return Access(level, tensor, kind, log_total, per_instance, from_macs)

    def exp2(self, v: Lin, name: str, lo: float, hi: float) -> Lin:
        """A variable y >= 2^(v - shift) by tangent cuts: the count in units of 2^shift.

        [lo, hi] is where v's values of interest lie (lo must be a true lower bound of v): cuts
        every 0.5 for the first 4 units above lo (<= 1.5 % low), then every 1 (<= 5.8 % low).
        Tangents are global under-estimators of 2^v, so values outside [lo, hi] stay valid.
        """
        key = ("exp", v.key())
        if key in self._cache:
            return self._cache[key]
        m, shift = self.m, self.shift
        vlo, vhi = m.bounds(v)
        lo, hi = max(lo, vlo), min(hi, vhi)
        if vhi - vlo < 1e-9:
            y = Lin(const=2.0 ** (vlo - shift))
        else:
            hi = max(hi, lo)
            w = m.add_var(f"log[{name}]", -INF, INF)
            m.eq(w - v, 0)
            y = m.add_var(f"exp[{name}]", 2.0 ** (lo - shift), INF)
            for a in tangent_points(lo, hi):
                c = 2.0 ** (a - shift)  # y >= c (1 + ln2 (w - a)), row divided by c
                m.ge(y * (1.0 / c) - w * LN2, 1 - LN2 * a, f"tangent[{name}]")
        self._cache[key] = y
        return y

    def unique_log(self, tensor) -> float:
        """log2 of the distinct words of `tensor` the layer uses: any schedule moves each once."""
        return math.log2(used_words(self.problem, self.problem.tensor(tensor)))

    def access_range(self, acc: Access, per_instance=False) -> tuple[float, float]:
        """[lower bound, high end] of an access count's log2, where its tangents go: every
        word is moved at least once; operands read by the MACs at least MACs / multicast."""
        macs = math.log2(self.problem.macs)
        lo = self.unique_log(acc.tensor)
        if acc.from_macs:
            irr = sum(math.log2(self.size[d]) for d in self._irrelevant_dims(acc.tensor))
            fan = sum(math.log2(self.arch.fanout_total(i)) for i in range(acc.level + 1))
            lo = max(lo, macs - min(irr, fan))
        if per_instance:
            lo -= math.log2(self.arch.levels[acc.level].instances)
        t = self.problem.tensor(acc.tensor)
        slack = sum(math.log2(max(c for _, c in axis)) for axis in t.axes)  # strided halo
        return lo, macs + slack + 0.5

    def _cost_objective(self) -> Lin:
        obj, m = self.objective, self.m
        self.lb_cycles = self.lower_bound_cycles()
        self.shift = math.log2(self.lb_cycles)
        mac_pJ, e_read, e_write = access_energy_table(self.arch, cluster_shared=False)
        top = self.top
        out_words = {t.name: used_words(self.problem, t) for t in self.problem.tensors}
        self.energy_ref = mac_pJ * self.problem.macs + sum(
            out_words[t.name] * (e_write[top] if t.is_output else e_read[top])
            for t in self.problem.tensors)
        energy = Lin(const=mac_pJ * self.problem.macs)
        bw_reads = {i: Lin() for i in range(self.L)}
        bw_writes = {i: Lin() for i in range(self.L)}
        self.access_logs = {}
        for acc in self.accesses():
            name = f"{acc.tensor}@L{acc.level}:{acc.kind}"
            self.access_logs[(acc.level, acc.tensor, acc.kind)] = acc.log_total
            lvl = acc.level
            spread = self.cluster_spread_log(lvl)
            lo, hi = self.access_range(acc)
            # the energy of an access is shared by the utilized instances of its cluster
            shared = acc.log_total - spread if spread else acc.log_total
            y = self.exp2(shared, name, lo - self.m.bounds(spread)[1], hi)
            if acc.kind == "read":
                energy.add(y, e_read[lvl] * self.lb_cycles)
            elif acc.kind == "fill":
                energy.add(y, e_write[lvl] * self.lb_cycles)
            else:  # update: written, and read back except the first write of each word
                energy.add(y, (e_read[lvl] + e_write[lvl]) * self.lb_cycles)
                if lvl == top:
                    energy.const -= e_read[lvl] * out_words[acc.tensor]
            if self._bandwidth_limited(lvl):
                y_inst = y if lvl == top and self.arch.levels[lvl].instances == 1 and \
                    not spread else \
                    self.exp2(acc.log_per_instance, name + "/inst",
                              *self.access_range(acc, per_instance=True))
                if acc.kind in ("read", "update"):
                    bw_reads[lvl].add(y_inst)
                    if acc.kind == "update" and lvl == top:
                        bw_reads[lvl].const -= out_words[acc.tensor] / self.lb_cycles
                if acc.kind in ("fill", "update"):
                    bw_writes[lvl].add(y_inst)
        latency = m.add_var("latency", 0, INF)
        macs = math.log2(self.problem.macs)
        fastest = macs - math.log2(best_spatial_product(self))
        m.ge(latency - self.exp2(self.log_compute(), "compute", fastest, macs), 0,
             "latency>=compute")
        for i, lv in enumerate(self.arch.levels):
            for words, bw, what in ((bw_reads[i], lv.read_bandwidth, "read"),
                                    (bw_writes[i], lv.write_bandwidth, "write"),
                                    (bw_reads[i] + bw_writes[i], lv.shared_bandwidth, "shared")):
                if bw and (words or words.const):
                    m.ge(latency - words * (1.0 / bw), 0, f"latency>={what}[L{i}]")
        self.latency_var, self.energy_expr = latency, energy
        return latency * obj.latency + energy * (obj.energy / self.energy_ref)

    def cluster_spread_log(self, level) -> Lin:
        """log2 of how many utilized instances of `level` share one access (Timeloop's cluster):
        max(0, log2(utilized instances) - log2(clusters)), the utilized instances being the
        spatial factors above the level. A binary picks the branch of the max; the energy
        objective pushes the variable up to it. Empty (0) when it cannot exceed 0."""
        key = ("spread", level)
        if key not in self._cache:
            lv, m = self.arch.levels[level], self.m
            clusters = max(1, lv.instances // max(1, lv.cluster_size))
            out = Lin()
            if lv.cluster_size > 1 and clusters < lv.instances:
                above = self.spatial_log(range(level + 1, self.L)) - math.log2(clusters)
                low, high = m.bounds(above)
                high = min(high, math.log2(lv.instances / clusters))  # at most the cluster size
                if high > 1e-9:
                    s = m.add_var(f"spread[L{level}]", 0, high)
                    shared = m.add_binary(f"shared[L{level}]")
                    m.le(s - shared * high, 0)  # not shared: no spread
                    m.le(s - above - shared * min(low, 0), -min(low, 0))  # shared: s <= above
                    out = s
            self._cache[key] = out
        return self._cache[key]

    def _bandwidth_limited(self, level) -> bool:
        lv = self.arch.levels[level]
        return any(bw for bw in (lv.read_bandwidth, lv.write_bandwidth, lv.shared_bandwidth))

    # ---- CoSA's original terms -----------------------------------------------------------
    def _cosa_utilization(self) -> Lin:
        """Sum of the log2 tile sizes of the kept tensors below the global buffer."""
        return Lin.total(self.tile_log(t, i) for i in range(min(self.g, self.top))
                         if self.arch.levels[i].entries is not None for t in self.kept(i))

    def _cosa_traffic(self) -> Lin:
        """CoSA's traffic term, generalised from its Simba indices to any hierarchy: per tensor,
        the weighted log sizes of its inner tiles, the global buffer's spatial factors, the
        global buffer's temporal loops outside its innermost relevant loop, and the loops
        above the global buffer."""
        g, out = self.g, Lin()
        for t in self.problem.tensor_names:
            rel = sorted(self.rel[t])
            for i in range(min(g, self.L)):
                weight = 0.99 * (0.8 + 0.04 * i)
                out.add(Lin.total(self.TL(d, i) + self.SL(d, i) for d in rel), weight)
            if 0 <= g < self.L:
                out.add(self.spatial_log([g]), 0.99)
                out.add(self.temporal_log(g))
                if g > 0:
                    out.add(self.saved(t, g - 1, g), -1.0)
            above = Lin.total(self.temporal_log(i) for i in range(g + 1, self.L))
            out.add(above, 1.01 if t == "Weights" else 1.0)
        return out

    # ---- solutions -----------------------------------------------------------------------
    def start_values(self) -> dict[int, float]:
        """A feasible partial start: every factor temporal at the outermost level."""
        out = {}
        for (d, p, (kind, lvl)), v in self.n.items():
            idx = next(iter(v))
            out[idx] = float(self.m.ub[idx]) if kind == TEMPORAL and lvl == self.top else 0.0
        return out

    def decode(self, x) -> Mapping:
        levels = [LevelMapping() for _ in range(self.L)]
        for (d, p, (kind, lvl)), v in self.n.items():
            count = int(round(x[next(iter(v))]))
            if count <= 0:
                continue
            lm = levels[lvl]
            target = {TEMPORAL: lm.temporal, SPATIAL_X: lm.spatial_x, SPATIAL_Y: lm.spatial_y}[kind]
            target[d] = target.get(d, 1) * p ** count
        for i, lm in enumerate(levels):
            lm.order = self._order(i, x, lm)
            if self.keeps_override:
                lm.keeps = frozenset(self.kept(i))
        tile_levels = {k: v for k, v in self.tile_levels.items()}
        return Mapping(levels, tile_levels, {})

    def stationary(self, level, x) -> Optional[str]:
        for t, v in self._cache.get(("sigma", level), {}).items():
            if x[next(iter(v))] > 0.5:
                return t
        return None

    def _order(self, level, x, lm) -> tuple:
        """Innermost first: the stationary tensor's irrelevant loops, then the others."""
        dims = list(self.problem.dims)
        t = self.stationary(level, x)
        if t is None:
            return tuple(dims)
        first = [d for d in dims if d not in self.rel[t] and lm.temporal.get(d, 1) > 1]
        return tuple(first + [d for d in dims if d not in first])

    def fix(self, mapping: Mapping) -> None:
        """Pin the factors and the stationary tensor of each level to those of `mapping`, so
        that solving gives the model's own access counts for it (see `predicted_counts`)."""
        slots = {TEMPORAL: "temporal", SPATIAL_X: "spatial_x", SPATIAL_Y: "spatial_y"}
        for (d, p, (kind, lvl)), v in self.n.items():
            f = getattr(mapping.levels[lvl], slots[kind]).get(d, 1)
            count = 0
            while f % p == 0 and f > 1:
                f //= p
                count += 1
            idx = next(iter(v))
            self.m.lb[idx] = self.m.ub[idx] = float(count)
        for level in sorted(self.order_levels):
            lm = mapping.levels[level]
            inner = next((d for d in lm.full_order(self.problem.dims)
                          if lm.temporal.get(d, 1) > 1), None)
            stationary = next((t for t in self.sigma(level)
                               if inner is not None and inner not in self.rel[t]), None)
            for t, v in self.sigma(level).items():
                idx = next(iter(v))
                self.m.lb[idx] = self.m.ub[idx] = float(t == stationary)

    def predicted_counts(self, x) -> dict:
        """{(level, tensor, kind): total accesses} the model assigns to the solution x."""
        return {k: 2.0 ** self.m.value(v, x) for k, v in getattr(self, "access_logs", {}).items()}

    def stats(self) -> dict:
        return {"num_vars": self.m.num_vars, "num_constraints": self.m.num_constraints,
                "num_integer": self.m.num_integer}


# ---------------------------------------------------------------------------------------------
# Requests that cannot be met, detected before solving
# ---------------------------------------------------------------------------------------------
def check_request(model: ScheduleModel) -> None:
    """Raise InputError / InfeasibleError naming the level, tensor and sizes at fault."""
    problem, arch = model.problem, model.arch
    top = arch.levels[model.top]
    for t in problem.tensor_names:
        if t not in model.keeps[model.top]:
            raise InputError(f"the outermost level {top.name} bypasses {t}, so no level holds "
                             f"the whole tensor; keep {t} at {top.name}")
    _check_tile_levels(model)
    if not 0 <= model.g < model.L:
        raise InputError(f"global buffer index {model.g} is not a level of {arch.name} "
                         f"(levels 0..{model.L - 1}: {', '.join(arch.level_names)})")
    for i, lv in enumerate(arch.levels):
        if lv.entries is not None:
            _check_level_capacity(model, i, lv)
    if model.min_utilization:
        _check_spatial_use(model)


def _check_tile_levels(model):
    for (t, i), j in model.tile_levels.items():
        if t not in model.problem.tensor_names or not 0 <= i < model.L or not 0 <= j < model.L:
            raise InputError(f"uneven mapping entry ({t}, level {i}) -> {j} is out of range "
                             f"({model.L} levels, tensors {list(model.problem.tensor_names)})")
        if t not in model.keeps[i]:
            raise InputError(f"uneven mapping gives {t} a tile at level "
                             f"{model.arch.levels[i].name}, which does not keep {t}")
    for t, chain in model.chain.items():
        taus = [model.tile_level(t, i) for i in chain]
        if any(a > b for a, b in zip(taus, taus[1:])):
            raise InputError(f"uneven mapping of {t}: the tiles at levels {chain} span loops up "
                             f"to levels {taus}; an outer level's tile must contain the inner one")


def _check_level_capacity(model, i, lv):
    kept = model.kept(i)
    if not kept:
        return
    if lv.entries == 0:
        raise InfeasibleError(f"level {lv.name} keeps {' and '.join(kept)} but its capacity is "
                              f"0 words; bypass {'them' if len(kept) > 1 else 'it'} there")
    smallest = {}
    for t in kept:
        cap = lv.entries * lv.share.get(t, 1.0)
        smallest[t] = (model.problem.full_size(t) if model.tile_level(t, i) >= model.top else 1)
        if smallest[t] > cap:
            raise InfeasibleError(
                f"the smallest tile of {t} at level {lv.name} is {smallest[t]} words, capacity "
                f"{math.floor(cap)} (share {lv.share.get(t, 1.0):g} of {lv.entries} entries)")
    if sum(smallest.values()) > lv.entries:
        parts = " + ".join(f"{t} {n}" for t, n in smallest.items())
        raise InfeasibleError(f"level {lv.name}: the smallest tiles {parts} = "
                              f"{sum(smallest.values())} words exceed its capacity of "
                              f"{lv.entries} words")


def best_spatial_product(model) -> int:
    """The largest number of MACs any placement of the prime factors on the fanouts can use
    (each dimension on one axis per fanout, as in the MILP).

    Dimension by dimension, every split of its size into spatial factors per fanout axis; the
    state between dimensions is only the room left on each axis, so the search is memoized on
    (dimension, room). (A product fits an axis of fanout F iff successive floor divisions of F
    by its factors stay >= 1, so the room is the floor quotient.)"""
    slots = [(i, axis, fan, ok) for i in range(model.L) for axis, fan, ok in model.spatial_axes(i)]
    dims = [d for d in model.dims
            if model.size[d] > 1 and any(d in ok for *_, ok in slots)]
    memo = {}

    def splits(d, s, rest, room, levels):
        """Spatial factors of d on slots s.. (a tuple), with `rest` of its size left to place and
        `levels` the levels whose other axis d already uses."""
        if s == len(slots):
            yield ()
            return
        yield from ((1,) + tail for tail in splits(d, s + 1, rest, room, levels))
        level, _, _, ok = slots[s]
        if d not in ok or level in levels:
            return
        for f in range(2, min(rest, room[s]) + 1):
            if rest % f == 0:
                yield from ((f,) + tail
                            for tail in splits(d, s + 1, rest // f, room, levels | {level}))

    def best(j, room):
        if j == len(dims):
            return 1
        key = (j, room)
        if key not in memo:
            value = 0
            for factors in splits(dims[j], 0, model.size[dims[j]], room, frozenset()):
                used = math.prod(factors)
                nxt = tuple(r // f for r, f in zip(room, factors))
                value = max(value, used * best(j + 1, nxt))
            memo[key] = value
        return memo[key]

    return best(0, tuple(fan for _, _, fan, _ in slots))


def _check_spatial_use(model):
    need = math.ceil(model.min_utilization * model.arch.num_macs - 1e-9)
    have = best_spatial_product(model)
    if have < need:
        fanouts = "; ".join(
            f"{model.arch.levels[i].name} {axis} {fan} "
            f"({', '.join(sorted(ok & set(model.dims))) or 'no dimension'})"
            for i in range(model.L) for axis, fan, ok in model.spatial_axes(i)) or "none"
        dims = ", ".join(f"{d}={model.size[d]}" for d in model.problem.dims)
        raise InfeasibleError(
            f"the dimensions of {model.problem.name} ({dims}) cannot be factorized onto the "
            f"fanouts to use {need} of {model.arch.num_macs} MACs (min_utilization "
            f"{model.min_utilization:g}); at most {have} can be used. Fanouts (allowed dims): "
            f"{fanouts}")
