"""Gemmini's own tiling heuristics (gemmini.h's tiled_matmul_auto / tiled_conv_auto) as Mappings.

The baseline CoSA has to beat. Both heuristics work in rows of the scratchpad / accumulator and use
half of each memory (double buffering):

- `tiled_matmul_auto`: pad I, J, K to multiples of DIM; start from sqrt((ACC_ROWS/2)/DIM) blocks for
  I and J and as many K blocks as fit a quarter of the scratchpad; then grow J, I, K one block at
  a time while (I*K + K*J)*DIM fits half the scratchpad and I*J*DIM half the accumulator. Loops:
  i, j, k over tiles (DRAM); inside a tile k, j, then i with the weights held in the array.
- `tiled_conv_auto`: start from the whole layer (batch, out rows, out cols, out channels, kernel
  rows, kernel cols, in channels); shrink the largest (channels by DIM) until the tiles fit; grow
  out cols, then every argument by one while they fit. Loops: batch, rows, cols, out channels,
  kernel rows, kernel cols, in channels over tiles; inside a tile: out-channel blocks, kernel
  rows, kernel cols, in-channel blocks, then every output pixel with the weights held.

A Mapping needs factors that divide each dimension; Gemmini's tiles do not (it pads the last
tile). Each tile is rounded to the nearest divisor of its dimension (by ratio), and rounded down
instead where rounding up would overflow a memory (further down while a narrow block's part-empty
rows overflow it); `info["rounded"]` lists `dim:heuristic->used`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ...architecture import Architecture
from ...errors import InputError
from ...mapping import LevelMapping, Mapping
from ...validity import check_mapping
from ...problem import Problem
from .config import GemminiConfig, config_for
from .dims import (GemminiDims, NotAGemminiLayer, divisors, gemmini_dims,
                   largest_divisor_at_most)


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


# ---- tiled_matmul_auto ----------------------------------------------------------------------
def tiled_matmul_auto_tiles(dim_i: int, dim_j: int, dim_k: int, config: GemminiConfig):
    """(tile_I, tile_J, tile_K) in DIM x DIM blocks, as gemmini.h computes them (WS)."""
    dim = config.dim
    blocks_i, blocks_j, blocks_k = (_ceil_div(x, dim) for x in (dim_i, dim_j, dim_k))
    max_spad_rows, max_acc_rows = config.spad_rows // 2, config.acc_rows // 2
    db_mats_in_partition = (config.spad_rows // 4) // dim
    db_max_tile_ij = max(1, math.isqrt(max_acc_rows // dim))
    db_max_tile_k = max(1, db_mats_in_partition // db_max_tile_ij)
    ti, tj, tk = min(blocks_i, db_max_tile_ij), min(blocks_j, db_max_tile_ij), \
        min(blocks_k, db_max_tile_k)

    def spad_rows(i, j, k):
        return (i * k + k * j) * dim

    def acc_rows(i, j):
        return i * j * dim

    while True:
        grown = False
        if spad_rows(ti, tj + 1, tk) <= max_spad_rows and acc_rows(ti, tj + 1) <= max_acc_rows \
                and tj + 1 <= blocks_j:
            tj, grown = tj + 1, True
        if spad_rows(ti + 1, tj, tk) <= max_spad_rows and acc_rows(ti + 1, tj) <= max_acc_rows \
                and ti + 1 <= blocks_i:
            ti, grown = ti + 1, True
        if spad_rows(ti, tj, tk + 1) <= max_spad_rows and tk + 1 <= blocks_k:
            tk, grown = tk + 1, True
        if not grown:
            return ti, tj, tk


# ---- tiled_conv_auto ------------------------------------------------------------------------
@dataclass(frozen=True)
class ConvShape:
    batch: int
    out_rows: int
    out_cols: int
    out_channels: int
    kernel_rows: int
    kernel_cols: int
    in_channels: int
    stride: tuple = (1, 1)  # (rows, cols)
    dilation: tuple = (1, 1)


def tiled_conv_rows(args, shape: ConvShape, dim: int) -> tuple[int, int]:
    """(scratchpad rows, accumulator rows) of one conv tile, gemmini.h's formula."""
    batches, orows, ocols, ochs, krows, kcols, kchs = args
    krows_d = krows + (shape.dilation[0] - 1) * (krows - 1)
    kcols_d = kcols + (shape.dilation[1] - 1) * (kcols - 1)
    irows = orows * shape.stride[0] + krows_d - 1
    icols = ocols * shape.stride[1] + kcols_d - 1
    in_banks, out_banks = _ceil_div(kchs, dim), _ceil_div(ochs, dim)
    a_rows = in_banks * batches * irows * icols
    b_rows = out_banks * kcols * krows * kchs
    c_rows = out_banks * batches * orows * ocols
    return a_rows + b_rows, c_rows


