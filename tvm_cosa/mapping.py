"""A schedule ("mapping"): per memory level, the loops that iterate over that level's tile.

Level i's temporal loops walk over the sub-tiles that level i hands to its children; its spatial
loops split the sub-tile across the children (the fanout below level i), on the X or Y axis of the
mesh. The tile a level holds therefore spans every loop at that level and below, as in Timeloop.
Loop order is given innermost first, as in Timeloop's map files.

Uneven mapping (ZigZag, CoSA's Z): `tile_levels[(tensor, i)] = j` says the tile of `tensor` kept at
level i spans the temporal loops of levels 0..j instead of 0..i (and, always, the spatial loops of
levels 0..i: the fanout below i works at once); rules in `tvm_cosa.uneven`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

from .problem import Problem


@dataclass
class LevelMapping:
    temporal: dict = field(default_factory=dict)  # dim -> factor
    spatial_x: dict = field(default_factory=dict)
    spatial_y: dict = field(default_factory=dict)
    order: tuple = ()  # temporal loop order, innermost first; dims not listed follow
    keeps: Optional[frozenset] = None  # None: the architecture's bypass pattern

    @property
    def spatial(self) -> dict:
        out = dict(self.spatial_x)
        for d, f in self.spatial_y.items():
            out[d] = out.get(d, 1) * f
        return out

    def factor(self, dim: str) -> int:
        return self.temporal.get(dim, 1) * self.spatial_x.get(dim, 1) * self.spatial_y.get(dim, 1)

    def spatial_product(self) -> int:
        return math.prod(self.spatial_x.values()) * math.prod(self.spatial_y.values())

    def temporal_product(self) -> int:
        return math.prod(self.temporal.values())

    def full_order(self, dims) -> tuple:
        """Every dim, innermost first: `order` then the rest in `dims` order."""
        listed = [d for d in self.order if d in dims]
        return tuple(listed + [d for d in dims if d not in listed])

    def temporal_loops(self, dims) -> list[tuple[str, int]]:
        """(dim, factor) of the loops with factor > 1, innermost first."""
        return [(d, self.temporal[d]) for d in self.full_order(dims) if self.temporal.get(d, 1) > 1]


@dataclass
class Mapping:
    levels: list  # LevelMapping per architecture level, innermost first
    tile_levels: dict = field(default_factory=dict)  # (tensor, level) -> outermost loop level
    info: dict = field(default_factory=dict)  # solver, status, objective, solve_time_s, ...

    # ---- factors and tiles ----------------------------------------------------------------
    def factor_product(self, dim: str) -> int:
        return math.prod(lv.factor(dim) for lv in self.levels)

    def extents_through(self, level: int) -> dict:
        """Per-dimension extent of the loops at levels 0..level (spatial and temporal); every
        dimension any level lists is present (1 when only levels above list it). One pass over
        the factors: the validity checker calls this per level of every candidate the polish
        tries."""
        out: dict = {}
        for i, lv in enumerate(self.levels):
            for factors in (lv.temporal, lv.spatial_x, lv.spatial_y):
                for d, f in factors.items():
                    out[d] = out.get(d, 1) * f if i <= level else out.get(d, 1)
        return out

    def tile_level(self, tensor: str, level: int) -> int:
        return self.tile_levels.get((tensor, level), level)

    def tile_extents(self, tensor: str, level: int) -> dict:
        if self.tile_level(tensor, level) == level:
            return self.extents_through(level)
        from .uneven import tile_extents

        return tile_extents(self, tensor, level)

    def tile_size(self, problem: Problem, tensor: str, level: int) -> int:
        """Words of `tensor`'s tile at `level`, input halo included (bounding box)."""
        return problem.tensor(tensor).tile_size(self.tile_extents(tensor, level))

    def tile_sizes(self, problem: Problem, tensors, level: int) -> dict:
        """{tensor: `tile_size`} at `level`; in an even mapping the tensors share one set of
        extents, worked out once."""
        if self.tile_levels:
            return {t: self.tile_size(problem, t, level) for t in tensors}
        ext = self.extents_through(level)
        return {t: problem.tensor(t).tile_size(ext) for t in tensors}

    def kept(self, arch, level: int) -> frozenset:
        lv = self.levels[level]
        return lv.keeps if lv.keeps is not None else arch.levels[level].keeps

    def compute_cycles(self) -> int:
        return math.prod(lv.temporal_product() for lv in self.levels)

    def utilized_macs(self) -> int:
        return math.prod(lv.spatial_product() for lv in self.levels)

    # ---- presentation ---------------------------------------------------------------------
    def loop_nest(self, problem: Problem, arch) -> str:
        """Timeloop-style loop nest, outermost level first, with each level's kept tiles."""
        lines, depth = [], 0
        for i in reversed(range(len(self.levels))):
            lv, name = self.levels[i], arch.levels[i].name
            tiles = " ".join(f"{t}:{self.tile_size(problem, t, i)}"
                             for t in problem.tensor_names if t in self.kept(arch, i))
            cap = arch.levels[i].entries
            used = sum(self.tile_size(problem, t, i) for t in problem.tensor_names
                       if t in self.kept(arch, i))
            util = "" if not cap else f"  ({100 * used / cap:.1f}% of {cap})"
            header = f"{name} [ {tiles} ]{util}"
            lines += [header, "-" * len(header)]
            loops = [(d, f, "") for d, f in reversed(lv.temporal_loops(problem.dims))]
            loops += [(d, f, " (Spatial-X)") for d, f in lv.spatial_x.items() if f > 1]
            loops += [(d, f, " (Spatial-Y)") for d, f in lv.spatial_y.items() if f > 1]
            for d, f, tag in loops:
                lines.append(f"{'|  ' * depth}| for {d} in [0:{f}){tag}")
                depth += 1
            lines.append("")
        return "\n".join(lines).rstrip() + "\n"

    def short(self, arch) -> str:
        """One line: per level, its temporal then spatial factors (`DRAM:K2P7 GB:...`)."""
        parts = []
        for i in reversed(range(len(self.levels))):
            lv = self.levels[i]
            t = "".join(f"{d}{f}" for d, f in lv.temporal.items() if f > 1)
            s = "".join(f"{d}{f}" for d, f in lv.spatial.items() if f > 1)
            if t or s:
                parts.append(f"{arch.levels[i].name}:{t}{'|' + s if s else ''}")
        # uneven boundaries: tensor@level spans the temporal loops up to another level
        parts += [f"{t}@{arch.levels[i].name}<{arch.levels[j].name}"
                  for (t, i), j in sorted(self.tile_levels.items()) if i != j]
        return " ".join(parts)

    # ---- serialization --------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "levels": [{"temporal": dict(lv.temporal), "spatial_x": dict(lv.spatial_x),
                        "spatial_y": dict(lv.spatial_y), "order": list(lv.order),
                        "keeps": None if lv.keeps is None else sorted(lv.keeps)}
                       for lv in self.levels],
            "tile_levels": [[t, i, j] for (t, i), j in self.tile_levels.items()],
            "info": {k: v for k, v in self.info.items() if isinstance(v, (int, float, str, bool,
                                                                          type(None)))},
        }

    @classmethod
    def from_dict(cls, data: dict) -> "Mapping":
        levels = [LevelMapping(dict(lv.get("temporal", {})), dict(lv.get("spatial_x", {})),
                               dict(lv.get("spatial_y", {})), tuple(lv.get("order", ())),
                               None if lv.get("keeps") is None else frozenset(lv["keeps"]))
                  for lv in data["levels"]]
        tile_levels = {(t, i): j for t, i, j in data.get("tile_levels", [])}
        return cls(levels, tile_levels, dict(data.get("info", {})))
