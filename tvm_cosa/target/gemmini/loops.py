"""Gemmini's CISC matmul loop (`gemmini_loop_ws`) for a CoSA tile: one command per tile.

The CoSA plan (plan.py) says which host loops run above the scratchpad tiles and where each tile
is moved in. When the layer is a matrix product in DRAM (a matmul, or a 1x1 convolution whose
tile of output pixels is one evenly strided run of rows in both the input and the output), the
whole work inside the scratchpad tiles -- moving the input and weight tiles in, every
preload / compute, moving the results out -- is what `loop_ws` does in hardware, so the CPU
issues one loop instruction per tile instead of every command. CoSA's schedule stays the
source of the tiling and of the order of the host loops; inside a tile the loop unit's order
(k, j, i) is Gemmini's. A tile qualifies only when its working set fits half of the
scratchpad and half of the accumulator (loop_ws double-buffers); otherwise the layer keeps the
command-by-command program.

Reuse across tiles follows the plan: a tile that stays resident while inner host loops run
(the inputs across output-channel loops, say) is passed as NULL to the loops that reuse it, so
the loop unit does not move it again; partial sums cross DRAM (D = the output, after a fence)
or stay in the accumulator (ex_accumulate) exactly where the plan keeps them.

A requantized operator (requant.py; no partial sums cross DRAM) passes its bias as D with a D
stride of 0 on the first reduction step (one bias row per output row, as gemmini.h's
repeating bias), accumulates onto it, and moves C out as int8 (full_C = 0) through config_st's
scale and activation.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

from ...problem import INPUTS, OUTPUTS, WEIGHTS

# Whether lower() uses loop_ws where a tile allows it (benchmarks compare both).
_ENABLED = [True]


@contextlib.contextmanager
def loop_instructions(enabled: bool):
    """Within this block, lowering uses (or not) Gemmini's CISC loop instructions."""
    old = _ENABLED[0]
    _ENABLED[0] = bool(enabled)
    try:
        yield
    finally:
        _ENABLED[0] = old


def enabled() -> bool:
    return _ENABLED[0]


@dataclass
class LoopWsTile:
    """Where the loop_ws call sits in the plan, and the strides it is given."""

    position: int  # the call replaces Plan.loops[position:] (and everything inside)
    extents: dict  # dim -> extent of one call's tile
    rows: int  # output pixels per call (I * DIM >= rows)
    blocks: tuple  # (I, J, K) of the full tile, in DIM blocks
    a_stride: int  # DRAM elements between consecutive A rows (inputs)
    b_stride: int  # ... between weight rows (along the reduction)
    c_stride: int  # ... between output rows


def _dim_stride(problem, view, tensor, dim) -> int:
    """Elements between consecutive values of `dim` in the tensor's DRAM view."""
    t = problem.tensor(tensor)
    return sum(dict(axis).get(dim, 0) * view.strides[i] for i, axis in enumerate(t.axes))


