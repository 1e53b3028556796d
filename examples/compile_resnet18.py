"""Compile ResNet-18 with CoSAPass for Gemmini, print the per-layer report, and check the
compiled model against onnxruntime.

    python examples/compile_resnet18.py [--arch gemmini|simba|ARCH.yaml] [--image-size 224]

The model is built in code with seeded random weights (nothing is downloaded). Every convolution
and the classifier's matmul are scheduled with CoSA for the accelerator, checked with the cost
model (Timeloop when installed), lowered to TIR and built for llvm; the outputs must equal
onnxruntime's within 1e-4 (relative). Schedules are cached (~/.cache/tvm_cosa), so a second run
solves nothing.
"""

import argparse
import sys
import time

import tvm

from tvm_cosa.models import input_feed, resnet18
from tvm_cosa.relax import CoSAPass
from tvm_cosa.relax.frontend import (build, import_onnx, max_rel_error, run_onnxruntime,
                                     run_tvm)

TOLERANCE = 1e-4


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="gemmini", help="preset name or architecture YAML")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--report", help="also save the report as JSON here")
    args = parser.parse_args()

    model = resnet18(image_size=args.image_size)
    start = time.perf_counter()
    mod = import_onnx(model)

    # The user's view: an ONNX model imported into TVM, then one pass in a Sequential.
    cosa = CoSAPass(args.arch)
    with tvm.transform.PassContext(opt_level=3):
        mod = tvm.transform.Sequential([cosa])(mod)
    print(cosa.report.table())
    if args.report:
        cosa.report.to_json(args.report)

    executable = build(mod, arch=cosa.arch)
    print(f"\nimport + CoSAPass + llvm build: {time.perf_counter() - start:.1f} s")

    feed = input_feed(model)
    err = max_rel_error(run_tvm(executable, feed), run_onnxruntime(model, feed))
    ok = err <= TOLERANCE
    print(f"outputs vs onnxruntime: max relative error {err:.2e} "
          f"({'OK' if ok else 'MISMATCH'}, tolerance {TOLERANCE:g})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
