"""The independent validity checker: recomputes everything from the mapping, trusts no solver.

Checks (Timeloop's rules, plus the per-link fanout that Timeloop 019f107 skips):
- the factors of each dimension multiply to its size;
- at every level, each kept tile (input halo included) fits its share of the capacity, and the
  kept tiles together fit the whole capacity of one instance;
- spatial factors fit the X and Y fanout below each level, only on levels with a fanout, only on
  dimensions the level allows; the cumulative instance count fits the MAC array; a dimension is
  on one axis (X or Y) per level, as a Timeloop map requires;
- at a row-addressed level (`MemoryLevel.row_dims`), the same in rows, a row holding the
  spatial factor of the tensor's row dimension (at most `block_size` words);
- loop orders name only the problem's dimensions; the mapping has one entry per level.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from .architecture import Architecture
from .errors import CoSAError
from .mapping import Mapping
from .problem import Problem


@dataclass(frozen=True)
class Violation:
    # level_count | unknown_dim | factor_product | capacity | share | rows | fanout | spatial_dim
    # | split | uneven
    kind: str
    message: str
    level: Optional[str] = None
    tensor: Optional[str] = None

    def __str__(self):
        return self.message


class InvalidMappingError(CoSAError):
    def __init__(self, violations):
        self.violations = list(violations)
        super().__init__("invalid mapping:\n  " + "\n  ".join(map(str, self.violations)))


def check_mapping(mapping: Mapping, problem: Problem, arch: Architecture, *,
                  timeloop_rules: bool = False) -> list[Violation]:
    """Every rule the mapping breaks (empty list: valid).

    `timeloop_rules=True` applies only what Timeloop 019f107 checks: the cumulative instance
    count instead of each link's fanout, and no per-level restriction of spatial dimensions.
    """
    out: list[Violation] = []
    if len(mapping.levels) != arch.num_levels:
        return [Violation("level_count", f"mapping has {len(mapping.levels)} levels, "
                                         f"architecture {arch.name} has {arch.num_levels}")]
    dims = set(problem.dims)
    for i, lv in enumerate(mapping.levels):
        name = arch.levels[i].name
        used = set(lv.temporal) | set(lv.spatial_x) | set(lv.spatial_y) | set(lv.order)
        for d in sorted(used - dims):
            out.append(Violation("unknown_dim", f"level {name}: dimension {d!r} is not in "
                                                f"{problem.name} ({sorted(dims)})", name))
        for kind, factors in (("temporal", lv.temporal), ("spatial", lv.spatial)):
            for d, f in factors.items():
                if not isinstance(f, int) or f < 1:
                    out.append(Violation("factor_product", f"level {name}: {kind} factor of {d} "
                                                           f"is {f!r}, not a positive integer",
                                         name))
    if out:
        return out

    for d, size in problem.sizes:
        product = mapping.factor_product(d)
        if product != size:
            out.append(Violation("factor_product", f"product of all factors of dimension {d} is "
                                                   f"{product}, the layer has {d}={size}"))

    for i, level in enumerate(arch.levels):
        kept = [t for t in problem.tensor_names if t in mapping.kept(arch, i)]
        tiles = mapping.tile_sizes(problem, kept, i)
        if level.entries is not None:
            for t in kept:
                cap = level.capacity_for(t)
                if level.shares and tiles[t] > cap:
                    out.append(Violation("share", f"level {level.name}: {t} tile of {tiles[t]} "
                                                  f"words exceeds its share of {cap:g} words",
                                         level.name, t))
            total = sum(tiles.values())
            if total > level.entries:
                parts = " + ".join(f"{t} {n}" for t, n in tiles.items())
                out.append(Violation("capacity", f"level {level.name}: tiles {parts} = {total} "
                                                 f"words exceed the capacity of {level.entries}",
                                     level.name))
            if level.row_capacity is not None:
                out += _check_rows(mapping, problem, level, i, tiles)

    out += _check_spatial(mapping, problem, arch, strict=not timeloop_rules)
    if mapping.tile_levels:
        from .uneven import violations as uneven_violations

        out += uneven_violations(mapping, problem, arch)
    return out


def tile_rows(mapping, problem, level, i, tensor) -> tuple[int, int]:
    """(rows, words per row) of `tensor`'s tile at row-addressed level i (see
    `MemoryLevel.row_dims_of`): a row holds the spatial factor of the row dimensions inside it."""
    # A tile always spans the spatial loops of levels 0..i, uneven or not (`tvm_cosa.uneven`).
    width = math.prod(mapping.levels[j].spatial.get(d, 1)
                      for d in level.row_dims_of(problem, tensor) for j in range(i + 1))
    return math.ceil(mapping.tile_size(problem, tensor, i) / width), width


def _check_rows(mapping, problem, level, i, tiles) -> list[Violation]:
    out, rows = [], {}
    for t in tiles:
        rows[t], width = tile_rows(mapping, problem, level, i, t)
        if width > level.block_size:
            out.append(Violation("rows", f"level {level.name}: rows of {t} would hold {width} "
                                         f"words; a row holds {level.block_size}", level.name, t))
        cap = math.floor(level.row_capacity * level.share.get(t, 1.0))
        if level.shares and rows[t] > cap:
            out.append(Violation("share", f"level {level.name}: {t} tile of {rows[t]} rows "
                                          f"exceeds its share of {cap} rows", level.name, t))
    if sum(rows.values()) > level.row_capacity:
        parts = " + ".join(f"{t} {n}" for t, n in rows.items())
        out.append(Violation("rows", f"level {level.name}: tiles {parts} = {sum(rows.values())} "
                                     f"rows of {level.block_size} words exceed its "
                                     f"{level.row_capacity} rows", level.name))
    return out


def _check_spatial(mapping, problem, arch, strict) -> list[Violation]:
    out = []
    cum_x = cum_y = 1
    for i in reversed(range(arch.num_levels)):
        lv, level = mapping.levels[i], arch.levels[i]
        fx, fy = arch.fanout(i)
        lx, ly = level.mesh
        if not strict and (cum_x * cum_y > level.instances or cum_x > lx or cum_y > ly):
            # Timeloop checks every level's cumulative instances and X / Y expansions.
            out.append(Violation("fanout", f"level {level.name}: spatial factors above it use "
                                           f"{cum_x} x {cum_y} instances; it has {lx} x {ly}",
                                 level.name))
        both = [d for d, f in lv.spatial_x.items() if f > 1 and lv.spatial_y.get(d, 1) > 1]
        for d in sorted(both):
            # Timeloop's map format: one spatial factor per dimension, on X or Y (`split`).
            out.append(Violation("split", f"level {level.name}: dimension {d} is split on both "
                                          f"X ({lv.spatial_x[d]}) and Y ({lv.spatial_y[d]}); a "
                                          "Timeloop map gives each dimension one spatial factor",
                                 level.name))
        sx, sy = math.prod(lv.spatial_x.values()), math.prod(lv.spatial_y.values())
        cum_x, cum_y = cum_x * sx, cum_y * sy
        if strict and (sx > fx or sy > fy):
            out.append(Violation("fanout", f"level {level.name}: spatial factors {sx} (X) x {sy} "
                                           f"(Y) exceed the fanout {fx} x {fy} below it",
                                 level.name))
        restricted = (("X", lv.spatial_x), ("Y", lv.spatial_y)) if strict else ()
        for axis, factors in restricted:
            ok = level.allowed_spatial_dims(problem, axis)
            for d, f in factors.items():
                if f > 1 and d not in ok:
                    out.append(Violation("spatial_dim", f"level {level.name}: dimension {d} may "
                                                        f"not be spatial on {axis} (allowed: "
                                                        f"{sorted(ok) or 'none'})", level.name))
    mx, my = arch.arithmetic.mesh
    if cum_x * cum_y > arch.num_macs or cum_x > mx or cum_y > my:
        out.append(Violation("fanout", f"spatial factors use {cum_x} x {cum_y} MACs; the array "
                                       f"is {mx} x {my}", arch.arithmetic.name))
    return out


def assert_valid(mapping: Mapping, problem: Problem, arch: Architecture, **kw) -> None:
    violations = check_mapping(mapping, problem, arch, **kw)
    if violations:
        raise InvalidMappingError(violations)


def is_valid(mapping: Mapping, problem: Problem, arch: Architecture, **kw) -> bool:
    return not check_mapping(mapping, problem, arch, **kw)