def tiled_conv_auto_tiles(shape: ConvShape, config: GemminiConfig) -> tuple:
    """(batches, orows, ocols, ochs, krows, kcols, kchs) as gemmini.h's tiled_conv_auto picks."""
    dim = config.dim
    max_args = (shape.batch, shape.out_rows, shape.out_cols, shape.out_channels,
                shape.kernel_rows, shape.kernel_cols, shape.in_channels)
    orows_i, ocols_i, och_i, ich_i = 1, 2, 3, 6
    max_spad, max_acc = config.spad_rows // 2, config.acc_rows // 2
    args = list(max_args)

    def fits(a):
        spad, acc = tiled_conv_rows(a, shape, dim)
        return spad <= max_spad and acc <= max_acc

    while not fits(args):
        # the largest argument, but keep out cols when they fill one array row and rows remain
        candidates = [i for i in range(7)
                      if not (i == ocols_i and args[i] <= dim and args[orows_i] > 1)]
        if all(args[i] == 1 for i in candidates):
            raise InputError(f"no Gemmini conv tile fits half of {config.name}'s memories")
        big = max(candidates, key=lambda i: (args[i], -i))
        if big in (och_i, ich_i):
            args[big] = (args[big] // dim) * dim if args[big] % dim else args[big] - dim
            args[big] = max(args[big], 1)
        else:
            args[big] -= 1

    def grow(indices):
        grown = True
        while grown:
            grown = False
            for i in indices:
                trial = list(args)
                trial[i] += 1
                if trial[i] <= max_args[i] and fits(trial):
                    args[i], grown = trial[i], True

    grow([ocols_i])
    grow(range(7))
    return tuple(args)


# ---- as Mappings ----------------------------------------------------------------------------
def baseline_mapping(problem: Problem, arch) -> Mapping:
    """Gemmini's heuristic tiling of `problem` on `arch` (a Gemmini Architecture or config)."""
    config = config_for(arch)
    architecture = arch if isinstance(arch, Architecture) else config.architecture()
    if config.dataflow != "WS":
        raise NotImplementedError("Gemmini's tiling heuristics are weight-stationary only")
    dims = gemmini_dims(problem)
    if problem.kind == "matmul" or not dims.windows:
        return _matmul_mapping(problem, dims, config, architecture)
    return _conv_mapping(problem, dims, config, architecture)


def _levels(arch: Architecture):
    names = arch.level_names
    return {role: names.index(role) for role in ("Registers", "Accumulator", "Scratchpad")} | {
        "DRAM": len(names) - 1}


def _empty(arch: Architecture) -> list[LevelMapping]:
    return [LevelMapping() for _ in arch.levels]


def _nearest_divisor(n: int, t: int) -> int:
    t = min(max(t, 1), n)
    return min(divisors(n), key=lambda d: (abs(math.log(d / t)), -d))


def _round_tiles(problem, arch, wanted: dict, build) -> tuple[Mapping, str]:
    """The mapping `build(tiles)` with each wanted tile rounded to a divisor (see module doc)."""
    size = problem.size
    tile = {d: _nearest_divisor(size[d], t) for d, t in wanted.items()}
    while True:
        mapping = build(tile)
        if not check_mapping(mapping, problem, arch):
            break
        up = [d for d in tile if tile[d] > wanted[d]]
        if not up:
            break  # rounded down everywhere: as valid as the heuristic's own tiles
        worst = max(up, key=lambda d: tile[d] / wanted[d])
        tile[worst] = largest_divisor_at_most(size[worst], wanted[worst])
    while check_mapping(mapping, problem, arch):
        # Still too many rows: a dimension without a DIM-wide divisor leaves rows part empty
        # (Gemmini pads it; a mapping cannot), so shrink the largest tile further.
        worst = max(tile, key=lambda d: tile[d])
        if tile[worst] == 1:
            break
        tile[worst] = largest_divisor_at_most(size[worst], tile[worst] - 1)
        mapping = build(tile)
    changed = [f"{d}:{min(wanted[d], size[d])}->{tile[d]}" for d in wanted
               if tile[d] != min(wanted[d], size[d])]
    return mapping, ",".join(changed)


def _matmul_mapping(problem, dims: GemminiDims, config, arch) -> Mapping:
    size = problem.size
    (m,) = dims.pixels if len(dims.pixels) == 1 else (None,)
    if m is None:
        raise NotAGemminiLayer(f"{problem.name}: expected one row dimension, got {dims.pixels}")
    k, n = dims.reduction, dims.output_channel
    ti, tj, tk = tiled_matmul_auto_tiles(size[m], size[n], size[k], config)
    wanted = {m: ti * config.dim, n: tj * config.dim, k: tk * config.dim}

    def build(tile):
        fx = largest_divisor_at_most(tile[k], config.dim)
        fy = largest_divisor_at_most(tile[n], config.dim)
        lv, levels = _levels(arch), _empty(arch)
        levels[lv["Registers"]].temporal = {m: tile[m]}
        acc = levels[lv["Accumulator"]]
        acc.temporal = {n: tile[n] // fy, k: tile[k] // fx}
        acc.order = (n, k)  # k outer, j inner: loop_ws
        acc.spatial_x, acc.spatial_y = {k: fx}, {n: fy}
        dram = levels[lv["DRAM"]]
        dram.temporal = {k: size[k] // tile[k], n: size[n] // tile[n], m: size[m] // tile[m]}
        for d in dims.shared:
            dram.temporal[d] = size[d]
        dram.order = (k, n, m) + dims.shared
        return Mapping(levels)

    mapping, rounded = _round_tiles(problem, arch, wanted, build)
    mapping.info = {"solver": "gemmini-tiled_matmul_auto",
                    "gemmini_tiles": f"I{ti} J{tj} K{tk} blocks", "rounded": rounded}
    return mapping


def _conv_mapping(problem, dims: GemminiDims, config, arch) -> Mapping:
    size = problem.size
    if len(dims.windows) != 2:
        raise NotAGemminiLayer(f"{problem.name}: tiled_conv_auto needs a 2-D window")
    (prow, krow, srow, drow), (pcol, kcol, scol, dcol) = dims.windows
    batch = [d for d in dims.pixels if d not in (prow, pcol)]
    nb = math.prod(size[d] for d in batch)
    c, k = dims.reduction, dims.output_channel
    shape = ConvShape(nb, size[prow], size[pcol], size[k], size[krow], size[kcol], size[c],
                      stride=(srow, scol), dilation=(drow, dcol))
    tb, tr, tc, tk, tkr, tkc, tch = tiled_conv_auto_tiles(shape, config)
    wanted = {prow: tr, pcol: tc, k: tk, krow: tkr, kcol: tkc, c: tch}
    # the batch tile spreads over the batch-like pixel dimensions, innermost first
    left = tb
    for d in reversed(batch):
        wanted[d] = largest_divisor_at_most(size[d], left)
        left = max(1, left // wanted[d])

    def build(tile):
        fx = largest_divisor_at_most(tile[c], config.dim)
        fy = largest_divisor_at_most(tile[k], config.dim)
        lv, levels = _levels(arch), _empty(arch)
        reg = levels[lv["Registers"]]
        reg.temporal = {pcol: tile[pcol], prow: tile[prow], **{d: tile[d] for d in batch}}
        reg.order = (pcol, prow, *reversed(batch))
        acc = levels[lv["Accumulator"]]
        acc.temporal = {c: tile[c] // fx, kcol: tile[kcol], krow: tile[krow], k: tile[k] // fy}
        acc.order = (c, kcol, krow, k)  # och blocks outermost, in-channel blocks innermost
        acc.spatial_x, acc.spatial_y = {c: fx}, {k: fy}
        dram = levels[lv["DRAM"]]
        outer = (c, kcol, krow, k, pcol, prow, *reversed(batch))
        dram.temporal = {d: size[d] // tile[d] for d in outer}
        for d in dims.shared:
            dram.temporal[d] = size[d]
        dram.order = outer + dims.shared
        return Mapping(levels)

    mapping, rounded = _round_tiles(problem, arch, wanted, build)
    mapping.info = {"solver": "gemmini-tiled_conv_auto",
                    "gemmini_tiles": f"batch{tb} orows{tr} ocols{tc} ochs{tk} krows{tkr} "
                                     f"kcols{tkc} kchs{tch}",
                    "rounded": rounded}
    return mapping
