#!/usr/bin/env python3
"""The integer example models compiled for Gemmini, run on its functional model, vs onnxruntime.

The steps of `tvm-cosa verify` (target.gemmini.flow: ONNX import with the integer operators,
Gemmini preparation, CoSAPass on the int8 Gemmini configuration, TVM's c target linked against
the functional model), each timed, on the full-size models. Prints per model: the times of each step, the largest
absolute difference from onnxruntime (integer outputs: must be 0), how many conv / matmul layers
ran on the array, and the Gemmini commands the functional model executed.

Target: max abs diff 0 on every model, or a difference the import explains (the report's
exactness notes, printed; e.g. onnxruntime's saturating u8s8 kernel on AVX2 CPUs without VNNI).

    python bench/int8_models.py                          # resnet18_int8 at 224
    python bench/int8_models.py --models all
    python bench/int8_models.py --models resnet18_int8 --image-size 64
    python bench/int8_models.py --models qdq --image-size 64   # quantize_static'd ResNet-18s

`qdq`: the float ResNet-18 (tvm_cosa.models.resnet18) through onnxruntime's quantize_static
(seeded calibration data) in four variants: uint8 / int8 activations x per-tensor / per-channel
weights (8-bit), and with 7-bit weights (reduce_range; int8 also with symmetric
activations), uint8 also in QOperator format.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tvm_cosa.models import (bert_encoder_int8, input_feed, mobilenet_v2_int8,  # noqa: E402
                             resnet18_int8, resnet50_int8)
from tvm_cosa.relax import frontend  # noqa: E402
from tvm_cosa.target.gemmini import flow  # noqa: E402

def quantize_static_resnet18(activations, per_channel, reduce_range=False, fmt="QDQ",
                             symmetric=False, image_size=224):
    """tvm_cosa.models.resnet18 through onnxruntime's quantize_static (4 seeded calibration
    inputs)."""
    import tempfile
    import warnings

    import onnx
    from onnxruntime import quantization as q

    from tvm_cosa.models import resnet18

    model = resnet18(image_size=image_size)
    name = model.graph.input[0].name
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]

    class Calibration(q.CalibrationDataReader):
        def __init__(self):
            rng = np.random.default_rng(0)
            self.data = iter([{name: rng.standard_normal(shape).astype(np.float32)}
                              for _ in range(4)])

        def get_next(self):
            return next(self.data, None)

    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        onnx.save(model, f"{tmp}/float.onnx")
        q.quantize_static(f"{tmp}/float.onnx", f"{tmp}/q.onnx", Calibration(),
                          quant_format=getattr(q.QuantFormat, fmt),
                          activation_type=getattr(q.QuantType, activations),
                          weight_type=q.QuantType.QInt8, per_channel=per_channel,
                          reduce_range=reduce_range,
                          extra_options={"ActivationSymmetric": symmetric})
        return onnx.load(f"{tmp}/q.onnx")


QDQ_VARIANTS = {
    "qdq_u8_per_tensor": dict(activations="QUInt8", per_channel=False),
    "qdq_u8_per_channel": dict(activations="QUInt8", per_channel=True),
    "qdq_s8_per_tensor": dict(activations="QInt8", per_channel=False),
    "qdq_s8_per_channel": dict(activations="QInt8", per_channel=True),
    "qdq_u8_per_channel_7bit": dict(activations="QUInt8", per_channel=True, reduce_range=True),
    "qdq_u8_per_tensor_7bit": dict(activations="QUInt8", per_channel=False, reduce_range=True),
    "qdq_s8_per_channel_7bit": dict(activations="QInt8", per_channel=True, reduce_range=True),
    "qdq_s8_symmetric_per_channel_7bit": dict(activations="QInt8", per_channel=True,
                                              reduce_range=True, symmetric=True),
    "qoperator_u8_per_channel_7bit": dict(activations="QUInt8", per_channel=True,
                                          reduce_range=True, fmt="QOperator"),
}
MODELS = {"resnet18_int8": resnet18_int8, "resnet50_int8": resnet50_int8,
          "mobilenet_v2_int8": mobilenet_v2_int8, "bert_encoder_int8": bert_encoder_int8}
COUNTS = ("calls", "mvin", "mvout", "preload", "compute_preloaded", "compute_accumulated",
          "bytes_in", "bytes_out", "macs")


class Clock:
    def __init__(self):
        self.times = {}

    def __call__(self, name, fn, *args, **kwargs):
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        self.times[name] = time.perf_counter() - start
        return out


def run_model(model, jobs):
    """verify's steps (target.gemmini.flow), each timed."""
    clock = Clock()
    mod = clock("import", frontend.import_onnx, model)
    compiled = clock("prepare+cosa", flow.compile_module, mod, "gemmini", cache=False, jobs=jobs,
                     progress=False)
    runner = clock("c build", flow.load, compiled.mod, compiled.config)
    feed = input_feed(model)
    got = clock("functional run", runner, feed)
    want = clock("onnxruntime", frontend.run_onnxruntime, model, feed)
    diff = max(float(np.abs(g.astype(np.float64) - w.astype(np.float64)).max())
               for g, w in zip(got, want))
    records = compiled.report.records
    on_array = sum(r.lowering == "gemmini" for r in records)
    return (clock.times, diff, f"{on_array}/{len(records)}", runner.model.counters(),
            compiled.report.exactness_notes)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet18_int8",
                        help=f"comma-separated names or 'all' ({', '.join(MODELS)})")
    parser.add_argument("--image-size", type=int, default=224, help="CNN input side")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    MODELS.update({name: (lambda variant=variant, **kw: quantize_static_resnet18(**variant, **kw))
                   for name, variant in QDQ_VARIANTS.items()})
    if args.models == "qdq":
        names = list(QDQ_VARIANTS)
    else:
        names = list(MODELS) if args.models == "all" else args.models.split(",")
    failed = False
    for name in names:
        build = MODELS[name]
        kwargs = {} if name.startswith("bert") else {"image_size": args.image_size}
        start = time.perf_counter()
        model = build(**kwargs)
        built = time.perf_counter() - start
        times, diff, on_array, counts, notes = run_model(model, args.jobs)
        steps = "  ".join(f"{k} {v:.2f}s" for k, v in {"model": built, **times}.items())
        # a difference the import explained (report.exactness_notes) is not a silent failure
        verdict = "exact" if diff == 0 else ("differs, explained" if notes else "FAIL")
        print(f"{name} {kwargs or ''}: max abs diff {diff:g} ({verdict}); "
              f"layers on the array {on_array}")
        print(f"  {steps}")
        print("  gemmini " + "  ".join(f"{k} {counts[k]}" for k in COUNTS))
        for note in notes:
            print(f"  may differ from onnxruntime: {note}")
        failed |= diff != 0 and not notes
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
