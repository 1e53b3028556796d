"""The output-stationary program of a CoSA plan (GemminiConfig(dataflow="OS")).

CoSA's output-stationary Gemmini keeps the outputs in the PEs (the register level): the array
takes a pixel dimension on X (rows of A and C) and the output channels on Y, and the register
loops are the reduction that runs while a block of outputs stays in the array. The plan
(plan.make_plan) is the weight-stationary one with those roles; only the innermost part differs:
per block of fx pixels x fy output channels, the register loops become a chain of computes
(as in gemmini.h's sp_tiled_matmul_os): each `preload` names no D (the first compute starts the
PEs from zero) and the accumulator row only before the chain's last compute, which writes the
sums there (overwriting on the first reduction step of the host loops, accumulating after);
each compute brings A (pixels x a chunk of the reduction) and B (that chunk x output channels)
from the scratchpad. Host loops, tile moves, partial sums through DRAM: as in weight-stationary.
"""

from __future__ import annotations

from ...problem import INPUTS, OUTPUTS, WEIGHTS

OUTPUT_STATIONARY = 0


def os_emitter(base_cls):
    """An emitter class (a subclass of lowering._Emitter) for an output-stationary plan."""
    from .lowering import ACC_BIT, ACCUMULATE_BIT, GARBAGE

    class OutputStationaryEmitter(base_cls):
        def compute(self):
            tirx, plan, dims = self.tirx, self.plan, self.plan.dims
            point = {d: self.index(d) for d in plan.problem.dims}
            a_row, b_row, c_row = (self.tile_row(t) for t in (INPUTS, WEIGHTS, OUTPUTS))
            k_cols = self.clip(dims.output_channel, plan.fy, point[dims.output_channel])
            # a chunk past the real reduction (padded channels) still runs, with B = zeros, so
            # that the chain's first compute and its last (which writes C) always happen
            red = self.clip(dims.reduction, plan.red_chunk, point[dims.reduction])
            real = red > 0
            a_cols = self.simplify(tirx.Select(real, red, self.const(1)))
            bd = self.simplify(tirx.Select(real, b_row, self.const(GARBAGE)))
            rows = plan.fx
            # the chain: reduction loops (row groups of a 2-D pixel block run around it)
            links = [lp for lp in plan.reg_loops if lp.dim in dims.reductions]
            chain = [self.reg_vars[lp.index] for lp in links]
            first = self.simplify(self.all_zero(chain))
            last_terms = [v == lp.extent - 1 for v, lp in zip(chain, links)]
            last = self.simplify(tirx.all(*last_terms) if len(last_terms) > 1 else
                                 (last_terms[0] if last_terms else tirx.const(True, "bool")))
            red_vars = [self.vars[lp.index] for lp in plan.loops if lp.dim in plan.reductions()]
            overwrite = self.simplify(self.all_zero(red_vars))
            c_addr = self.simplify(c_row + ACC_BIT + tirx.Select(overwrite, self.const(0),
                                                                  self.const(ACCUMULATE_BIT)))
            out = self.simplify(tirx.Select(last, c_addr, self.const(GARBAGE)))
            preload = self.call("gemmini_extended_preload", GARBAGE, out, self.dim, self.dim,
                                k_cols, rows)
            args = (a_row, bd, a_cols, rows, k_cols, a_cols)
            pre = self.call("gemmini_extended_compute_preloaded", *args)
            acc = self.call("gemmini_extended_compute_accumulated", *args)
            if isinstance(first, tirx.IntImm):
                command = pre if first.value else acc
            else:
                command = tirx.IfThenElse(first, pre, acc)
            stmt = self.seq([preload, command])
            for lp in reversed(plan.reg_loops):
                stmt = self.loop(self.reg_vars[lp.index], lp.extent, stmt)
            stmt = self.loop(self.block, 1, stmt)  # one block of fx rows: nothing streams
            if plan.padded:  # a block of padded output channels: no chain at all
                stmt = tirx.IfThenElse(k_cols > 0, stmt, None)
            return stmt

    return OutputStationaryEmitter
