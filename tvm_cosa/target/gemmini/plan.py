"""From a CoSA mapping to a Gemmini program plan: loops, where each tile moves, its rows.

No TVM here: the plan says which loops run on the host around the array (every temporal loop of
the accumulator level and above, outermost first), which loops stream rows through the array with
the weights held (the register level), where each tile is moved in (Timeloop's rule: just inside
the innermost loop above the tile's level that indexes the tensor, so a tile stays resident across
the loops that do not index it), and how each tile is laid out in rows of the row-addressed
scratchpad and accumulator. It also checks the plan against the real capacities in rows.

Output-stationary mappings (GemminiConfig(dataflow="OS")) give the same plan with other roles:
pixels on X, the register loops are the reduction chain run with the outputs held in the PEs
(Plan.reg_loops, its reduction loop stepping over `red_chunk`-wide computes), and other pixel
dimensions on X are row groups around the chain.

Layout of a tile: its columns are the array's dimension for that tensor (inputs: the reduction,
weights and outputs: the output channel), cut into chunks as wide as the spatial factor; each
chunk holds one row per point of the tensor's other axes, the streaming axis innermost (the axis
whose consecutive rows one compute command reads or writes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

from ...mapping import Mapping
from ...problem import INPUTS, OUTPUTS, WEIGHTS, Problem
from .config import GemminiConfig
from .dims import GemminiDims, gemmini_dims


class UnsupportedMapping(NotImplementedError):
    """This mapping or layer cannot run on the Gemmini array (the pass lowers it generically)."""


@dataclass
class Loop:
    dim: str
    extent: int
    level: int
    stride: int  # step of the dimension's index per iteration
    index: int = 0  # position in the host loop list (outermost first) or the register list


@dataclass
class TileLayout:
    tensor: str
    level: int  # the memory level the tile lives in
    fill: int  # position in `Plan.loops`: the tile is moved in just before loops[fill:]
    extents: dict  # dim -> extent of the tile
    col_dim: str  # the dimension along the columns of the rows
    width: int  # columns per chunk (the spatial factor of col_dim)
    chunks: int
    axes: tuple  # indices of the tensor's axes that enumerate rows, streaming axis last
    axis_extents: dict  # axis index -> extent (bounding box)
    row_strides: dict  # axis index -> rows per step
    rows_per_chunk: int
    base: int = 0  # first row

    @property
    def rows(self) -> int:
        return self.chunks * self.rows_per_chunk

    @property
    def streaming_axis(self) -> int:
        return self.axes[-1]


@dataclass
class Plan:
    problem: Problem
    dims: GemminiDims
    config: GemminiConfig
    loops: list  # host loops (levels >= accumulator), outermost first
    reg_loops: list  # register-level loops (pixel dims streamed with the weights held)
    fx: int  # spatial factor of the reduction on X (rows of B)
    fy: int  # spatial factor of the output channel on Y (columns)
    tiles: dict  # tensor -> TileLayout
    preload_fill: int  # weights enter the array just before loops[preload_fill:]
    stream_dim: Optional[str]  # the pixel dimension whose rows one compute streams
    sizes: dict  # real size of every dimension (<= the mapping's product when padded)
    padded: dict = field(default_factory=dict)  # dim -> mapping product, where > size
    # the loops merged into the stream: host loop indices and register loop indices
    stream_host: frozenset = frozenset()
    stream_reg: frozenset = frozenset()
    dataflow: str = "WS"  # OS: outputs held in the PEs, reg_loops are the reduction chain
    red_chunk: int = 1  # OS: reduction columns of one compute (A columns, B rows)

    @property
    def spad_rows(self) -> int:
        return self.tiles[INPUTS].rows + self.tiles[WEIGHTS].rows

    @property
    def acc_rows(self) -> int:
        return self.tiles[OUTPUTS].rows

    def stream_extent(self) -> int:
        return math.prod([self.loops[i].extent for i in self.stream_host] +
                         [self.reg_loops[i].extent for i in self.stream_reg])

    def a_stride(self) -> int:
        """Rows between consecutive A rows of one compute (the stride of the streaming pixel)."""
        if self.stream_dim is None:
            return 1
        axis = self.problem.tensor(INPUTS).axes[self.tiles[INPUTS].streaming_axis]
        return dict(axis).get(self.stream_dim, 1)

    def reductions(self) -> tuple:
        return self.dims.reductions

    def describe(self) -> str:
        t = self.tiles
        return (f"spad rows {self.spad_rows}/{self.config.spad_rows} (inputs {t[INPUTS].rows}, "
                f"weights {t[WEIGHTS].rows}), acc rows {self.acc_rows}/{self.config.acc_rows}, "
                f"block {self.fx}x{self.fy}")


def _levels(arch):
    """(register levels, accumulator level, scratchpad level, DRAM level) by structure."""
    spatial = arch.spatial_levels
    if len(spatial) != 1:
        raise UnsupportedMapping(f"{arch.name}: expected one level with a spatial fanout (the "
                                 f"array), found {len(spatial)}")
    acc = spatial[0]
    top = arch.num_levels - 1
    if top - acc != 2:
        raise UnsupportedMapping(f"{arch.name}: expected exactly one scratchpad level between "
                                 "the accumulator and DRAM")
    return tuple(range(acc)), acc, acc + 1, top


def _check_keeps(mapping, arch, regs, acc, spad, problem, os_flow=False):
    want = {acc: {OUTPUTS}, spad: {INPUTS, WEIGHTS}}
    for r in regs:
        want[r] = {OUTPUTS} if os_flow else {WEIGHTS}
    for level, tensors in want.items():
        kept = set(mapping.kept(arch, level)) & set(problem.tensor_names)
        if kept != tensors:
            raise UnsupportedMapping(
                f"level {arch.levels[level].name} keeps {sorted(kept)}; the Gemmini lowering "
                f"needs {sorted(tensors)} there ({'output' if os_flow else 'weight'}-stationary "
                "bypass pattern)")


def _os_pixel(lv_acc, dims) -> str:
    """The pixel dimension whose consecutive values are the rows of one output-stationary
    compute (A and C rows, evenly strided): the one with the largest spatial factor on X."""
    spatial = [(f, d) for d, f in lv_acc.spatial_x.items() if f > 1 and d in dims.pixels]
    return max(spatial)[1] if spatial else dims.pixels[-1]


def _os_row_groups(lv_acc, x_dim, acc, strides) -> list:
    """Output-stationary, several pixel dimensions on X (a 2-D block of output pixels): rows of
    one dimension are not evenly strided after another's in the input tile (its halo), so the
    block runs as one compute chain per value of the other dimensions, each over the x_dim rows.
    These row groups are loops around the chain (level: the accumulator, as spatial factors)."""
    return [Loop(d, f, acc, strides[(d, acc, "S")]) for d, f in lv_acc.spatial_x.items()
            if f > 1 and d != x_dim]


def _os_chain(reg_loops, dims, dim):
    """Output-stationary: the register loops run while the outputs stay in the PEs, so they must
    all be reductions; one compute takes `chunk` consecutive values of the array's reduction
    dimension (its register factor, or DIM of it), so its loop steps over chunks."""
    bad = [lp.dim for lp in reg_loops if lp.dim not in dims.reductions]
    if bad:  # (rows of a 2-D pixel block are added after: _os_row_groups)
        raise UnsupportedMapping(f"register-level loop over {bad[0]}: with the outputs held in "
                                 "the PEs only reduction loops run there")
    chunk, chain = 1, []
    for lp in reg_loops:
        if lp.dim != dims.reduction:
            chain.append(lp)
            continue
        if lp.stride != 1:
            raise UnsupportedMapping(f"output-stationary: the register loop of {lp.dim} must be "
                                     "its innermost factor")
        chunk = lp.extent if lp.extent <= dim else dim
        if lp.extent % chunk:
            raise UnsupportedMapping(f"output-stationary: {lp.extent} {lp.dim} per output is not "
                                     f"a whole number of {dim}-wide computes")
        if lp.extent > chunk:
            chain.append(Loop(lp.dim, lp.extent // chunk, lp.level, chunk))
    for i, lp in enumerate(chain):
        lp.index = i
    return chain, chunk


def _factor_chain(mapping, problem, acc, top) -> dict:
    """Per dimension, its factors innermost first as (level, kind, factor); within a level the
    spatial split is inside the temporal loop (Timeloop's order)."""
    chain = {d: [] for d in problem.dims}
    for level in range(top + 1):
        lv = mapping.levels[level]
        spatial = {**lv.spatial_x, **lv.spatial_y}
        if level != acc and any(f > 1 for f in spatial.values()):
            raise UnsupportedMapping(f"spatial factors at level {level}: only the accumulator "
                                     "feeds the array")
        for d in problem.dims:
            if level == acc and spatial.get(d, 1) > 1:
                chain[d].append((level, "S", spatial[d]))
            if lv.temporal.get(d, 1) > 1:
                chain[d].append((level, "T", lv.temporal[d]))
    return chain


def make_plan(problem: Problem, mapping: Mapping, arch, config: GemminiConfig,
              sizes: Optional[dict] = None) -> Plan:
    """The program plan of `mapping` (valid for `problem`) on a Gemmini `arch`.

    `sizes`: the real layer sizes when `problem` is a padded version of the layer (channel
    dimensions rounded up to whole array blocks); commands are then clipped at the real edges.
    """
    dims = gemmini_dims(problem)
    regs, acc, spad, top = _levels(arch)
    os_flow = config.dataflow == "OS"
    _check_keeps(mapping, arch, regs, acc, spad, problem, os_flow)
    lv_acc = mapping.levels[acc]
    x_dim = _os_pixel(lv_acc, dims) if os_flow else dims.reduction
    # OS: other pixel dimensions on X are row groups of the block (see _os_row_groups)
    x_ok = set(dims.pixels) if os_flow else {x_dim}
    for axis, factors, ok in (("X", lv_acc.spatial_x, x_ok),
                              ("Y", lv_acc.spatial_y, {dims.output_channel})):
        bad = [d for d, f in factors.items() if f > 1 and d not in ok]
        if bad:
            raise UnsupportedMapping(f"dimension {bad[0]} is spatial on {axis}; the array takes "
                                     f"only {sorted(ok)} there")
    fx = lv_acc.spatial_x.get(x_dim, 1)
    fy = lv_acc.spatial_y.get(dims.output_channel, 1)
    if fx > config.dim or fy > config.dim:
        raise UnsupportedMapping(f"block {fx}x{fy} exceeds the {config.dim}x{config.dim} array")

    chain = _factor_chain(mapping, problem, acc, top)
    strides = {}
    for d, links in chain.items():
        s = 1
        for level, kind, f in links:
            strides[(d, level, kind)] = s
            s *= f

    loops, reg_loops = [], []
    for level in range(top, -1, -1):
        lv = mapping.levels[level]
        for d in reversed(lv.full_order(problem.dims)):  # outermost first
            f = lv.temporal.get(d, 1)
            if f > 1:
                lp = Loop(d, f, level, strides[(d, level, "T")])
                (reg_loops if level in regs else loops).append(lp)
    for i, lp in enumerate(loops):
        lp.index = i
    for i, lp in enumerate(reg_loops):
        lp.index = i
    if os_flow:
        reg_loops, red_chunk = _os_chain(reg_loops, dims, config.dim)
        reg_loops = _os_row_groups(lv_acc, x_dim, acc, strides) + reg_loops
        for i, lp in enumerate(reg_loops):
            lp.index = i
    else:
        red_chunk = 1
        bad = [lp.dim for lp in reg_loops if lp.dim not in dims.pixels]
        if bad:
            raise UnsupportedMapping(f"register-level loop over {bad[0]}: only pixels stream "
                                     "through the array with the weights held")

    def fill_of(tensor, level):
        top_tile = mapping.tile_level(tensor, level)
        relevant = problem.tensor(tensor).dims
        pos = 0
        for lp in loops:
            if lp.level > top_tile and lp.dim in relevant:
                pos = lp.index + 1
        return pos

    def extents_inside(fill):
        ext = {d: 1 for d in problem.dims}
        for lp in loops[fill:] + reg_loops:
            ext[lp.dim] *= lp.extent
        ext[x_dim] *= fx
        ext[dims.output_channel] *= fy
        if os_flow:  # the chain's loops step over chunks of the reduction
            ext[dims.reduction] *= red_chunk
        return ext

    if os_flow:  # one compute: the fx pixels on X, a chunk of the reduction; nothing streams
        preload_fill = len(loops)
        stream_dim, stream_host, stream_reg = x_dim, frozenset(), frozenset()
    else:
        preload_fill = max(fill_of(WEIGHTS, r) for r in regs) if regs else len(loops)
        stream_dim, stream_host, stream_reg = _choose_stream(loops, reg_loops, preload_fill, acc,
                                                             dims)
    tiles = {}
    for tensor, level, col, width in ((INPUTS, spad, dims.reduction,
                                       red_chunk if os_flow else fx),
                                      (WEIGHTS, spad, dims.output_channel, fy),
                                      (OUTPUTS, acc, dims.output_channel, fy)):
        fill = fill_of(tensor, level)
        tiles[tensor] = _layout(problem, tensor, level, fill, extents_inside(fill), col, width,
                                dims.reduction if tensor == WEIGHTS else stream_dim)
    tiles[WEIGHTS].base = tiles[INPUTS].rows

    sizes = dict(sizes or problem.size)
    padded = {d: n for d, n in problem.size.items() if n != sizes.get(d, n)}
    for d, n in padded.items():
        if d not in (dims.reduction, dims.output_channel) or sizes[d] > n:
            raise UnsupportedMapping(f"dimension {d}: padding only the channel dimensions is "
                                     f"supported ({sizes[d]} -> {n})")
    plan = Plan(problem, dims, config, loops, reg_loops, fx, fy, tiles, preload_fill=preload_fill,
                stream_dim=stream_dim, sizes=sizes, padded=padded, stream_host=stream_host,
                stream_reg=stream_reg, dataflow=config.dataflow, red_chunk=red_chunk)
    if plan.spad_rows > config.spad_rows or plan.acc_rows > config.acc_rows:
        raise UnsupportedMapping(
            f"the tiles need {plan.spad_rows} scratchpad rows and {plan.acc_rows} accumulator "
            f"rows of {config.dim} elements; {config.name} has {config.spad_rows} and "
            f"{config.acc_rows} (chunks of {fx} / {fy} columns leave rows partly empty)")
    return plan


def _choose_stream(loops, reg_loops, preload_fill, acc, dims):
    """The pixel dimension one compute command streams, and the loops merged into that stream.

    Inside the preload scope (after the innermost loop that changes the weights) every loop runs
    with the same weights in the array and moves no data, so their order is free: the loops of
    one pixel dimension whose strides chain up from 1 (the register loop, then the accumulator
    level's loop just above it) form one run of consecutive rows. The longest run wins (fewest
    commands); ties keep the mapping's innermost register loop. Only register and accumulator
    loops merge: a loop above the accumulator may be where a tile moves.
    """
    scope = [("host", lp) for lp in loops[preload_fill:] if lp.level <= acc]
    scope += [("reg", lp) for lp in reg_loops]
    best = (1, -1, None, frozenset(), frozenset())
    for d in dims.pixels:
        chain = sorted((lp.stride, kind, lp) for kind, lp in scope if lp.dim == d)
        extent, host, reg = 1, set(), set()
        for stride, kind, lp in chain:
            if stride != extent:
                break
            extent *= lp.extent
            (host if kind == "host" else reg).add(lp.index)
        innermost = reg_loops[-1].dim == d if reg_loops else False
        key = (extent, int(innermost))
        if extent > 1 and key > best[:2]:
            best = (extent, int(innermost), d, frozenset(host), frozenset(reg))
    return best[2], best[3], best[4]


def _layout(problem, tensor, level, fill, ext, col_dim, width, stream_dim) -> TileLayout:
    t = problem.tensor(tensor)
    col_axes = [i for i, ax in enumerate(t.axes) if dict(ax) == {col_dim: 1}]
    if len(col_axes) != 1:
        raise UnsupportedMapping(f"{tensor}: no axis indexed by {col_dim} alone")
    col_axis = col_axes[0]
    bbox = t.axis_extents(ext)
    axes = [i for i in range(len(t.axes)) if i != col_axis]
    stream = [i for i in axes if stream_dim is not None and stream_dim in dict(t.axes[i])]
    if stream:
        axes.remove(stream[0])
        axes.append(stream[0])
    row_strides, step = {}, 1
    for i in reversed(axes):
        row_strides[i] = step
        step *= bbox[i]
    if ext[col_dim] % width:
        raise UnsupportedMapping(f"{tensor}: tile of {ext[col_dim]} {col_dim} is not a whole "
                                 f"number of {width}-wide chunks")
    return TileLayout(tensor, level, fill, ext, col_dim, width, ext[col_dim] // width,
                      tuple(axes), {i: bbox[i] for i in axes}, row_strides, step)


def pad_channels(problem: Problem, dim: int) -> Problem:
    """The layer with its reduction and output-channel dimensions rounded up to multiples of
    `dim`: the problem to schedule for Gemmini when a channel count is not a multiple of the array
    (the scratchpad holds whole rows of `dim` elements, so a 3-channel input fills 16-wide rows)."""
    d = gemmini_dims(problem)
    sizes = dict(problem.sizes)
    changed = False
    for name in (d.reduction, d.output_channel):
        n = math.ceil(sizes[name] / dim) * dim
        changed |= n != sizes[name]
        sizes[name] = n
    if not changed:
        return problem
    return Problem(problem.name, problem.kind, tuple(sizes.items()), problem.tensors,
                   problem.params)
