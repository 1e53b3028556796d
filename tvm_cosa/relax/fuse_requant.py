"""Fuse a Gemmini operator's requantization into it: conv2d / matmul -> (bias) -> requant runs as
one Gemmini operator that writes int8 (mvout through config_st's scale), instead of an int32
result requantized by separate operators on the CPU.

    compiled = flow.compile_module(mod, "gemmini")       # applies it after CoSAPass
    mod, fusions = fuse_requant(mod)                     # or by hand, on a CoSAPass output
    seq = tvm.transform.Sequential([GemminiPrepare(16), CoSAPass("gemmini"), FuseRequant().pass_])

It runs after CoSAPass has scheduled and lowered the operators, because whether the fused form
is exact depends on CoSA's plan: the scaled mvout writes int8, so every output must leave the
accumulator once with its whole sum (a schedule that splits the reduction outside the
accumulator tile keeps its partial sums in DRAM as int32, and stays unfused). The operator is
lowered again from the same CoSA mapping (`lowering.lower(..., requant=)`), so the tiling and
the host-loop order are CoSA's in both forms.

The chains matched, each intermediate value used only by the next step (any other chain, and
any operator that is not Gemmini-lowered, is left as it is, with the reason in the result):

    acc = call_tir(<gemmini conv2d / matmul>, (x, w))          # int32
    [acc = add(acc, bias)]        bias: an int32 constant along the output channel only
    [acc = relu(acc)]
    f = astype(acc, "float32")
    either  y = quantize(f, scale, zero_point=0, out_dtype="int8")
            (or zero_point=128, out_dtype="uint8": the int8 result + 128, added on the CPU)
            (scale: one power of two, so float(acc) / scale == float(acc) * (1 / scale) exactly)
    or      y = astype(clip(round(multiply(f, m) [+ 0]), -128, 127), "int8")
            (or + 128, clip 0..255, "uint8")
            (m: one float32 multiplier, as onnx_int8's QLinearConv / QLinearMatMul requantize)

with layout steps anywhere after the bias (permute_dims; reshapes that keep the channels the
last axis) or right after the operator (the strided_slice of channels GemminiPrepare padded):
they are replayed, in order, on the int8 result.

Gemmini's ACC_SCALE is `saturate_int8(round_half_even(float32(acc) * m))` followed by the
activation: the same bits as these chains when m > 0 (ReLU commutes with a positive scale).
Per-channel multipliers, other output zero points, other output types and scales that are not
a power of two (a division) are not what ACC_SCALE computes, and stay on the CPU.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

OP_ATTR = "gemmini.op_id"


@dataclass
class Fusion:
    """One Gemmini operator call and what happened to its requantization."""

    kernel: str  # the Gemmini PrimFunc it called
    shape: str
    fused: bool
    reason: str = ""  # why not fused, or what was fused
    requant: Optional[object] = None  # target.gemmini.requant.Requant


@dataclass
class FusionReport:
    fusions: list = field(default_factory=list)

    @property
    def fused(self) -> int:
        return sum(f.fused for f in self.fusions)

    def text(self) -> str:
        lines = [f"requantization on the Gemmini array: {self.fused} of {len(self.fusions)} "
                 "Gemmini operator calls"]
        for f in self.fusions:
            what = "on the array" if f.fused else "on the CPU"
            lines.append(f"  {f.kernel} {f.shape}: requantization {what}: {f.reason}")
        return "\n".join(lines)


def _op_name(expr) -> str:
    return getattr(getattr(expr, "op", None), "name", "")


def _dtype(expr) -> str:
    return str(getattr(getattr(expr, "ty", None), "dtype", ""))


def _constant(expr) -> Optional[np.ndarray]:
    """The numpy value of a tensor constant, else None."""
    from tvm.ir import Constant

    value = getattr(expr, "value", None) if isinstance(expr, Constant) else None
    return value.numpy() if hasattr(value, "numpy") else None


def _scalar(expr) -> Optional[float]:
    """The value of a 1-element tensor constant or of a scalar (prim value), else None."""
    value = _constant(expr)
    if value is not None:
        return float(value.reshape(-1)[0]) if value.size == 1 else None
    inner = getattr(expr, "value", None)  # a FloatImm / IntImm, or a PrimValue holding one
    inner = getattr(inner, "value", inner)
    return float(inner) if isinstance(inner, (int, float)) and not isinstance(inner, bool) \
        else None


class _Chain:
    """Walks the single-use chain after a Gemmini operator's int32 result."""

    def __init__(self, bindings: dict, users: dict):
        self.bindings, self.users = bindings, users

    def resolve(self, expr):
        """A variable's bound value, through casts of constants (`astype(const)`): the
        constant, else the expression itself."""
        from tvm import relax

        seen = 0
        while isinstance(expr, relax.Var) and expr in self.bindings and seen < 8:
            expr, seen = self.bindings[expr], seen + 1
        if _op_name(expr) == "relax.astype" and _constant(expr.args[0]) is not None:
            return expr.args[0]
        return expr

    def next(self, var):
        """The binding (var, value) that is the only use of `var`, else None."""
        users = self.users.get(var, [])
        if len(users) != 1 or users[0] is None:  # None: the function's result
            return None
        return users[0], self.bindings[users[0]]


