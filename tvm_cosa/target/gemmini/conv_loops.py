"""Gemmini's CISC convolution loop (`gemmini_loop_conv_ws`) for a CoSA tile: one command per tile.

libgemmini's loop_conv_ws runs a whole convolution tile inside Gemmini: it moves the bias rows
into the accumulator, the input window and the weights into the scratchpad, issues every
preload / compute over the kernel window and the input channels, and moves the results out
through config_st's scale (int8; there is no full-width output). Its accumulator region
alternates between two halves by hidden state that only changes when a call has a bias and an
output, so every call here has both (a real bias, or zeros with `no_bias`) and computes its
outputs completely: the whole reduction runs inside one call. Hence it is used only for
convolutions whose requantization runs on the array (relax/fuse_requant.py), and only where
CoSA's schedule keeps the reduction inside its tiles.

The tile of one call is everything inside the outermost position where a CoSA tile moves in
(the input, weight and accumulator tiles' fill points): the output pixels and channels of
CoSA's tile, with the whole kernel window and all input channels. CoSA's schedule stays the
source of the tiling and of the order of the host loops around the calls; inside a call the loop
unit's order is Gemmini's. An input window or a weight slice that the next call needs again
(the inputs across output-channel tiles, the weights across pixel tiles, when those loops are
the innermost around the call) is passed as NULL: the loop unit keeps it in the scratchpad. The input is the lowering's
zero-padded NHWC copy, so the loop pads nothing except the rows past the end of the buffer that
its window formula (orows * stride + kernel - 1) asks for and no compute reads.

A tile qualifies when its working set fits half of the scratchpad and half of the accumulator
(loop_conv_ws double-buffers); otherwise the layer keeps the command-by-command program, with
the reason in the operator's registry entry.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ...problem import INPUTS, OUTPUTS, WEIGHTS
from .lowering import BIAS, NO_ACTIVATION, RELU, WEIGHT_STATIONARY


LOOP_CONV_WS_INSTRUCTIONS = 7  # RoCC instructions per call (six configurations and the loop)


@dataclass
class LoopConvTile:
    """Where the loop_conv_ws call sits in the plan and the extents of one call's tile."""

    position: int  # the call replaces Plan.loops[position:] (and everything inside)
    extents: dict  # dim -> extent of one call's tile
    in_rows: int  # input window of one call (the loop unit's formula)
    in_cols: int


def loop_conv_ws_tile(plan, views, op):
    """The LoopConvTile of the plan, or the reason loop_conv_ws cannot run its tiles."""
    problem, dims, config, dim = plan.problem, plan.dims, plan.config, plan.config.dim
    size = problem.size
    if op.kind != "conv2d" or len(dims.windows) != 2:
        return "not a 2-D convolution"
    if op.groups != 1:
        return "a grouped / depthwise convolution (loop_conv_ws's dw mode is not lowered)"
    if plan.padded:
        return "channels padded inside the plan"
    (ph, kh, sh, dh), (pw, kw, sw, dw) = dims.windows
    if sh != sw or dh != dw:
        return "different strides or dilations along H and W (loop_conv_ws takes one each)"
    if sh > (size[kh] - 1) * dh + 1:
        return (f"stride {sh} skips input rows the {size[kh]}x{size[kw]} window never reads; "
                "loop_conv_ws would move them all (its downsample mode is not lowered)")
    position = max(plan.tiles[t].fill for t in (INPUTS, WEIGHTS, OUTPUTS))
    split = sorted({lp.dim for lp in plan.loops[:position] if lp.dim in plan.reductions()})
    if split:
        return (f"CoSA's schedule splits the reduction ({', '.join(split)}) across scratchpad "
                "tiles; loop_conv_ws computes whole sums")
    ext = {d: 1 for d in problem.dims}
    for lp in plan.loops[position:] + plan.reg_loops:
        ext[lp.dim] *= lp.extent
    ext[dims.reduction] *= plan.fx
    ext[dims.output_channel] *= plan.fy
    batch = [d for d in dims.pixels if d not in (ph, pw)]
    if len(batch) > 1:
        return f"several batch dimensions {batch}"
    fields = {"output rows": ext[ph], "output columns": ext[pw], "channels": ext[
        dims.output_channel], "input channels": ext[dims.reduction]}
    too_wide = [name for name, n in fields.items() if n > 0xFFFF]
    if too_wide:
        return f"{', '.join(too_wide)} beyond loop_conv_ws's 16-bit fields"
    batches = math.prod(ext[d] for d in batch)
    in_rows = ext[ph] * sh + (size[kh] - 1) * dh
    in_cols = ext[pw] * sw + (size[kw] - 1) * dw
    och_blocks = math.ceil(ext[dims.output_channel] / dim)
    a_rows = math.ceil(ext[dims.reduction] / dim) * batches * in_rows * in_cols
    b_rows = och_blocks * size[kh] * size[kw] * ext[dims.reduction]
    c_rows = och_blocks * batches * ext[ph] * ext[pw]
    # what the command-by-command program issues for one such tile, at the least: a preload
    # and a compute per block, a mvin per input / weight / bias block, a mvout per output block
    out_blocks = och_blocks * batches * ext[ph] * math.ceil(ext[pw] / dim)
    k_blocks = size[kh] * size[kw] * math.ceil(ext[dims.reduction] / dim)
    commands = 2 * out_blocks * k_blocks + 2 * out_blocks + k_blocks * och_blocks + \
        math.ceil(ext[dims.reduction] / dim) * batches * in_rows
    if commands <= LOOP_CONV_WS_INSTRUCTIONS:
        return (f"a small tile (about {commands} commands, no more than loop_conv_ws's "
                f"{LOOP_CONV_WS_INSTRUCTIONS} instructions)")
    if a_rows + b_rows > config.spad_rows // 2 or c_rows > config.acc_rows // 2:
        return (f"the tile ({a_rows} input + {b_rows} weight scratchpad rows, {c_rows} "
                "accumulator rows) does not fit half the scratchpad / accumulator "
                "(loop_conv_ws double-buffers)")
    return LoopConvTile(position, ext, in_rows, in_cols)


