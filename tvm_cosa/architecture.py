"""The accelerator: a memory hierarchy (innermost level first) above an array of MACs.

Follows Timeloop's model: every level has a number of instances; the spatial fanout below a level
is the ratio of its children's instances to its own, laid out on a 2-D mesh (X, Y). A level keeps
a subset of the tensors (the others bypass it); `shares` splits its capacity between tensors the
way CoSA's `part_ratios` does.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Iterable, Mapping as MappingT, Optional

from .errors import InputError
from .problem import TENSOR_NAMES


@dataclass(frozen=True)
class Arithmetic:
    """The MAC array: `instances` MACs, `mesh_x` of them along X (default: all)."""

    instances: int
    word_bits: int = 8
    mesh_x: Optional[int] = None
    energy_pJ: Optional[float] = None  # per MAC; None = estimate from word bits
    name: str = "__ARITH__"

    @property
    def mesh(self) -> tuple[int, int]:
        x = self.mesh_x or self.instances
        return x, self.instances // x


@dataclass(frozen=True)
class MemoryLevel:
    """One storage level. Capacities are in words of `word_bits`, per instance."""

    name: str
    entries: Optional[int]  # None: unbounded (DRAM)
    instances: int = 1
    word_bits: int = 8
    keeps: frozenset = frozenset(TENSOR_NAMES)
    shares: tuple[tuple[str, float], ...] = ()  # tensor -> fraction of entries it may use
    mesh_x: Optional[int] = None  # X size of the instances' layout; default all on X
    block_size: int = 1
    cluster_size: int = 1
    read_bandwidth: Optional[float] = None  # words/cycle per instance; None = unlimited
    write_bandwidth: Optional[float] = None
    shared_bandwidth: Optional[float] = None
    technology: str = "SRAM"
    num_ports: int = 2
    num_banks: int = 2
    network_word_bits: Optional[int] = None
    # Energy per vector access (block_size words). None = estimate (labelled as such).
    read_energy_pJ: Optional[float] = None
    write_energy_pJ: Optional[float] = None
    # Dimensions allowed on the X / Y axes of the fanout below this level (None: any).
    spatial_dims_x: Optional[tuple[str, ...]] = None
    spatial_dims_y: Optional[tuple[str, ...]] = None
    # Row-addressed memory (Gemmini's scratchpad / accumulator): tensor -> the dimension (name or
    # role) along its rows. Each row holds `block_size` words (one vector access, Timeloop's
    # `width`); see `row_dims_of`. Empty: the level is word-addressed.
    row_dims: tuple[tuple[str, str], ...] = ()

    @property
    def mesh(self) -> tuple[int, int]:
        x = self.mesh_x or self.instances
        return x, self.instances // x

    @property
    def share(self) -> dict[str, float]:
        return dict(self.shares)

    def capacity_for(self, tensor: str) -> Optional[float]:
        """Words one instance may give `tensor` (None: unbounded)."""
        if self.entries is None:
            return None
        return self.entries * self.share.get(tensor, 1.0)

    @property
    def row_capacity(self) -> Optional[int]:
        """Rows of a row-addressed level (None: word-addressed or unbounded)."""
        if not self.row_dims or self.entries is None:
            return None
        return self.entries // self.block_size

    def allowed_spatial_dims(self, problem, axis: str) -> frozenset:
        """The layer's dimensions that may be spatial on `axis` ("X" or "Y") of the fanout
        below this level (every one where the axis is unrestricted)."""
        allowed = self.spatial_dims_x if axis == "X" else self.spatial_dims_y
        return frozenset(problem.dims) if allowed is None else problem.resolve_dims(allowed)

    def row_dims_of(self, problem, tensor: str) -> frozenset:
        """The dimensions along `tensor`'s rows here: its row dimension where an axis of the
        tensor is that dimension alone. A tile is laid out in chunks as wide as the spatial
        factor of these dimensions inside it (the columns one access of the array fills), one
        row per chunk and point of its other axes, so it takes words / that factor rows (a
        tensor without a row dimension takes a row per word)."""
        tokens = [d for t, d in self.row_dims if t == tensor]
        alone = {ax[0][0] for ax in problem.tensor(tensor).axes
                 if len(ax) == 1 and ax[0][1] == 1}
        return problem.resolve_dims(tokens) & alone

    @property
    def is_dram(self) -> bool:
        return self.entries is None or self.technology.upper() == "DRAM"


@dataclass(frozen=True)
class Architecture:
    name: str
    arithmetic: Arithmetic
    levels: tuple[MemoryLevel, ...]  # innermost first; the last is the backing store (DRAM)
    # The Timeloop file this came from, passed to Timeloop unchanged (None: write our own).
    timeloop_spec: Optional[dict] = field(default=None, compare=False, hash=False)
    # Read from a CoSA / Timeloop 0.3 file, whose bypass pattern usually lives in a separate
    # mapspace file, and none was applied: an infeasible layer then says so.
    mapspace_missing: bool = field(default=False, compare=False, hash=False)

    def __post_init__(self):
        if not self.levels:
            raise InputError("an architecture needs at least one memory level", source=self.name)
        names = [lv.name for lv in self.levels]
        if len(set(names)) != len(names):
            raise InputError(f"level names repeat: {names}", source=self.name)
        children = self.arithmetic
        for lv in self.levels:
            for what, value in (("instances", lv.instances), ("word_bits", lv.word_bits)):
                if not isinstance(value, int) or value < 1:
                    raise InputError(f"level {lv.name}: {what} must be a positive integer, "
                                     f"got {value!r}", source=self.name, field=what)
            if lv.entries is not None and lv.entries < 0:
                raise InputError(f"level {lv.name}: entries must be >= 0, got {lv.entries}",
                                 source=self.name, field="entries")
            (cx, cy), (px, py) = children.mesh, lv.mesh
            if children.instances % lv.instances or cx % px or cy % py:
                raise InputError(
                    f"level {lv.name} has {lv.instances} instances (mesh {px}x{py}) but the level "
                    f"below has {children.instances} (mesh {cx}x{cy}); each instance must feed a "
                    f"whole number of children", source=self.name, field="instances")
            for t, _ in lv.row_dims:
                if t not in TENSOR_NAMES:
                    raise InputError(f"level {lv.name}: row dimension for unknown tensor {t!r}; "
                                     f"expected some of {list(TENSOR_NAMES)}", source=self.name,
                                     field="row_dims")
            for t, r in lv.shares:
                if not 0 < r <= 1:
                    raise InputError(f"level {lv.name}: share of {t} must be in (0, 1], got {r}",
                                     source=self.name, field="shares")
            children = lv

    # ---- structure ------------------------------------------------------------------------
    @property
    def num_levels(self) -> int:
        return len(self.levels)

    @property
    def level_names(self) -> tuple[str, ...]:
        return tuple(lv.name for lv in self.levels)

    def level_index(self, name: str) -> int:
        for i, lv in enumerate(self.levels):
            if lv.name == name:
                return i
        raise InputError(f"no level named {name!r}; levels are {list(self.level_names)}",
                         source=self.name)

    def children_of(self, i: int):
        """What one instance of level i feeds: level i-1, or the MACs below level 0."""
        return self.levels[i - 1] if i > 0 else self.arithmetic

    def fanout(self, i: int) -> tuple[int, int]:
        """(X, Y) spatial fanout from one instance of level i to its children."""
        (cx, cy), (px, py) = self.children_of(i).mesh, self.levels[i].mesh
        return cx // px, cy // py

    def fanout_total(self, i: int) -> int:
        x, y = self.fanout(i)
        return x * y

    @property
    def spatial_levels(self) -> tuple[int, ...]:
        return tuple(i for i in range(self.num_levels) if self.fanout_total(i) > 1)

    @property
    def num_macs(self) -> int:
        return self.arithmetic.instances

    def keeps(self, i: int, tensor: str) -> bool:
        return tensor in self.levels[i].keeps

    def bypass_matrix(self, tensors: Iterable[str] = TENSOR_NAMES) -> list[list[int]]:
        """CoSA's B matrix: B[t][i] = 1 if tensor t is kept at level i."""
        return [[int(t in lv.keeps) for lv in self.levels] for t in tensors]

    def part_ratios(self, tensors: Iterable[str] = TENSOR_NAMES) -> list[list[float]]:
        """CoSA's part_ratios[i][t]: share of level i's entries tensor t may use."""
        tensors = list(tensors)
        return [[lv.share.get(t, 1.0) if t in lv.keeps else 0.0 for t in tensors]
                for lv in self.levels]

    def key(self) -> tuple:
        """Hashable identity of everything that changes schedules or costs."""
        return (self.arithmetic, self.levels)

    # ---- variants -------------------------------------------------------------------------
    def with_bypass(self, keeps: MappingT[str, Iterable[str]]) -> "Architecture":
        """A copy where the named levels keep exactly the given tensors."""
        levels = list(self.levels)
        for name, tensors in keeps.items():
            i = self.level_index(name)
            levels[i] = replace(levels[i], keeps=frozenset(tensors))
        return replace(self, levels=tuple(levels), timeloop_spec=None)

    def with_shares(self, shares: MappingT[str, MappingT[str, float]]) -> "Architecture":
        levels = list(self.levels)
        for name, ratio in shares.items():
            i = self.level_index(name)
            levels[i] = replace(levels[i], shares=tuple(sorted(ratio.items())))
        return replace(self, levels=tuple(levels))

    def describe(self) -> str:
        rows = [f"{self.name}: {self.arithmetic.instances} MACs"]
        for i, lv in enumerate(self.levels):
            fx, fy = self.fanout(i)
            cap = "unbounded" if lv.entries is None else f"{lv.entries} words"
            if lv.row_capacity is not None:
                cap += f" ({lv.row_capacity} rows)"
            rows.append(f"  L{i} {lv.name}: {cap} x {lv.instances}, keeps "
                        f"{sorted(lv.keeps)}, fanout {fx}x{fy}")
        return "\n".join(rows)


def preset(name: str) -> Architecture:
    """`simba` (the CoSA paper's) or `gemmini` (16x16, 256 KiB scratchpad, 64 KiB accumulator)."""
    from .architecture_yaml import load_preset

    return load_preset(name)
