"""Schedule the matmuls of a BERT encoder on Simba (or any architecture) and save the report.

    python examples/compile_bert_encoder.py [--arch simba] [--layers 2] [--out-dir DIR]

Each encoder layer has 8 matmuls: the Q, K, V and output projections and the two feed-forward
layers (3-D activations x 2-D weights: the batch folds into the rows), and the attention scores
and context (4-D batched over heads). Identical shapes are solved once. Writes report.json,
report.csv and, with matplotlib (pip install "tvm_cosa[plot]"), cycles.png (cycles per layer
against the lower bound) into DIR (default: tvm_cosa_examples/bert_encoder in the system's
temporary folder), then checks the compiled model against onnxruntime.
"""

import argparse
import sys
import tempfile
from pathlib import Path

import tvm

from tvm_cosa.models import bert_encoder, input_feed
from tvm_cosa.relax import CoSAPass
from tvm_cosa.relax.frontend import (build, import_onnx, max_rel_error, run_onnxruntime,
                                     run_tvm)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="simba")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--out-dir", type=Path,
                        default=Path(tempfile.gettempdir()) / "tvm_cosa_examples" / "bert_encoder",
                        help="folder for the report files (created if missing)")
    args = parser.parse_args()

    model = bert_encoder(seq_len=args.seq_len, layers=args.layers)
    cosa = CoSAPass(args.arch)
    mod = tvm.transform.Sequential([cosa])(import_onnx(model))
    report = cosa.report
    print(report.table())
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for path in (report.to_json(args.out_dir / "report.json"),
                 report.to_csv(args.out_dir / "report.csv")):
        print("wrote", path)
    try:
        import matplotlib  # noqa: F401  (the plot is optional: the `plot` extra)
    except ImportError:
        print('no plot: matplotlib is not installed (pip install "tvm_cosa[plot]")')
    else:
        report.plot(args.out_dir / "cycles.png", title=f"BERT encoder matmuls on {report.arch}")
        print("wrote", args.out_dir / "cycles.png")

    feed = input_feed(model)
    err = max_rel_error(run_tvm(build(mod, arch=cosa.arch), feed), run_onnxruntime(model, feed))
    print(f"outputs vs onnxruntime: max relative error {err:.2e}")
    return 0 if err <= 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
