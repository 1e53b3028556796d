"""Find the conv2d and matmul calls of a Relax module and describe each as a Problem.

`extract(mod)` walks every Relax function's bindings in order and returns one `OpInfo` per
`relax.nn.conv2d` / `relax.matmul` call (supported or not) and per other multiply-accumulate
operator the project does not schedule (conv1d, conv3d, transposed convolutions, einsum), which
are listed with a reason and left untouched. `op_info(call)` builds the record from a single call;
the pass calls it again on the call it legalizes, so a schedule is found by `problem.key()` and
never by a binding name (names are not unique in Relax).

Padding folds into the Problem: P, Q come from the output shape and the input is the padded input,
as in Timeloop. Timeloop's letters: P is the output width, Q the output height, R the filter
width, S the filter height.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional

from ..problem import Problem

CONV2D, MATMUL = "relax.nn.conv2d", "relax.matmul"
SCHEDULED_OPS = (CONV2D, MATMUL)
# Multiply-accumulate operators that stay with TVM's default schedule, reported as unsupported.
OTHER_MAC_OPS = ("relax.nn.conv1d", "relax.nn.conv3d", "relax.nn.conv1d_transpose",
                 "relax.nn.conv2d_transpose", "relax.einsum")
# int32: ONNX MatMulInteger arrives widened to int32 by the TVM importer.
SUPPORTED_DTYPES = ("float32", "float16", "int8", "uint8", "int32")
CONV_DATA_LAYOUTS = ("NCHW", "NHWC")


@dataclass
class OpInfo:
    """One operator found in the module. `problem` is None when the operator is unsupported."""

    index: int  # position in the module (binding order over all functions)
    op: str  # the Relax operator name, e.g. "relax.nn.conv2d"
    kind: str  # "conv2d", "matmul", or the short op name when unsupported
    name: str  # binding variable name (informative only: not unique)
    function: str  # the Relax function it was found in
    problem: Optional[Problem]
    reason: str = ""  # why it is unsupported ("" when supported)
    layout: str = ""  # conv: data layout (NCHW/NHWC); matmul: "MK,KN"
    kernel_layout: str = ""
    dtype: str = ""  # input dtype
    out_dtype: str = ""
    strides: tuple = ()
    padding: tuple = ()  # (top, left, bottom, right)
    dilation: tuple = ()
    groups: int = 1
    shapes: dict = field(default_factory=dict)  # "input", "weight", "output" -> tuple
    # matmul: how batch dimensions map to the Problem: "none", "batch" or "fold" (into M)
    batch_mode: str = "none"
    call: Any = field(default=None, repr=False, compare=False)

    @property
    def supported(self) -> bool:
        return self.problem is not None

    def shape_text(self) -> str:
        """Short human-readable shape: `conv2d 3x3/2 64->128 28x28` or `matmul 128x768x768`."""
        if self.problem is None:
            return " x ".join("x".join(map(str, s)) for s in self.shapes.values())
        size = self.problem.size
        if self.kind == "conv2d":
            stride = self.strides[0] if len(set(self.strides)) == 1 else "x".join(
                map(str, self.strides))
            groups = f" g{self.groups}" if self.groups != 1 else ""
            cin = size["C"] * self.groups
            cout = size["K"] * self.groups
            return (f"{size['S']}x{size['R']}/{stride} {cin}->{cout}{groups} "
                    f"{size['Q']}x{size['P']}" + (f" N{size['N']}" if size["N"] > 1 else ""))
        batch = f"{size['B']}x" if "B" in size else ""
        return f"{batch}{size['M']}x{size['K']}x{size['N']}"


def _static_shape(expr) -> Optional[tuple]:
    """The static shape of a tensor expression, or None when unknown or symbolic."""
    ty = getattr(expr, "ty", None)
    shape = getattr(ty, "shape", None)
    values = getattr(shape, "values", None)
    if values is None:
        return None
    try:
        return tuple(int(v) for v in values)
    except (TypeError, ValueError):
        return None


def _dtype(expr) -> str:
    return str(getattr(getattr(expr, "ty", None), "dtype", ""))


def op_info(call, *, index: int = 0, name: str = "", function: str = "") -> Optional[OpInfo]:
    """The record of one Relax call, or None when the call is not a multiply-accumulate operator."""
    op_name = getattr(getattr(call, "op", None), "name", None)
    if op_name not in SCHEDULED_OPS + OTHER_MAC_OPS:
        return None
    short = op_name.split(".")[-1]
    info = OpInfo(index=index, op=op_name, kind=short, name=name, function=function,
                  problem=None, call=call)
    shapes = [_static_shape(a) for a in call.args[:2]] + [_static_shape(call)]
    info.shapes = {k: s for k, s in zip(("input", "weight", "output"), shapes) if s is not None}
    info.dtype = _dtype(call.args[0])
    info.out_dtype = _dtype(call)
    if op_name in OTHER_MAC_OPS:
        info.reason = f"{short} is not scheduled by CoSAPass (only conv2d and matmul)"
        return info
    if any(s is None for s in shapes):
        info.reason = "dynamic or unknown shape"
        return info
    dtypes = {_dtype(a) for a in call.args[:2]}
    bad = sorted(d for d in dtypes if d not in SUPPORTED_DTYPES)
    if bad:
        info.reason = f"dtype {', '.join(bad)} not supported (supported: {SUPPORTED_DTYPES})"
        return info
    if op_name == CONV2D:
        _fill_conv2d(info, call, *shapes)
    else:
        _fill_matmul(info, *shapes)
    return info


def _fill_conv2d(info: OpInfo, call, data, weight, out):
    attrs = call.attrs
    info.layout = str(attrs.data_layout)
    info.kernel_layout = str(attrs.kernel_layout)
    info.strides = tuple(int(s) for s in attrs.strides)
    info.padding = tuple(int(p) for p in attrs.padding)
    info.dilation = tuple(int(d) for d in attrs.dilation)
    info.groups = int(attrs.groups)
    out_layout = str(getattr(attrs, "out_layout", "") or info.layout)
    if info.layout not in CONV_DATA_LAYOUTS or out_layout != info.layout:
        info.reason = (f"data layout {info.layout} -> {out_layout} (supported: NCHW or NHWC, "
                       "same layout in and out)")
        return
    if sorted(info.kernel_layout) != sorted("OIHW"):
        info.reason = f"kernel layout {info.kernel_layout} (expected a permutation of OIHW)"
        return
    d = dict(zip(info.layout, data))
    o = dict(zip(info.layout, out))
    w = dict(zip(info.kernel_layout, weight))
    g = info.groups
    if g < 1 or w["O"] % g or d["C"] != w["I"] * g:
        info.reason = f"inconsistent groups={g} for input {data} and weight {weight}"
        return
    info.problem = Problem.conv2d(
        N=o["N"], K=w["O"] // g, C=w["I"], P=o["W"], Q=o["H"], R=w["W"], S=w["H"],
        stride=info.strides, dilation=info.dilation, groups=g, name=f"conv2d_{info.index}")
    info.kind = "conv2d"


def _fill_matmul(info: OpInfo, a, b, out):
    info.layout = "MK,KN"
    if len(a) < 2 or len(b) < 2:
        info.reason = f"matmul of a 1-D operand ({a} x {b}) is not scheduled"
        return
    (M, K), N = a[-2:], b[-1]
    a_batch, b_batch, out_batch = a[:-2], b[:-2], out[:-2]
    batch = math.prod(out_batch)
    if math.prod(b_batch) == 1:
        # Weights shared by every batch entry: the batch is more rows of one matmul.
        info.batch_mode = "fold" if batch > 1 else "none"
        info.problem = Problem.matmul(M=batch * M, N=N, K=K, name=f"matmul_{info.index}")
    elif _pad_left(a_batch, len(out_batch)) == _pad_left(b_batch, len(out_batch)) == out_batch:
        info.batch_mode = "batch"
        info.problem = Problem.matmul(M=M, N=N, K=K, batch=batch, name=f"matmul_{info.index}")
    else:
        info.reason = f"broadcast batch dimensions {a_batch} x {b_batch} are not scheduled"
        return
    info.kind = "matmul"


def _pad_left(shape, n):
    return (1,) * (n - len(shape)) + tuple(shape)


def extract(mod) -> list[OpInfo]:
    """Every multiply-accumulate operator of every Relax function in `mod`, in binding order."""
    from tvm import relax

    found: list[OpInfo] = []

    @relax.expr_functor.visitor
    class _Collector(relax.PyExprVisitor):
        def __init__(self, function_name):
            super().__init__()
            self.function_name = function_name

        def visit_var_binding_(self, binding):
            info = op_info(binding.value, index=len(found), name=binding.var.name,
                           function=self.function_name)
            if info is not None:
                found.append(info)
            self.visit_expr(binding.value)

    for gvar, func in mod.functions.items():
        if isinstance(func, relax.Function):
            _Collector(gvar.name_hint).visit_expr(func)
    return found


def count_other_ops(mod) -> dict[str, int]:
    """How many calls of each other Relax operator the module has (left untouched by the pass)."""
    import tvm
    from tvm import relax

    counts: dict[str, int] = {}

    def visit(expr):
        if isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op):
            name = expr.op.name
            if name not in SCHEDULED_OPS + OTHER_MAC_OPS:
                counts[name] = counts.get(name, 0) + 1

    for func in mod.functions.values():
        if isinstance(func, relax.Function):
            relax.analysis.post_order_visit(func, visit)
    return dict(sorted(counts.items()))
