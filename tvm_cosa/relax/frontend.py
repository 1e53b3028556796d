"""From an ONNX model to a scheduled, built module: the steps the CLI, examples and tests share.

    mod = import_onnx("model.onnx")                      # Relax IRModule, weights as constants
    mod, report = compile_model(mod, "simba")            # CoSAPass in a Sequential
    ex = build(mod)                                      # tvm.compile for llvm
    err = max_rel_error(run_tvm(ex, feed), run_onnxruntime(model, feed))

For Gemmini, `tvm_cosa.target.gemmini.flow` adds the graph preparation, the configuration matched
to the model's element type and the run on the functional model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError


def load_onnx(model):
    """An onnx.ModelProto from a ModelProto or a path (InputError names a missing/bad file)."""
    import onnx

    if isinstance(model, onnx.ModelProto):
        return model
    path = Path(model)
    if not path.is_file():
        raise InputError("no such ONNX file", source=path)
    try:
        return onnx.load(str(path))
    except Exception as err:  # noqa: BLE001 - protobuf raises several types on bad files
        raise InputError(f"not a readable ONNX model ({type(err).__name__}: {err})",
                         source=path) from None


def input_shapes(model, overrides=None) -> dict:
    """Static shape of every graph input; symbolic dimensions (dynamic batch) become 1 unless
    `overrides` ({name: shape}) gives the shape."""
    overrides = dict(overrides or {})
    init = {t.name for t in model.graph.initializer}
    names = [v.name for v in model.graph.input if v.name not in init]
    unknown = sorted(set(overrides) - set(names))
    if unknown:
        raise InputError(f"the model has no input named {', '.join(unknown)}; its inputs are "
                         f"{', '.join(names)}", field="input shape")
    shapes = {}
    for value in model.graph.input:
        if value.name in init:
            continue
        dims = value.type.tensor_type.shape.dim
        shapes[value.name] = tuple(overrides.get(value.name) or
                                   (d.dim_value if d.dim_value > 0 else 1 for d in dims))
    return shapes


def import_onnx(model, shapes=None):
    """The Relax module of an ONNX model (path or ModelProto), with static input shapes.
    TVM's importer is extended with the ONNX integer operators (onnx_int8); QDQ Conv / MatMul
    groups are first fused into them as onnxruntime fuses them (onnx_qdq), and onnxruntime's other
    quantized kernels (QLinearAdd, QGemm, QLinearGlobalAveragePool, float operators between a
    DequantizeLinear and a QuantizeLinear) are written as integer arithmetic that gives its
    integers (onnx_qops)."""
    from .onnx_int8 import from_onnx
    from .onnx_qdq import fuse_qdq
    from .onnx_qops import exactness_notes, rewrite_quantized_ops
    from .report import EXACTNESS_NOTES_ATTR

    model = rewrite_quantized_ops(fuse_qdq(load_onnx(model)).model).model
    try:
        mod = from_onnx(model, shape_dict=input_shapes(model, shapes))
    except InputError:
        raise
    except Exception as err:  # noqa: BLE001 - the importer's errors are TVM errors
        raise InputError(f"TVM's ONNX importer failed: {type(err).__name__}: "
                         f"{str(err).strip().splitlines()[-1]}", source="onnx model") from None
    notes = exactness_notes(model)  # CoSAPass copies them into its report (verify prints them)
    return mod.with_attr(EXACTNESS_NOTES_ATTR, notes) if notes else mod


def compile_model(mod, arch, *, layout=None, **options):
    """Run CoSAPass (after ConvertLayout to NHWC when `layout="NHWC"`) in a Sequential.

    Returns (module, report)."""
    import tvm
    from tvm import relax

    from .pass_ import CoSAPass

    if layout not in (None, "NCHW", "NHWC"):
        raise InputError(f"layout must be NCHW or NHWC, got {layout!r}", field="layout")
    cosa = CoSAPass(arch, **options)
    passes = []
    if layout == "NHWC":
        passes += [relax.transform.ConvertLayout({"relax.nn.conv2d": ["NHWC", "OHWI"]}),
                   relax.transform.Normalize(), relax.transform.FoldConstant()]
    passes.append(cosa)
    mod = tvm.transform.Sequential(passes)(mod)
    return mod, cosa.report


def build(mod, target="llvm", arch=None, path=None):
    """The module built for `target` (tvm.compile). A module with operators lowered onto Gemmini
    (they call its ISA) is built into a shared library linked with its own copy of the
    functional model of `arch` (the Gemmini architecture or GemminiConfig it was compiled for;
    default the preset) and returned loaded, as a relax.VirtualMachine. `path`: also save the
    library there."""
    import tvm

    if uses_gemmini(mod):
        from ..target.gemmini import flow

        config = flow.base_config(arch if arch is not None else "gemmini")
        return flow.load(mod, config, target=target, path=path).vm
    ex = tvm.compile(mod, target=target)
    if path is not None:
        ex.export_library(str(path))
    return ex


def uses_gemmini(mod) -> bool:
    import tvm

    return any(isinstance(f, tvm.tirx.PrimFunc) and f.attrs is not None
               and "gemmini.op_id" in f.attrs for f in mod.functions.values())


def run_tvm(ex, feed: dict) -> list:
    """Outputs of a built module (an executable or a relax.VirtualMachine) on `feed` (inputs in
    the model's order)."""
    import tvm
    from tvm import relax

    vm = ex if isinstance(ex, relax.VirtualMachine) else relax.VirtualMachine(ex, tvm.cpu())
    out = vm["main"](*[tvm.runtime.tensor(np.ascontiguousarray(x)) for x in feed.values()])
    if hasattr(out, "numpy"):
        return [out.numpy()]
    return [o.numpy() for o in out]


def seeded_feed(model, seed: int = 0, shapes=None) -> dict:
    """Seeded random inputs for `model` with the shapes it is compiled for (`input_shapes`:
    dynamic dimensions 1 unless `shapes` gives them)."""
    from ..models import input_feed

    feed = input_feed(model, seed=seed)
    rng = np.random.default_rng(seed)
    for name, shape in input_shapes(model, shapes).items():
        x = feed[name]
        if tuple(x.shape) != tuple(shape):
            feed[name] = (rng.integers(-8, 8, shape).astype(x.dtype)
                          if np.issubdtype(x.dtype, np.integer)
                          else rng.standard_normal(shape).astype(x.dtype))
    return feed


def run_onnxruntime(model, feed: dict) -> list:
    import onnxruntime as ort

    session = ort.InferenceSession(load_onnx(model).SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    return session.run(None, feed)


def max_rel_error(got: list, want: list) -> float:
    """Largest |got - want| over all outputs, relative to each output's largest |want|."""
    worst = 0.0
    for g, w in zip(got, want):
        g, w = np.asarray(g, np.float64), np.asarray(w, np.float64)
        if g.shape != w.shape:
            raise ValueError(f"output shapes differ: {g.shape} vs {w.shape}")
        scale = max(float(np.abs(w).max()), 1e-30)
        worst = max(worst, float(np.abs(g - w).max()) / scale)
    return worst
