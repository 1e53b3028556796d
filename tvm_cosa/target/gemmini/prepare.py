"""Relax rewrites before CoSAPass that put more of a model on the Gemmini array.

- `fold_int8_casts`: ONNX's MatMulInteger (no zero points) imports as
  `matmul(astype(a_int8, "int32"), astype(b_int8, "int32"))`; it becomes
  `matmul(a_int8, b_int8, out_dtype="int32")`, the same integers, as Gemmini computes them.
- `to_nhwc`: convolutions to NHWC data and HWIO kernels, the layouts whose rows the scratchpad
  takes directly (the lowering stages any other layout through a copy on the CPU).
- `pad_channels(mod, dim)`: reduction and output channels of convolutions / matmuls padded with
  zeros up to a multiple of the array width (the output sliced back). The scratchpad holds rows
  of `dim` elements, so a 3-channel input fills 16-wide rows anyway; with the padding in the
  graph, the layer CoSA schedules is the one the rows hold, and its tiles fit the real capacity.
  Depthwise / grouped convolutions are left alone (they run on the CPU).
- `gemmini_dtype(mod)`: int8 when the module has int8 convolutions / matmuls, else float32: the
  element type of the Gemmini configuration to compile it for.

`GemminiPrepare(config_or_dim)` is all three as a TVM module pass, to put before CoSAPass:

    seq = tvm.transform.Sequential([GemminiPrepare(16), CoSAPass("gemmini")])
"""

from __future__ import annotations


def fold_int8_casts(mod):
    import tvm
    from tvm import relax
    from tvm.relax.dpl import is_op, rewrite_call, wildcard

    a, b = wildcard(), wildcard()
    pattern = is_op("relax.matmul")(is_op("relax.astype")(a), is_op("relax.astype")(b))

    def rewrite(expr, matches):
        x, w = matches[a], matches[b]
        if (_dtype(x), _dtype(w), _dtype(expr)) != ("int8", "int8", "int32"):
            return expr
        return relax.op.matmul(x, w, out_dtype="int32")

    out = tvm.IRModule(dict(mod.functions), attrs=mod.attrs)
    for gvar, func in mod.functions.items():
        if isinstance(func, relax.Function):
            out[gvar] = rewrite_call(pattern, rewrite, func)
    return out


def _dtype(expr) -> str:
    return str(getattr(getattr(expr, "ty", None), "dtype", ""))


def simplify_exports(mod):
    """Inference-time forms of what ONNX importers write for exported graphs, which TVM's
    ConvertLayout cannot take: `dropout(x)[0]` becomes `x` (Dropout is the identity at
    inference), and `sum(stack([a, b, ...]), axis=0)` (ONNX Sum of many inputs, each
    `broadcast_to` the common shape) becomes `a + b + ...` (a 5-D stack has no NHWC form)."""
    import tvm
    from tvm import relax

    @relax.expr_functor.mutator
    class _Simplify(relax.PyExprMutator):
        def bound_call(self, expr, op_name):
            """The call of `op_name` that the variable `expr` is bound to, or None."""
            if isinstance(expr, relax.Var):
                expr = self.lookup_binding(expr)
            if isinstance(expr, relax.Call) and getattr(expr.op, "name", "") == op_name:
                return expr
            return None

        def visit_tuple_getitem_(self, op):
            op = super().visit_tuple_getitem_(op)
            dropout = self.bound_call(op.tuple_value, "relax.nn.dropout")
            return dropout.args[0] if dropout is not None and op.index == 0 else op

        def visit_call_(self, call):
            call = super().visit_call_(call)
            if getattr(call.op, "name", "") != "relax.sum" or call.attrs.keepdims \
                    or call.attrs.axis is None or [int(a) for a in call.attrs.axis] != [0]:
                return call
            stacked = self.bound_call(call.args[0], "relax.stack")
            if stacked is None or int(stacked.attrs.axis) != 0:
                return call
            items = stacked.args[0]
            if isinstance(items, relax.Var):
                items = self.lookup_binding(items)
            if not isinstance(items, relax.Tuple) or len(items.fields) == 0:
                return call
            terms = [self.unbroadcast(t) for t in items.fields]
            total = terms[0]
            for term in terms[1:]:
                total = self.builder_.emit(relax.op.add(total, term))
            return total

        def unbroadcast(self, expr):
            """`x` for `broadcast_to(x, shape)` when x has that shape already."""
            call = self.bound_call(expr, "relax.broadcast_to")
            if call is not None and _shape(call.args[0]) is not None \
                    and _shape(call.args[0]) == _shape(expr):
                return call.args[0]
            return expr

    out = tvm.IRModule(dict(mod.functions), attrs=mod.attrs)
    for gvar, func in mod.functions.items():
        if isinstance(func, relax.Function):
            out[gvar] = relax.analysis.remove_all_unused(_Simplify().visit_expr(func))
    return out


