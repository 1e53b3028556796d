"""Uneven mapping (ZigZag's per-operand memory boundaries, CoSA's Z): the rules.

`Mapping.tile_levels[(tensor, c)] = b` moves the boundary of `tensor`'s tile at level c: the tile
spans the *temporal* loops of levels 0..b (instead of 0..c) and, always, the *spatial* loops of
levels 0..c. Spatial loops cannot follow the boundary: those of levels <= c split the tile among
c's children, which all work at once, so one instance of c must hold all their data; those above
c run on other instances of c. With b < c the temporal loops of levels b+1..c refill the tile
from the parent; with b > c those of levels c+1..b no longer refill it.

So a tile is a box (the cost model's and the lowering's assumption) only if, on each dimension
that indexes the tensor, the loops it spans are the innermost loops of that dimension in the nest
(innermost first: level 0's spatial then temporal loops, then level 1's, ...). `violations`
returns what breaks this or the other rules:

- b is a level of the architecture; the outermost level keeps whole tensors (b = top);
- going outwards along the levels that keep a tensor, boundaries never decrease (a tile holds the
  tile kept below it);
- the box rule above.
"""

from __future__ import annotations


def boundary(mapping, tensor: str, level: int) -> int:
    return mapping.tile_levels.get((tensor, level), level)


def is_uneven(mapping) -> bool:
    return any(i != j for (_, i), j in mapping.tile_levels.items())


def tile_extents(mapping, tensor: str, level: int) -> dict:
    """Per-dimension extent of `tensor`'s tile at `level`: spatial factors of levels 0..level,
    temporal factors of levels 0..boundary."""
    b = boundary(mapping, tensor, level)
    out = {}
    for k, lv in enumerate(mapping.levels):
        if k <= level:
            for factors in (lv.spatial_x, lv.spatial_y):
                for d, f in factors.items():
                    out[d] = out.get(d, 1) * f
        if k <= b:
            for d, f in lv.temporal.items():
                out[d] = out.get(d, 1) * f
    return out


def _nest_positions(mapping, dim):
    """(level, is_spatial, factor) of `dim`'s loops with factor > 1, innermost first."""
    out = []
    for k, lv in enumerate(mapping.levels):
        s = lv.spatial_x.get(dim, 1) * lv.spatial_y.get(dim, 1)
        if s > 1:
            out.append((k, True, s))
        t = lv.temporal.get(dim, 1)
        if t > 1:
            out.append((k, False, t))
    return out


def box_violation(mapping, problem, tensor: str, level: int):
    """The first dimension of `tensor` on which the tile at `level` skips an inner loop and
    spans an outer one (not a box), as (dim, skipped loop, spanned loop), or None."""
    b = boundary(mapping, tensor, level)
    for d in sorted(problem.tensor(tensor).dims):
        skipped = None
        for k, spatial, f in _nest_positions(mapping, d):
            inside = k <= level if spatial else k <= b
            if not inside:
                skipped = skipped or (k, spatial)
            elif skipped is not None:
                return d, skipped, (k, spatial)
    return None


def violations(mapping, problem, arch) -> list:
    """The uneven-mapping rules `mapping` breaks, as `validity.Violation`s (empty when even)."""
    from .validity import Violation

    out = []
    top = arch.num_levels - 1
    names = arch.level_names
    for (t, i), b in sorted(mapping.tile_levels.items()):
        where = names[i] if 0 <= i <= top else f"level {i}"
        if t not in problem.tensor_names or not 0 <= i <= top or not 0 <= b <= top:
            out.append(Violation("uneven", f"uneven entry ({t}, {where}) -> {b} is out of range "
                                           f"({arch.num_levels} levels, tensors "
                                           f"{list(problem.tensor_names)})", None, t))
        elif i == top and b != top:
            out.append(Violation("uneven", f"level {where} is the outermost: it keeps the whole "
                                           f"{t}, its boundary must be {top}, not {b}", where, t))
    if out:
        return out
    for t in problem.tensor_names:
        chain = [i for i in range(arch.num_levels) if t in mapping.kept(arch, i)]
        bounds = [boundary(mapping, t, i) for i in chain]
        if any(a > c for a, c in zip(bounds, bounds[1:])):
            out.append(Violation("uneven", f"uneven mapping of {t}: the tiles at levels "
                                           f"{[names[i] for i in chain]} span temporal loops up "
                                           f"to levels {bounds}; an outer tile must contain the "
                                           f"inner one", None, t))
        for i in chain:
            if boundary(mapping, t, i) == i:
                continue
            bad = box_violation(mapping, problem, t, i)
            if bad is not None:
                d, (k0, s0), (k1, s1) = bad
                kind = {True: "spatial", False: "temporal"}
                out.append(Violation(
                    "uneven", f"level {names[i]}: the {t} tile with boundary "
                              f"{names[boundary(mapping, t, i)]} spans the {kind[s1]} {d} loop "
                              f"of {names[k1]} but not the {kind[s0]} {d} loop of {names[k0]} "
                              f"inside it, so it is not a box; move the boundary or one of the "
                              f"two factors", names[i], t))
    return out



def single_moves(mapping, problem, arch) -> list:
    """Every uneven variant of `mapping` that moves one boundary of one tensor and still passes
    the validity checker, as ((tensor, level), boundary) pairs (for cross-checks and tests)."""
    from .mapping import Mapping
    from .validity import check_mapping

    out = []
    top = arch.num_levels - 1
    for t in problem.tensor_names:
        for c in range(top):
            if t not in mapping.kept(arch, c):
                continue
            for b in range(top):
                if b == boundary(mapping, t, c):
                    continue
                moved = Mapping(mapping.levels, {**mapping.tile_levels, (t, c): b})
                if not check_mapping(moved, problem, arch):
                    out.append(((t, c), b))
    return out
