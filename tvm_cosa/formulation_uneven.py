"""CoSA's Z as a decision: the MILP picks each tensor's tile boundary at each level.

`UnevenScheduleModel` extends `ScheduleModel` (same variables, constraints and objective) with,
for every tensor t and level c < top that keeps it, a one-hot z[t, c, b] over the boundaries b
(the tile spans the spatial loops of levels 0..c and the temporal loops of levels 0..b, rules in
`tvm_cosa.uneven`). With a fixed `tile_levels` (the original CoSA's Z, or `schedule(...,
tile_levels=)`) each one-hot has one candidate; with `uneven=True` the candidates are the levels
from the next inner level keeping t up to (not including) the next outer one. Constraints added:

- boundaries never decrease outwards along the levels that keep a tensor;
- the box rule, exactly: with z[t, c, b] = 1, no dimension of t has a factor > 1 both in a loop
  the tile skips and in a loop outside it that the tile spans (binaries "slot has a factor of d");
- the tile's log size u[t, c] equals the chosen candidate's (two-sided big-M), so capacities,
  shares, rows and CoSA's utilization term see the chosen tile;
- each access count of the tile (its fills, what it gives its parent) gets one tangent-cut
  variable per candidate, built exactly as the even model builds it, and the count is at least
  the chosen candidate's (big-M on the tangent variables; M from the bound every count obeys:
  at most the MACs times the halo slack). So the even mapping keeps its exact objective value
  in this model, and the optimum is never worse than the even one.
"""

from __future__ import annotations

import itertools
import math

from .formulation import TEMPORAL, Access, Lin, ScheduleModel

SPATIAL = "S"


class ChoiceLin(Lin):
    """A log count that equals one of several expressions, the one whose binary is 1: the
    dict terms are the exact selected value; `choices` = [(binary or None, expression)]."""

    __slots__ = ("choices",)

    def __init__(self, terms=(), const=0.0, choices=()):
        super().__init__(terms, const)
        self.choices = list(choices)

    def __sub__(self, other):  # e.g. the cluster spread of an energy term: every choice shifts
        diff = Lin.__sub__(self, other)
        return ChoiceLin(diff, diff.const, [(z, e - other) for z, e in self.choices])