def loop_ws_tile(plan, views):
    """The LoopWsTile of the plan, or the reason loop_ws cannot run its tiles (a string)."""
    problem, dims, config, dim = plan.problem, plan.dims, plan.config, plan.config.dim
    size = problem.size
    if any(size[w] != 1 for w in dims.window):
        return "a kernel window larger than 1x1 (loop_conv_ws is not lowered)"
    fa, fb, fc = (plan.tiles[t].fill for t in (INPUTS, WEIGHTS, OUTPUTS))
    position = max(fa, fb)
    out_dims = problem.tensor(OUTPUTS).dims
    between = [lp for lp in plan.loops[fc:position]]
    if any(lp.dim in out_dims for lp in between):
        return "the accumulator tile spans several scratchpad tiles"
    ext = {d: 1 for d in problem.dims}
    for lp in plan.loops[position:] + plan.reg_loops:
        ext[lp.dim] *= lp.extent
    ext[dims.reduction] *= plan.fx
    ext[dims.output_channel] *= plan.fy
    if any(ext[d] > 1 for d in dims.shared):
        return f"a tile spans several {', '.join(dims.shared)}"
    # the tile's output pixels must be one run of evenly strided rows in A and in C
    pixels = sorted((d for d in dims.pixels if ext[d] > 1),
                    key=lambda d: -_dim_stride(problem, views[OUTPUTS], OUTPUTS, d))
    strides = {}
    for tensor in (INPUTS, OUTPUTS):
        s = {d: _dim_stride(problem, views[tensor], tensor, d) for d in pixels}
        for outer, inner in zip(pixels, pixels[1:]):
            if s[outer] != s[inner] * ext[inner]:
                return f"the tile's {tensor.lower()} rows are not evenly strided in DRAM"
        strides[tensor] = s[pixels[-1]] if pixels else 1
    unit = ((INPUTS, dims.reduction), (WEIGHTS, dims.output_channel),
            (OUTPUTS, dims.output_channel))
    for tensor, d in unit:
        if _dim_stride(problem, views[tensor], tensor, d) != 1:
            return f"{tensor.lower()} are not contiguous along {d}"
    rows = math.prod(ext[d] for d in dims.pixels)
    blocks = (math.ceil(rows / dim), math.ceil(ext[dims.output_channel] / dim),
              math.ceil(ext[dims.reduction] / dim))
    i, j, k = blocks
    if i * j * k == 1:
        return "a one-block tile: five commands, fewer than loop_ws's six"
    if (i * k + k * j) * dim > config.spad_rows // 2 or i * j * dim > config.acc_rows // 2:
        return (f"the tile ({i}x{j}x{k} blocks) does not fit half the scratchpad / accumulator "
                "(loop_ws double-buffers)")
    return LoopWsTile(position, ext, rows, blocks, strides[INPUTS],
                      _dim_stride(problem, views[WEIGHTS], WEIGHTS, dims.reduction),
                      strides[OUTPUTS])


