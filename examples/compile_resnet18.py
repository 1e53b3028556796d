"""Compile ResNet-18 for a Gemmini-style systolic array with CoSA, run it on the array's functional
model and check it against onnxruntime.

    python examples/compile_resnet18.py [--image-size 224] [--seed 0] [--report FILE.json]

The model is built in code with seeded random weights (nothing is downloaded). GemminiPrepare puts
the convolutions in NHWC / HWIO and pads their channels to the array width; CoSAPass("gemmini")
schedules every convolution and the classifier's matmul for the Gemmini configuration matching
the model's float32 operands, checks each schedule with the cost model and lowers it onto the
Gemmini ISA (mvin, preload, compute, mvout). TVM's c target writes the model as C, which gcc links
against the functional model of the array; the model runs on a seeded input and its output must
equal onnxruntime's within 1e-4 (relative). Schedules are cached (~/.cache/tvm_cosa), so a second
run solves nothing. Exits non-zero on a mismatch.
"""

import argparse
import sys
import time

import tvm

from tvm_cosa.models import resnet18
from tvm_cosa.relax import CoSAPass
from tvm_cosa.relax.frontend import import_onnx, run_onnxruntime, seeded_feed
from tvm_cosa.target.gemmini import GemminiPrepare, config_for, flow
from tvm_cosa.target.gemmini.functional import GemminiError

TOLERANCE = 1e-4


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--seed", type=int, default=0, help="seed of the random input")
    parser.add_argument("--report", help="also save the report as JSON here")
    args = parser.parse_args()

    model = resnet18(image_size=args.image_size)
    start = time.perf_counter()

    # The user's view: an ONNX model imported into TVM, then two passes in a Sequential.
    cosa = CoSAPass("gemmini")  # the configuration follows the model's element type (float32)
    with tvm.transform.PassContext(opt_level=3):
        mod = tvm.transform.Sequential([GemminiPrepare("gemmini"), cosa])(import_onnx(model))
    print(cosa.report.table())
    print(flow.placement(cosa.report))
    if args.report:
        cosa.report.to_json(args.report)

    config = config_for(cosa.arch)  # the Gemmini configuration CoSAPass scheduled for
    runner = flow.load(mod, config)  # c target + gcc + the functional model of `config`
    print(f"\nimport + GemminiPrepare + CoSAPass + C build for {config.name}: "
          f"{time.perf_counter() - start:.1f} s")

    feed = seeded_feed(model, seed=args.seed)
    try:
        got = runner(feed)
    except GemminiError as err:  # the functional model stopped on an error (address, capacity)
        print(err)
        return 1
    print(flow.counts_table(runner.model, cosa.report))
    ok, text = flow.compare(got, run_onnxruntime(model, feed), TOLERANCE)
    print(f"compared with onnxruntime:\n{text}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
