"""MobileNetV2 (depthwise convolutions) in NHWC on an architecture described in a YAML file.

    python examples/mobilenet_v2_nhwc_custom_arch.py [--arch examples/arch/my_accel.yaml]

Shows CoSAPass composing with other Relax passes: ConvertLayout turns every conv2d to NHWC
first, then CoSAPass schedules them, all inside one Sequential under a PassContext. Depthwise
layers (one channel per group) become Problems with a group dimension G.
"""

import argparse
import sys
from pathlib import Path

import tvm
from tvm import relax

from tvm_cosa.models import input_feed, mobilenet_v2
from tvm_cosa.relax import CoSAPass
from tvm_cosa.relax.frontend import (build, import_onnx, max_rel_error, run_onnxruntime,
                                     run_tvm)

HERE = Path(__file__).parent


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default=str(HERE / "arch" / "my_accel.yaml"))
    parser.add_argument("--image-size", type=int, default=112)
    args = parser.parse_args()

    model = mobilenet_v2(image_size=args.image_size)
    cosa = CoSAPass(args.arch)
    pipeline = tvm.transform.Sequential([
        relax.transform.ConvertLayout({"relax.nn.conv2d": ["NHWC", "OHWI"]}),
        relax.transform.FoldConstant(),
        cosa,
    ])
    with tvm.transform.PassContext(opt_level=3):
        mod = pipeline(import_onnx(model))
    print(cosa.report.table())
    depthwise = [r for r in cosa.report.records if " g" in r.shape]
    print(f"\n{len(depthwise)} depthwise layers, layouts: "
          f"{sorted({r.layout for r in cosa.report.records if r.layout})}")

    feed = input_feed(model)
    err = max_rel_error(run_tvm(build(mod, arch=cosa.arch), feed), run_onnxruntime(model, feed))
    print(f"outputs vs onnxruntime: max relative error {err:.2e}")
    return 0 if err <= 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