class NotFusable(Exception):
    pass


LAYOUT_OPS = ("relax.permute_dims", "relax.strided_slice", "relax.reshape")


def _last_dim(expr) -> Optional[int]:
    try:
        return int(expr.ty.shape.values[-1])
    except (AttributeError, IndexError, TypeError, ValueError):
        return None
# output type -> the zero point that makes it Gemmini's int8 result: uint8 activations are
# int8 ones shifted by 128 (saturate_uint8(r + 128) == saturate_int8(r) + 128)
OUTPUT_ZERO_POINT = {"int8": 0.0, "uint8": 128.0}


def _channel_prefix(value, ndim) -> Optional[int]:
    """The channel count a strided_slice keeps when it keeps channels [0, n) of the last axis
    (GemminiPrepare's slice of padded output channels), else None."""
    try:
        axes, begin, end = ([int(v) for v in arg] for arg in value.args[1:4])
        strides = [int(v) for v in value.args[4]] if len(value.args) > 4 else [1]
    except (TypeError, ValueError):
        return None
    if axes == [ndim - 1] and begin == [0] and strides == [1]:
        return end[0]
    return None


def match_chain(acc_var, channels: int, chain: _Chain):
    """(Requant, bias constant or None (padded to `channels`), the bindings after acc_var that
    the fusion replaces, the last binding's var, the layout steps (permute_dims / channel
    strided_slice / reshape calls, in order) to replay on the int8 result, the output type).
    Raises NotFusable."""
    from ..target.gemmini.requant import Requant

    var, bias, relu, layout = acc_var, None, False, []
    replaced = []
    real_channels = channels

    def step(expected, bias_done=True):
        """The next operator of the chain; layout steps on the way are recorded (every other
        step is elementwise with per-tensor constants, so they commute with it)."""
        nonlocal var, real_channels
        while True:
            found = chain.next(var)
            if found is None:
                raise NotFusable(f"its result has {len(chain.users.get(var, []))} uses, or is "
                                 "the function's result (a requantization chain needs "
                                 "exactly one use)")
            previous, (var, value) = var, found
            replaced.append(var)
            name = _op_name(value)
            if name == "relax.permute_dims" and bias_done:
                layout.append(value)
                continue
            if name == "relax.reshape" and _last_dim(value) is not None and \
                    _last_dim(value) == _last_dim(previous):
                layout.append(value)  # (the channels stay the last axis: the bias broadcasts)
                continue
            if name == "relax.strided_slice" and not layout:
                kept = _channel_prefix(value, len(value.ty.shape.values))
                if kept is None:
                    raise NotFusable("a strided_slice that is not a prefix of the channels")
                real_channels = kept
                layout.append(value)
                continue
            if name not in expected:
                raise NotFusable(f"followed by {name or type(value).__name__}, not a "
                                 "requantization")
            step.previous = previous
            return value

    value = step(("relax.add", "relax.nn.relu", "relax.astype"), bias_done=False)
    if _op_name(value) == "relax.add":
        other = [a for a in value.args if not a.same_as(step.previous)]
        bias = _constant(chain.resolve(other[0])) if len(other) == 1 else None
        if bias is None or bias.dtype != np.int32 or bias.size != real_channels or \
                bias.ndim == 0 or bias.shape[-1] != real_channels:
            raise NotFusable("its add is not an int32 bias constant along the output channels")
        bias = np.concatenate([bias.reshape(-1), np.zeros(channels - real_channels, np.int32)])
        value = step(("relax.nn.relu", "relax.astype"))
    if _op_name(value) == "relax.nn.relu":
        relu = True
        value = step(("relax.astype",))
    if _dtype(value) != "float32":
        raise NotFusable(f"cast to {_dtype(value)}, not float32")
    value = step(("relax.quantize", "relax.multiply"))
    if _op_name(value) == "relax.quantize":
        scale, zero = _scalar(chain.resolve(value.args[1])), _scalar(chain.resolve(value.args[2]))
        out_dtype = str(value.attrs.out_dtype)
        if out_dtype not in OUTPUT_ZERO_POINT:
            raise NotFusable(f"quantizes to {out_dtype} (Gemmini writes int8)")
        if zero != OUTPUT_ZERO_POINT[out_dtype]:
            raise NotFusable(f"output zero point {zero} (Gemmini's int8 needs "
                             f"{OUTPUT_ZERO_POINT[out_dtype]} for {out_dtype})")
        if scale is None:
            raise NotFusable("a per-channel or non-constant scale")
        mantissa, _ = np.frexp(np.float32(scale))
        if mantissa != 0.5:
            raise NotFusable(f"scale {scale!r} is not a power of two: quantize divides by it, "
                             "ACC_SCALE multiplies (the products round differently)")
        multiplier = float(np.float32(1.0) / np.float32(scale))
    else:
        factor = [a for a in value.args if not a.same_as(step.previous)]
        multiplier = _scalar(chain.resolve(factor[0])) if len(factor) == 1 else None
        if multiplier is None:
            raise NotFusable("a per-channel or non-constant multiplier")
        value = step(("relax.round",))
        value = step(("relax.add", "relax.clip"))
        zero = 0.0
        if _op_name(value) == "relax.add":
            other = [a for a in value.args if not a.same_as(step.previous)]
            zero = _scalar(chain.resolve(other[0])) if len(other) == 1 else None
            value = step(("relax.clip",))
        low, high = _scalar(value.args[1]), _scalar(value.args[2])
        value = step(("relax.astype",))
        out_dtype = _dtype(value)
        if out_dtype not in OUTPUT_ZERO_POINT:
            raise NotFusable(f"casts to {out_dtype} (Gemmini writes int8)")
        info = np.iinfo(out_dtype)
        if (low, high) != (float(info.min), float(info.max)):
            raise NotFusable(f"clips to [{low}, {high}], not the {out_dtype} range")
        if zero != OUTPUT_ZERO_POINT[out_dtype]:
            raise NotFusable(f"output zero point {zero} (Gemmini's int8 needs "
                             f"{OUTPUT_ZERO_POINT[out_dtype]} for {out_dtype})")
    if not multiplier > 0 or not np.isfinite(np.float32(multiplier)):
        raise NotFusable(f"multiplier {multiplier!r} is not a positive float32")
    requant = Requant(scale=multiplier, relu=relu, bias=bias is not None)
    return requant, bias, replaced, var, layout, out_dtype