class UnevenScheduleModel(ScheduleModel):
    def __init__(self, problem, arch, objective=None, *, uneven=True, tile_levels=None, **kw):
        self.decide = bool(uneven)
        self.fixed_boundaries = dict(tile_levels or {})
        self._choices: dict = {}
        super().__init__(problem, arch, objective, tile_levels=tile_levels, **kw)
        if not self._choices:  # no capacity or cost term asked for a tile: still decode them
            self._make_choices()

    # ---- boundaries ----------------------------------------------------------------------
    def candidates(self, tensor, level) -> list[int]:
        if level == self.top:
            return [self.top]
        if (tensor, level) in self.fixed_boundaries:
            return [self.fixed_boundaries[(tensor, level)]]
        if not self.decide:
            return [level]
        # between the next inner and the next outer level keeping the tensor: the levels that
        # do not keep it hold none of its tiles, so the other boundaries repeat these ones
        chain = self.chain[tensor]
        k = chain.index(level)
        lo = chain[k - 1] if k else 0
        return list(range(lo, chain[k + 1]))

    def choice(self, tensor, level) -> list:
        """[(binary Lin or None when there is one candidate, boundary)] of (tensor, level)."""
        if not self._choices:
            self._make_choices()
        return self._choices[(tensor, level)]

    def _make_choices(self):
        m = self.m
        for t, chain in self.chain.items():
            for c in chain:
                bs = self.candidates(t, c)
                if len(bs) == 1:
                    self._choices[(t, c)] = [(None, bs[0])]
                    continue
                zs = [m.add_binary(f"z[{t},L{c},L{b}]") for b in bs]
                m.eq(Lin.total(zs), 1, f"z1[{t},L{c}]")
                self._choices[(t, c)] = list(zip(zs, bs))
            # an outer tile contains the inner one: boundaries never decrease outwards
            for c1, c2 in zip(chain, chain[1:]):
                b1 = Lin.total(_times(z, b) for z, b in self._choices[(t, c1)])
                b2 = Lin.total(_times(z, b) for z, b in self._choices[(t, c2)])
                if b1 or b2:
                    m.le(b1 - b2, 0, f"zmono[{t},L{c1}]")
            for c in chain:
                for z, b in self._choices[(t, c)]:
                    self._box_constraints(t, c, b, z)

    def _used(self, d, kind, level):
        """Binary: the slot (temporal, or spatial X/Y, at `level`) has a factor of d > 1."""
        key = ("used", d, kind, level)
        if key not in self._cache:
            counts = [(v, self.m.ub[next(iter(v))]) for (dd, _, (k, lvl)), v in self.n.items()
                      if dd == d and lvl == level and (k == TEMPORAL) == (kind == TEMPORAL)]
            y = None
            if counts:
                y = self.m.add_binary(f"used[{d},{kind}{level}]")
                for v, ub in counts:
                    self.m.ge(y - v * (1.0 / ub), 0)
            self._cache[key] = y
        return self._cache[key]

    def _box_constraints(self, t, c, b, z):
        """The tile must be a box: never a skipped inner loop and a spanned outer one of the same
        relevant dimension (nest innermost first: spatial then temporal loops of each level)."""
        if b < c:  # skips temporal j in b+1..c-1, spans the spatial loops k > j up to c
            pairs = [((TEMPORAL, j), (SPATIAL, k)) for j in range(b + 1, c)
                     for k in range(j + 1, c + 1)]
        else:  # skips spatial k in c+1..b, spans the temporal loops j >= k up to b
            pairs = [((SPATIAL, k), (TEMPORAL, j)) for k in range(c + 1, b + 1)
                     for j in range(k, b + 1)]
        for d in sorted(self.rel[t]):
            for (k1, l1), (k2, l2) in pairs:
                y1, y2 = self._used(d, k1, l1), self._used(d, k2, l2)
                if y1 is None or y2 is None:
                    continue
                if z is None:
                    self.m.le(y1 + y2, 1, f"box[{t},L{c},{d}]")
                else:
                    self.m.le(y1 + y2 + z, 2, f"box[{t},L{c},L{b},{d}]")

    # ---- tiles ---------------------------------------------------------------------------
    def extent_log(self, d, level, bound) -> Lin:
        """log2 of d's extent in the tile at `level` with boundary `bound`."""
        if bound == level:
            return self.E(d, level)
        key = ("E2", d, level, bound)
        if key not in self._cache:
            out = Lin()
            for k in range(level + 1):
                out.add(self.SL(d, k))
            for k in range(bound + 1):
                out.add(self.TL(d, k))
            self._cache[key] = out
        return self._cache[key]

    def tile_log_at(self, tensor, level, bound) -> Lin:
        t = self.problem.tensor(tensor)
        if bound == level:
            return Lin.total(self._axis_log(t, a, level) for a in range(len(t.axes)))
        return Lin.total(self._uneven_axis_log(t, a, level, bound) for a in range(len(t.axes)))

    def _uneven_axis_log(self, t, a, level, bound) -> Lin:
        key = ("uaxis", t.name, a, level, bound)
        if key in self._cache:
            return self._cache[key]
        terms = [(d, c) for d, c in t.axes[a] if self.size[d] > 1]
        if not terms:
            out = Lin()
        elif len(terms) == 1 and terms[0][1] == 1:
            out = self.extent_log(terms[0][0], level, bound)
        else:  # the sliding window's exact extent, as `_window_one_hot`
            m = self.m
            divs = [[k for k in range(1, self.size[d] + 1) if self.size[d] % k == 0]
                    for d, _ in terms]
            choices = list(itertools.product(*divs))
            ys = [m.add_binary(f"uwin[{t.name}{a},L{level}b{bound},{'x'.join(map(str, ch))}]")
                  for ch in choices]
            m.eq(Lin.total(ys), 1)
            for k, (d, _) in enumerate(terms):
                tie = Lin.total(y * math.log2(ch[k]) for y, ch in zip(ys, choices))
                m.eq(tie - self.extent_log(d, level, bound), 0)
            out = Lin.total(y * math.log2(sum(c * (ch[k] - 1) for k, (_, c) in enumerate(terms))
                                              + 1) for y, ch in zip(ys, choices))
        self._cache[key] = out
        return out

    def tile_log(self, tensor, level) -> Lin:
        if level == self.top:
            return super().tile_log(tensor, level)
        options = [(z, self.tile_log_at(tensor, level, b)) for z, b in self.choice(tensor, level)]
        if len(options) == 1:
            return options[0][1]
        key = ("utile", tensor, level)
        if key not in self._cache:
            self._cache[key] = self._select(options, f"tile[{tensor},L{level}]")
        return self._cache[key]

    def _select(self, options, name) -> Lin:
        """A variable equal to the expression whose binary is 1 (two-sided big-M)."""
        m = self.m
        bounds = [m.bounds(e) for _, e in options]
        lo, hi = min(b[0] for b in bounds), max(b[1] for b in bounds)
        w = m.add_var(f"sel[{name}]", lo, hi)
        for (z, e), (elo, ehi) in zip(options, bounds):
            up, down = hi - elo, ehi - lo  # w - e <= up (1 - z), e - w <= down (1 - z)
            m.le(w - e + z * up, up)
            m.le(e - w + z * down, down)
        return w

    def _row_width_log(self, tensor, level) -> Lin:
        """Words per row: the spatial factor of the row dimensions at levels 0..level (the tile
        spans those whatever its boundary)."""
        lv = self.arch.levels[level]
        dims = lv.row_dims_of(self.problem, tensor) & set(self.dims)
        width = Lin.total(self.SL(d, j) for d in sorted(dims) for j in range(level + 1))
        if width:
            self.m.le(width, math.log2(lv.block_size), f"row_width[L{level},{tensor}]")
        return width

    # ---- access counts -------------------------------------------------------------------
    def tile_fills(self, tensor, level) -> list:
        return [(z, self.tile_log_at(tensor, level, b) + self.fill_log(tensor, b))
                for z, b in self.choice(tensor, level)]

    def _choice_access(self, level, tensor, kind, options) -> Access:
        if len(options) == 1:
            return self._access(level, tensor, kind, options[0][1])
        name = f"{tensor}@L{level}:{kind}"
        total = self._select(options, name)
        inst = self.spatial_log(range(level + 1, self.L))
        log_total = ChoiceLin(total, total.const, options)
        per_instance = ChoiceLin(total - inst, (total - inst).const,
                                 [(z, e - inst) for z, e in options])
        return Access(level, tensor, kind, log_total, per_instance)

    def exp2(self, v, name, lo, hi) -> Lin:
        """For a count with choices: the chosen candidate's own tangent variable (built as the
        even model builds it) is a lower bound of the count."""
        options = getattr(v, "choices", None)
        if not options:
            return super().exp2(v, name, lo, hi)
        key = ("uexp", v.key())
        if key not in self._cache:
            m = self.m
            y = m.add_var(f"uexp[{name}]", 0.0, math.inf)
            for k, (z, e) in enumerate(options):
                yb = super().exp2(e, f"{name}|{k}", lo, hi)
                # yb's least value is <= 2^(e - shift), and no access count exceeds the MACs
                # times the halo slack: `hi` (see `access_range`), a bound of every candidate
                big = 2.0 ** (hi - self.shift) + 1.0
                m.ge(y - yb - z * big, -big)  # y >= yb - big (1 - z)
            self._cache[key] = y
        return self._cache[key]

    # ---- solutions -----------------------------------------------------------------------
    def decode(self, x):
        mapping = super().decode(x)
        tile_levels = {}
        for (t, c), options in self._choices.items():
            chosen = options[0][1] if len(options) == 1 else next(
                b for z, b in options if x[next(iter(z))] > 0.5)
            if chosen != c:
                tile_levels[(t, c)] = chosen
        mapping.tile_levels = tile_levels
        return mapping


def _times(z, b) -> Lin:
    return Lin(const=b) if z is None else z * b