def to_nhwc(mod):
    """Convolutions in NHWC / HWIO. TVM's ConvertLayout over the whole graph when it can (it
    carries the layout through the operators in between); when it fails on some operator, each
    convolution on its own with transposes around it (`convs_to_nhwc`), and a note in the
    module (`with_note`, copied into CoSAPass's report) says so and why."""
    import tvm
    from tvm import relax

    seq = tvm.transform.Sequential([
        relax.transform.ConvertLayout({"relax.nn.conv2d": ["NHWC", "HWIO"]}),
        relax.transform.Normalize()])
    try:
        converted = seq(mod)
    except Exception as err:  # noqa: BLE001 - TVM raises InternalError and others
        why = _last_line(err)
        try:
            converted, kept = convs_to_nhwc(mod)
        except Exception as err2:  # noqa: BLE001 - keep the model whole, in its own layout
            return with_note(mod, f"TVM's ConvertLayout failed on this graph ({why}), and so "
                                  f"did converting each convolution ({_last_line(err2)}); the "
                                  f"convolutions keep their layout (rows staged through copies)")
        note = (f"TVM's ConvertLayout failed on this graph ({why}); each convolution was put "
                f"in NHWC on its own, with transposes on the CPU around it")
        if kept:
            note += f"; {kept} kept their own layout (their rows are staged through a copy)"
        converted = with_note(converted, note)
    return relax.transform.FoldConstant()(fold_weight_rewrites(converted))


def _last_line(err) -> str:
    text = str(err).strip()
    return text.splitlines()[-1] if text else type(err).__name__


def with_note(mod, note: str):
    """`mod` with `note` added to the notes CoSAPass copies into its report."""
    from ...relax.report import NOTES_ATTR, module_notes

    return mod.with_attr(NOTES_ATTR, module_notes(mod) + [note])