def loop_conv_ws_emitter(base_cls):
    """An emitter class (a subclass of lowering._Emitter) issuing one loop_conv_ws per tile."""

    class LoopConvWsEmitter(base_cls):
        def __init__(self, plan, views, config, tile: LoopConvTile, requant):
            super().__init__(plan, views, config)
            self.tile = tile
            self.requant = requant

        def null(self):
            return self.tirx.call_intrin("handle", "tirx.reinterpret",
                                         self.tirx.const(0, "uint64"))

        def nest(self, pos):
            if pos < self.tile.position:
                return self.loop(self.vars[pos], self.plan.loops[pos].extent, self.nest(pos + 1))
            return self.loop_conv_ws()

        def shape(self, tensor):
            return [int(n) for n in self.views[tensor].buffer.shape]

        def loop_conv_ws(self):
            tirx, plan, tile = self.tirx, self.plan, self.tile
            dims, pos, size = plan.dims, tile.position, plan.problem.size
            (ph, kh, sh, dh), (pw, kw, _, _) = dims.windows
            ext = tile.extents
            origin = {d: self.index(d, 0, pos, registers=False) for d in plan.problem.dims}

            def ptr(tensor, mask):
                t = plan.problem.tensor(OUTPUTS if tensor == BIAS else tensor)
                coords = {a: self.axis_coord(OUTPUTS if tensor == BIAS else tensor, a, origin)
                          for a in range(len(t.axes))}
                return self.dram_ptr(tensor, coords, mask)

            def first(start):  # the loops in [start, pos) are at their first iteration
                return self.all_zero([self.vars[lp.index] for lp in plan.loops[start:pos]])

            _, in_h, in_w, in_c = self.shape(INPUTS)
            k_h, k_w, w_in, w_out = self.shape(WEIGHTS)
            batch_size, out_h, out_w, out_c = self.shape(OUTPUTS)
            # rows / columns of the window past the end of the (padded) input: zeros; the loop
            # unit's window is one stride longer than what the computes read
            dpad = self.simplify(tirx.max(self.const(0), origin[ph] * sh + tile.in_rows - in_h))
            rpad = self.simplify(tirx.max(self.const(0), origin[pw] * sh + tile.in_cols - in_w))
            batch = [d for d in dims.pixels if d not in (ph, pw)]
            batches = math.prod(ext[d] for d in batch)
            orows, ocols = ext[ph], ext[pw]
            ochs, kchs = ext[dims.output_channel], ext[dims.reduction]
            has_bias = BIAS in self.views
            weights, output, inputs = ptr(WEIGHTS, "r"), ptr(OUTPUTS, "w"), ptr(INPUTS, "r")
            bias = ptr(BIAS, "r") if has_bias else weights  # any non-NULL address: zeros
            def call_fill(tensor):
                """Just inside the innermost loop around the call that changes the tensor's
                part of the call: the loops inside it leave that part in the scratchpad."""
                relevant = plan.problem.tensor(tensor).dims
                return max([lp.index + 1 for lp in plan.loops[:pos] if lp.dim in relevant],
                           default=0)

            fa, fb = call_fill(INPUTS), call_fill(WEIGHTS)
            choices = {"weights": (None if fb >= pos else first(fb), weights),
                       "input": (None if fa >= pos else first(fa), inputs)}

            def make(args):
                return self.call(
                    "gemmini_loop_conv_ws", batch_size, in_h, in_w, in_c, out_c, out_h, out_w,
                    out_h, out_w, sh, 0, k_w, dh, 1, 1, 0,
                    batches, orows, ocols, ochs, size[kh], size[kw], kchs,
                    0, rpad, 0, dpad, 0, 0, 0, 0, orows, ocols,
                    args["weights"], output, bias, args["input"],
                    0 if has_bias else 1, 1, 0, 0, 0,
                    RELU if self.requant.relu else NO_ACTIVATION, 0, 0, 0, 0,
                    1, in_c, w_out, out_c, 0, 0, 0)

            def branch(names, args):
                if not names:
                    return make(args)
                name, rest = names[0], names[1:]
                cond, pointer = choices[name]
                if cond is None:
                    return branch(rest, {**args, name: pointer})
                return tirx.IfThenElse(cond, branch(rest, {**args, name: pointer}),
                                       branch(rest, {**args, name: self.null()}))

            return branch(["weights", "input"], {})

        def configs(self):
            # the loop unit sets its own load strides; the compute's A stride is the conv
            # stride; mvout through the requantization scale, one output pixel per row
            (_, _, sh, _), _ = self.plan.dims.windows
            out_c = self.shape(OUTPUTS)[-1]
            from . import isa

            return [
                self.call("gemmini_extended_config_ex", WEIGHT_STATIONARY, 0, 0, sh, 0, 0),
                self.call("gemmini_extended_config_st", out_c * self.views[OUTPUTS].elem_bytes,
                          RELU if self.requant.relu else NO_ACTIVATION,
                          isa.exact_float32(self.requant.scale)),
            ]

    return LoopConvWsEmitter
