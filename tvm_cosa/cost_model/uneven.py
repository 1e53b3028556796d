"""Uneven mappings in the built-in model: each tensor's tile follows its own boundary.

For a tensor kept at level c with boundary b (`Mapping.tile_levels`, rules in
`tvm_cosa.uneven`) the tile spans the spatial loops of levels 0..c and the temporal loops of
levels 0..b, and it is refilled by the temporal loops of levels b+1.. (Timeloop's delta rules,
`nest.fills`, applied to that tile and those loops). Everything else is counted as for an even
mapping: what the children draw from a level is their own fills times the distinct child tiles,
the MACs draw one operand per compute, partition sizes follow the spatial fan-outs only. With
every boundary equal to its level this is exactly the even model (Timeloop's).
"""

from __future__ import annotations

from ..errors import InputError
from ..uneven import violations


class TileLoops:
    """Per tensor (problem order): `ext[level]` the tile's per-dimension extents (dimension
    indices), `above[level]` the temporal loops that refill it, innermost first."""

    __slots__ = ("ext", "above")

    def __init__(self, ext, above):
        self.ext, self.above = ext, above


def uneven_error(ctx, mapping):
    """The first broken uneven rule as an invalid-mapping text (None: the boundaries are fine);
    an entry that names no tensor or level of the problem is an InputError."""
    found = violations(mapping, ctx.problem, ctx.arch)
    for v in found:
        if "out of range" in v.message:
            raise InputError(v.message + "; tile_levels maps (tensor, level) to a level index")
    return found[0].message if found else None


def tile_loops(ctx, mapping, nest, kept) -> list:
    """TileLoops per tensor for the levels that keep it."""
    nlev = ctx.nlev
    ones = (1,) * len(ctx.dims)
    # spatial factor of each dimension at each level: block_ext[k] / ext[k-1]
    spatial = [tuple(b // a for a, b in zip(nest.ext[k - 1] if k else ones, nest.block_ext[k]))
               for k in range(nlev)]
    out = []
    for ti, name in enumerate(ctx.tensor_names):
        ext, above = {}, {}
        for c in kept[ti]:
            b = mapping.tile_levels.get((name, c), c)
            e = list(nest.ext[b])
            for k in range(min(b, c) + 1, max(b, c) + 1):
                for d, f in enumerate(spatial[k]):
                    if f > 1:
                        e[d] = e[d] * f if b < c else e[d] // f
            ext[c], above[c] = tuple(e), nest.above[b]
        out.append(TileLoops(ext, above))
    return out