def convs_to_nhwc(mod):
    """Each 4-D static-shape conv2d as transpose -> conv2d(NHWC, HWIO) -> transpose back, and
    transposes that undo each other (one convolution straight into the next) removed.
    Returns (module, number of convolutions left in their own layout)."""
    import tvm
    from tvm import relax

    left = [0]

    @relax.expr_functor.mutator
    class _Convert(relax.PyExprMutator):
        def visit_call_(self, call):
            call = super().visit_call_(call)
            name = getattr(call.op, "name", "")
            if name == "relax.permute_dims":
                return self.cancelled(call)
            if name != "relax.nn.conv2d":
                return call
            attrs = call.attrs
            layouts = (str(attrs.data_layout), str(attrs.kernel_layout), str(attrs.out_layout))
            if layouts[:2] == ("NHWC", "HWIO") and layouts[2] == "NHWC":
                return call
            x, w = call.args
            if _shape(x) is None or _shape(w) is None or sorted(layouts[0]) != sorted("NCHW") \
                    or sorted(layouts[1]) != sorted("OIHW") or sorted(layouts[2]) != sorted("NCHW"):
                left[0] += 1
                return call
            x = self.permuted(x, [layouts[0].index(c) for c in "NHWC"])
            w = self.permuted(w, [layouts[1].index(c) for c in "HWIO"])
            conv = self.builder_.emit(relax.op.nn.conv2d(
                x, w, strides=attrs.strides, padding=attrs.padding, dilation=attrs.dilation,
                groups=attrs.groups, data_layout="NHWC", kernel_layout="HWIO",
                out_layout="NHWC", out_dtype=attrs.out_dtype))
            return relax.op.permute_dims(conv, ["NHWC".index(c) for c in layouts[2]])

        def permuted(self, expr, axes):
            if axes == sorted(axes):
                return expr
            return self.builder_.emit(self.cancelled(relax.op.permute_dims(expr, axes)))

        def cancelled(self, call):
            """`x` for permute_dims(permute_dims(x, p), q) when q undoes p."""
            inner = call.args[0]
            if isinstance(inner, relax.Var):
                inner = self.lookup_binding(inner)
            if not (isinstance(inner, relax.Call)
                    and getattr(inner.op, "name", "") == "relax.permute_dims"
                    and inner.attrs.axes is not None and call.attrs.axes is not None):
                return call
            p = [int(a) for a in inner.attrs.axes]
            q = [int(a) for a in call.attrs.axes]
            if [p[i] for i in q] == list(range(len(p))):
                return inner.args[0]
            return call

    out = tvm.IRModule(dict(mod.functions), attrs=mod.attrs)
    for gvar, func in mod.functions.items():
        if isinstance(func, relax.Function):
            out[gvar] = relax.analysis.remove_all_unused(_Convert().visit_expr(func))
    return relax.transform.Normalize()(out), left[0]


def fold_weight_rewrites(mod):
    """`permute_dims`, constant `pad` and `reshape` of constants (the weight rewrites of
    ConvertLayout and pad_channels, the bias reshapes of the importer), `isnan` and `where` of
    constants (the importer's Clip bounds) computed with numpy. TVM's FoldConstant compiles and
    runs a kernel for each: seconds on a whole model; it then has nothing left to fold."""
    import numpy as np
    import tvm
    from tvm import relax

    def folded(name, attrs, args):
        """The numpy value of the call, or None when it is not one of these."""
        if name == "relax.isnan":
            return np.isnan(args[0])
        if name == "relax.where":
            return np.where(*args)
        if name == "relax.reshape":
            return args[0].reshape(args[1])
        if name == "relax.permute_dims":
            axes = attrs.axes
            return np.transpose(args[0], None if axes is None else [int(a) for a in axes])
        if name == "relax.nn.pad" and str(attrs.pad_mode) == "constant":
            width = [int(w) for w in attrs.pad_width]
            return np.pad(args[0], list(zip(width[0::2], width[1::2])),
                          constant_values=np.array(float(attrs.pad_value), args[0].dtype))
        return None

    foldable = {"relax.isnan": 1, "relax.where": 3, "relax.reshape": 1, "relax.permute_dims": 1,
                "relax.nn.pad": 1}  # op -> how many leading arguments must be constants

    @relax.expr_functor.mutator
    class _Fold(relax.PyExprMutator):
        def constant(self, expr):
            if isinstance(expr, relax.Var):  # a dataflow var bound to a constant
                expr = self.lookup_binding(expr)
            return expr.value.numpy() if isinstance(expr, tvm.ir.expr.Constant) else None

        def visit_call_(self, call):
            call = super().visit_call_(call)
            name = getattr(call.op, "name", "")
            if name not in foldable or len(call.args) < foldable[name]:
                return call
            args = [self.constant(a) for a in call.args[:foldable[name]]]
            if any(a is None for a in args):
                return call
            if name == "relax.reshape":
                shape = getattr(call.args[1], "values", None)
                if shape is None:
                    return call
                args.append([int(n) for n in shape])
            value = folded(name, call.attrs, args)
            if value is None:
                return call
            value = np.asarray(value)
            return relax.const(value, str(value.dtype))

    out = tvm.IRModule(dict(mod.functions), attrs=mod.attrs)
    for gvar, func in mod.functions.items():
        if isinstance(func, relax.Function):
            out[gvar] = _Fold().visit_expr(func)
    return out