def _gemmini_call(value, mod):
    """(GlobalVar, PrimFunc) of a call_tir of a Gemmini-lowered operator, else None."""
    from tvm import relax, tirx

    if _op_name(value) != "relax.call_tir":
        return None
    gvar = value.args[0]
    func = mod[gvar] if isinstance(gvar, relax.GlobalVar) and gvar in mod.functions else None
    if isinstance(func, tirx.PrimFunc) and func.attrs is not None and OP_ATTR in func.attrs:
        return gvar, func
    return None


def fuse_requant(mod):
    """(the module with each fusable requantization chain folded into its Gemmini operator,
    FusionReport)."""
    import tvm
    from tvm import relax

    from ..target.gemmini import lowering
    from ..target.gemmini.plan import UnsupportedMapping

    report = FusionReport()
    plans: dict = {}  # var of the chain's last binding -> (fused call parts)
    dropped: set = set()
    lowered: dict = {}  # (kernel, requant key) -> PrimFunc
    for gvar, func in mod.functions.items():
        if not isinstance(func, relax.Function):
            continue
        bindings, users = {}, {}
        for block in func.body.blocks:
            for b in block.bindings:
                bindings[b.var] = b.value
                for used in _vars_in(b.value):
                    users.setdefault(used, []).append(b.var)
        for used in _vars_in(func.body.body):
            users.setdefault(used, []).append(None)
        chain = _Chain(bindings, users)
        for var, value in bindings.items():
            found = _gemmini_call(value, mod)
            if found is None:
                continue
            kernel, prim = found
            if _dtype(value) != "int32":  # float32 operators have no requantization
                continue
            op_id = int(prim.attrs[OP_ATTR])
            info = lowering.OP_REGISTRY.get(op_id, {})
            shape = f"{info.get('kind', '')} {info.get('shape', '')}".strip()
            source = lowering.LOWERED_FROM.get(op_id)
            if source is None:
                continue  # already requantized (or not lowered in this process)
            out_shape = [int(n) for n in value.ty.shape.values]
            prim_func, op, mapping, arch = source
            channels = (dict(zip(op.layout, out_shape))["C"] if op.kind == "conv2d"
                        else out_shape[-1])
            try:
                requant, bias, replaced, last, layout, dtype = match_chain(var, channels, chain)
            except NotFusable as err:
                report.fusions.append(Fusion(kernel.name_hint, shape, False, str(err)))
                continue
            key = (kernel.name_hint, requant.key())
            try:
                if key not in lowered:
                    lowered[key] = lowering.lower(prim_func, op, mapping, arch, requant=requant)
            except UnsupportedMapping as err:
                report.fusions.append(Fusion(kernel.name_hint, shape, False, str(err), requant))
                continue
            except Exception as err:  # noqa: BLE001 - the layer keeps its int32 operator
                report.fusions.append(Fusion(kernel.name_hint, shape, False,
                                             f"lowering failed: {type(err).__name__}: {err}",
                                             requant))
                continue
            plans[last] = (key, value.args[1], bias, out_shape, layout, dtype)
            dropped.update([var] + replaced[:-1])
            what = [f"scale {requant.scale:.9g}"] + (["bias"] if bias is not None else []) + \
                (["ReLU"] if requant.relu else [])
            report.fusions.append(Fusion(kernel.name_hint, shape, True, ", ".join(what), requant))
    if not plans:
        return mod, report

    @relax.expr_functor.mutator
    class _Fuse(relax.PyExprMutator):
        def __init__(self, module):
            super().__init__(module)
            self.gvars = {}

        def visit_var_binding_(self, binding):
            if binding.var in dropped:
                return  # replaced by the fused call (the chain's last binding)
            if binding.var not in plans:
                return super().visit_var_binding_(binding)
            key, args, bias, out_shape, layout, dtype = plans[binding.var]
            if key not in self.gvars:
                self.gvars[key] = self.builder_.add_func(lowered[key], f"{key[0]}_requant")
            operands = [self.visit_expr(a) for a in args]
            if bias is not None:
                operands.append(relax.const(bias.reshape(-1).astype(np.int32), "int32"))
            fused = relax.call_tir(self.gvars[key], relax.Tuple(operands),
                                   relax.TensorType(out_shape, "int8"))
            for original in layout:  # the same layout steps, on int8
                fused = relax.Call(original.op, [self.builder_.emit(fused)] +
                                   list(original.args[1:]), original.attrs, original.ty_args)
            if dtype == "uint8":  # the int8 result shifted by 128 (on the CPU)
                wide = relax.op.astype(self.builder_.emit(fused), "int32")
                fused = relax.op.astype(self.builder_.emit(relax.op.add(
                    wide, relax.const(np.int32(128), "int32"))), "uint8")
            new_var = self.builder_.emit(fused, name_hint=binding.var.name)
            self.set_var_remap(binding.var, new_var)

    mutator = _Fuse(mod)
    for gvar, func in list(mod.functions.items()):
        if isinstance(func, relax.Function):
            mutator.builder_.update_func(gvar, mutator.visit_expr(func))
    out = mutator.builder_.get()
    out = relax.transform.DeadCodeElimination()(out)
    if mod.attrs is not None:
        out = out.with_attrs(mod.attrs) if hasattr(out, "with_attrs") else tvm.IRModule(
            out.functions, attrs=mod.attrs)
    return out, report


class FuseRequant:
    """`fuse_requant` as a TVM module pass, to put after CoSAPass in a Sequential (the
    standard `tvm.compile` build); after a run, `report` is its FusionReport."""

    def __init__(self):
        import tvm

        self.report: Optional[FusionReport] = None
        self.pass_ = tvm.transform.module_pass(self._transform, opt_level=0,
                                               name="FuseRequant")

    def _transform(self, mod, ctx):
        mod, self.report = fuse_requant(mod)
        return mod

    def __call__(self, mod):
        return self.pass_(mod)


def _vars_in(expr) -> list:
    from tvm import relax

    found = []

    def visit(e):
        if isinstance(e, relax.Var):
            found.append(e)

    relax.analysis.post_order_visit(expr, visit)
    return found