def loop_ws_emitter(base_cls):
    """An emitter class (a subclass of lowering._Emitter) issuing one loop_ws per tile."""
    from . import isa
    from .lowering import BIAS, NO_ACTIVATION, RELU, WEIGHT_STATIONARY

    class LoopWsEmitter(base_cls):
        def __init__(self, plan, views, config, tile: LoopWsTile):
            super().__init__(plan, views, config)
            self.tile = tile

        def null(self):
            return self.tirx.call_intrin("handle", "tirx.reinterpret",
                                         self.tirx.const(0, "uint64"))

        def nest(self, pos):
            plan, tile = self.plan, self.tile
            if pos < tile.position:
                return self.loop(self.vars[pos], plan.loops[pos].extent, self.nest(pos + 1))
            return self.loop_ws()

        def loop_ws(self):
            tirx, plan, tile, dim = self.tirx, self.plan, self.tile, self.dim
            dims, pos = plan.dims, tile.position
            origin = {d: self.index(d, 0, pos, registers=False) for d in plan.problem.dims}

            def ptr(tensor, mask):  # (the bias view is over the output's axes)
                axes_of = OUTPUTS if tensor == BIAS else tensor
                t = plan.problem.tensor(axes_of)
                coords = {a: self.axis_coord(axes_of, a, origin) for a in range(len(t.axes))}
                return self.dram_ptr(tensor, coords, mask)

            def first(start):  # the loops in [start, pos) are at their first iteration
                return self.all_zero([self.vars[lp.index] for lp in plan.loops[start:pos]])

            def blocks(d, full):  # (blocks, padding) of the real part of the tile along d
                real = self.clip(d, full, origin[d])
                count = self.simplify((real + dim - 1) // dim)
                return count, self.simplify(count * dim - real), real

            fc = plan.tiles[OUTPUTS].fill
            fa, fb = plan.tiles[INPUTS].fill, plan.tiles[WEIGHTS].fill
            red = plan.reductions()
            split = min(fc, pos)
            outer_red = [self.vars[lp.index] for lp in plan.loops[:split] if lp.dim in red]
            inner_red = plan.loops[split:pos]  # reduction loops inside one accumulator tile
            partial = tirx.Not(self.all_zero(outer_red)) if outer_red else None
            started = tirx.Not(self.all_zero([self.vars[lp.index] for lp in inner_red])) \
                if inner_red else None
            last = [self.vars[lp.index] == lp.extent - 1 for lp in inner_red]
            done = tirx.all(*last) if len(last) > 1 else (last[0] if last else None)

            i_blocks = tile.blocks[0]
            pad_i = i_blocks * dim - tile.rows
            j_blocks, pad_j, real_j = blocks(dims.output_channel,
                                             tile.extents[dims.output_channel])
            k_blocks, pad_k, real_k = blocks(dims.reduction, tile.extents[dims.reduction])
            a = ptr(INPUTS, "r")
            b = ptr(WEIGHTS, "r")
            c = ptr(OUTPUTS, "w")
            # a pointer or NULL, by a condition: TIR has no select of pointers, so each
            # combination is its own call under an if
            choices = {"A": (None if fa >= pos else first(fa), a),
                       "B": (None if fb >= pos else first(fb), b),
                       "D": (False if partial is None else partial, ptr(OUTPUTS, "r")),
                       "C": (done, c)}
            accumulate = [x for x in (partial, started) if x is not None]
            ex_acc = self.const(0) if not accumulate else tirx.Select(
                tirx.any(*accumulate) if len(accumulate) > 1 else accumulate[0],
                self.const(1), self.const(0))
            requant = getattr(self, "requant", None)
            full_c, act, d_stride = 1, 0, tile.c_stride
            if requant is not None:  # int8 C through config_st's scale (requant.py)
                full_c, act = 0, int(requant.relu)
                if requant.bias:  # the bias rows (D stride 0) on the first reduction step,
                    # accumulated onto from the first compute on
                    d_stride, ex_acc = 0, self.const(1)
                    choices["D"] = (None if started is None else tirx.Not(started),
                                    ptr(BIAS, "r"))

            def make(args):
                return self.call("gemmini_loop_ws", i_blocks, j_blocks, k_blocks, pad_i, pad_j,
                                 pad_k, args["A"], args["B"], args["D"], args["C"],
                                 tile.a_stride, tile.b_stride, d_stride, tile.c_stride,
                                 0, 0, full_c, 0, ex_acc, act, 0, 0, 0)

            def branch(names, args):
                if not names:
                    return make(args)
                name, rest = names[0], names[1:]
                cond, pointer = choices[name]
                if cond is None:  # always the pointer
                    return branch(rest, {**args, name: pointer})
                if cond is False:  # always NULL
                    return branch(rest, {**args, name: self.null()})
                return tirx.IfThenElse(cond, branch(rest, {**args, name: pointer}),
                                       branch(rest, {**args, name: self.null()}))

            call = branch(["A", "B", "D", "C"], {})
            stmts = []
            if partial is not None:  # the partial sums a mvout wrote come back in as D
                stmts.append(tirx.IfThenElse(partial, self.call("gemmini_fence"), None))
            stmts.append(call)
            stmt = self.seq(stmts)
            if plan.padded:
                stmt = tirx.IfThenElse(tirx.all(real_j > 0, real_k > 0), stmt, None)
            return stmt

        def configs(self):
            # the move strides are the tile's flattened rows, not the plan's streaming axes
            tile, views = self.tile, self.views
            requant = getattr(self, "requant", None)
            store = self.call("gemmini_config_st", tile.c_stride * views[OUTPUTS].elem_bytes)
            d_stride = tile.c_stride * views[OUTPUTS].elem_bytes
            if requant is not None:  # bias rows repeat; C scaled to int8 (and ReLU)
                d_stride = 0
                store = self.call("gemmini_extended_config_st",
                                  tile.c_stride * views[OUTPUTS].elem_bytes,
                                  RELU if requant.relu else NO_ACTIVATION,
                                  isa.exact_float32(requant.scale))
            return [
                self.call("gemmini_extended_config_ex", WEIGHT_STATIONARY, 0, 0, 1, 0, 0),
                self.config_ld(tile.a_stride * views[INPUTS].elem_bytes, 0),
                self.config_ld(tile.b_stride * views[WEIGHTS].elem_bytes, 1),
                self.config_ld(d_stride, 2),
                store,
            ]

    return LoopWsEmitter