def pad_channels(mod, dim: int):
    import tvm
    from tvm import relax

    @relax.expr_functor.mutator
    class _Pad(relax.PyExprMutator):
        def visit_call_(self, call):
            call = super().visit_call_(call)
            name = getattr(call.op, "name", "")
            if name == "relax.nn.conv2d":
                return self._conv(call)
            if name == "relax.matmul":
                return self._matmul(call)
            return call

        def _padded(self, expr, axis, extra):
            if extra == 0:
                return expr
            width = [0] * (2 * len(_shape(expr)))  # (before, after) per axis
            width[2 * axis + 1] = extra
            return self.builder_.emit(relax.op.nn.pad(expr, width))

        def _sliced(self, expr, axis, size):
            return relax.op.strided_slice(self.builder_.emit(expr), [axis], [0], [size])

        def _conv(self, call):
            attrs = call.attrs
            x, w = call.args
            if (str(attrs.data_layout), str(attrs.kernel_layout)) != ("NHWC", "HWIO") \
                    or int(attrs.groups) != 1 or _shape(x) is None or _shape(w) is None:
                return call
            c, k = _shape(w)[2], _shape(w)[3]
            pc, pk = -c % dim, -k % dim
            if not (pc or pk):
                return call
            x = self._padded(x, 3, pc)
            w = self._padded(self._padded(w, 2, pc), 3, pk)
            conv = relax.op.nn.conv2d(x, w, strides=attrs.strides, padding=attrs.padding,
                                      dilation=attrs.dilation, groups=1, data_layout="NHWC",
                                      kernel_layout="HWIO", out_dtype=attrs.out_dtype)
            return self._sliced(conv, 3, k) if pk else conv

        def _matmul(self, call):
            a, b = call.args
            sa, sb = _shape(a), _shape(b)
            if sa is None or sb is None or len(sa) < 2 or len(sb) < 2:
                return call
            pk, pn = -sa[-1] % dim, -sb[-1] % dim
            if not (pk or pn):
                return call
            a = self._padded(a, len(sa) - 1, pk)
            b = self._padded(self._padded(b, len(sb) - 2, pk), len(sb) - 1, pn)
            mm = relax.op.matmul(a, b, out_dtype=call.attrs.out_dtype)
            return self._sliced(mm, len(_shape(call)) - 1, sb[-1]) if pn else mm

    out = tvm.IRModule(dict(mod.functions), attrs=mod.attrs)
    for gvar, func in mod.functions.items():
        if isinstance(func, relax.Function):
            out[gvar] = _Pad().visit_expr(func)
    return relax.transform.FoldConstant()(fold_weight_rewrites(relax.transform.Normalize()(out)))


def _shape(expr):
    values = getattr(getattr(getattr(expr, "ty", None), "shape", None), "values", None)
    try:
        return None if values is None else tuple(int(v) for v in values)
    except (TypeError, ValueError):
        return None


def prepare_module(mod, dim: int = 16):
    """Model names made C identifiers, the export simplifications, then the three rewrites."""
    from ...relax.names import c_identifiers

    mod = simplify_exports(c_identifiers(mod))
    return pad_channels(to_nhwc(fold_int8_casts(mod)), dim)


def GemminiPrepare(config_or_dim=16):  # noqa: N802 - named like the TVM passes it sits with
    """The module pass that prepares a Relax module for Gemmini (`prepare_module`).

    config_or_dim: a GemminiConfig, a Gemmini Architecture, the preset name "gemmini" or the
    array width; only the width (the channel padding) depends on it."""
    import tvm

    from .config import config_for

    dim = config_for(config_or_dim).dim

    @tvm.transform.module_pass(opt_level=0, name="GemminiPrepare")
    def gemmini_prepare(mod, ctx):  # noqa: ARG001 - the pass context is not needed
        return prepare_module(mod, dim)

    return gemmini_prepare


def gemmini_dtype(mod) -> str:
    from ...relax.extract import extract
    from .config import matching_dtype

    return matching_dtype((op.dtype for op in extract(mod) if op.supported), default="float32")
