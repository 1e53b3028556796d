"""Requantization on the Gemmini array: a conv2d / matmul whose int32 result is scaled back to
int8 by Gemmini's mvout instead of by separate operators on the CPU.

gemmini.h's own kernels (tiled_conv_auto, tiled_matmul_auto) load an int32 bias into the
accumulator (mvin3 of one bias row repeated with a DRAM row stride of 0), accumulate the
products onto it and move the results out through `config_st`'s scale: libgemmini's
ACC_SCALE, `saturate_int8(round_half_even(float(acc) * scale))`, then the activation (ReLU).
`Requant` says what one operator does; `fused_signature` builds the PrimFunc signature
(input, weight, bias, int8 output) the lowering fills with that program (lowering.lower with
`requant=`). Which Relax chains become such operators is decided in
tvm_cosa.relax.fuse_requant.

Only what ACC_SCALE computes bit for bit is fused: one float32 multiplier per tensor (> 0, so
that ReLU before or after the scaling is the same), output zero point 0, int8 output.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...problem import OUTPUTS
from .plan import UnsupportedMapping


@dataclass(frozen=True)
class Requant:
    """int8 output = relu?(saturate(round_half_even(float32(acc + bias) * scale)))."""

    scale: float  # float32 multiplier (the accumulator is multiplied by it)
    relu: bool = False
    bias: bool = False  # an int32 bias per output channel is an extra input (after the weights)

    def __post_init__(self):
        value = np.float32(self.scale)
        if not (np.isfinite(value) and value > 0):
            raise ValueError(f"requantization scale {self.scale!r}: must be a finite float32 > 0")

    def key(self) -> str:
        bits = int(np.float32(self.scale).view(np.uint32))
        return f"scale=0x{bits:08x},relu={int(self.relu)},bias={int(self.bias)}"

    def apply(self, acc: np.ndarray) -> np.ndarray:
        """The int8 result of int32 sums `acc` (bias included), as libgemmini computes it and as
        onnxruntime requantizes: float32 product, round half to even, saturate, ReLU."""
        product = acc.astype(np.float32) * np.float32(self.scale)
        out = np.clip(np.rint(product), -128, 127)
        if self.relu:
            out = np.maximum(out, 0)
        return out.astype(np.int8)


def check_requant(plan, requant: Requant):
    """Raise UnsupportedMapping when the plan cannot write requantized outputs: the scaled
    mvout writes int8, so every output must leave the accumulator once, with its whole sum."""
    if plan.config.dtype != "int8":
        raise UnsupportedMapping(f"requantization of {plan.config.dtype} results (int8 only)")
    if plan.dataflow != "WS":
        raise UnsupportedMapping("requantization on the array is lowered for the weight-"
                                 "stationary dataflow only")
    fill = plan.tiles[OUTPUTS].fill
    split = [lp.dim for lp in plan.loops[:fill] if lp.dim in plan.reductions()]
    if split:
        raise UnsupportedMapping(
            f"CoSA's schedule splits the reduction ({', '.join(sorted(set(split)))}) outside "
            "the accumulator tile: partial sums go through DRAM as int32, so the int8 output "
            "cannot be written by the accumulator")


def fused_signature(prim_func, bias_channels: int, bias: bool = True):
    """A PrimFunc (input, weight, [bias int32[bias_channels],] output int8) with the shapes of
    the legalized operator `prim_func` (input, weight, output int32); its body is replaced."""
    from tvm import te

    data, weight, out = prim_func.params
    shape = lambda p: [int(n) for n in p.shape]  # noqa: E731
    x = te.placeholder(shape(data), str(data.dtype), name="data")
    w = te.placeholder(shape(weight), str(weight.dtype), name="weight")
    # (the body is replaced: the computation here only declares the output buffer)
    if bias:
        b = te.placeholder([bias_channels], "int32", name="bias")
        y = te.compute(shape(out), lambda *i: b[i[-1] % bias_channels].astype("int8"),
                       name="output")
        args = [x, w, b, y]
    else:
        y = te.compute(shape(out), lambda *i: x[(0,) * len(x.shape)], name="output")
        args = [x, w, y]
    return te.create_prim_func(args).without_attr("global_symbol")
