"""Schedule the matmuls of a BERT encoder on Simba (or any architecture) and save the report.

    python examples/compile_bert_encoder.py [--arch simba] [--layers 2] [--out bert_report]

Each encoder layer has 8 matmuls: the Q, K, V and output projections and the two feed-forward
layers (3-D activations x 2-D weights: the batch folds into the rows), and the attention scores
and context (4-D batched over heads). Identical shapes are solved once. Writes
OUT.json, OUT.csv and OUT.png (cycles per layer against the lower bound), then checks the
compiled model against onnxruntime.
"""

import argparse
import sys

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
    parser.add_argument("--out", default="bert_report")
    args = parser.parse_args()

    model = bert_encoder(seq_len=args.seq_len, layers=args.layers)
    cosa = CoSAPass(args.arch)
    mod = tvm.transform.Sequential([cosa])(import_onnx(model))
    report = cosa.report
    print(report.table())
    for path in (report.to_json(args.out + ".json"), report.to_csv(args.out + ".csv")):
        print("wrote", path)
    report.plot(args.out + ".png", title=f"BERT encoder matmuls on {report.arch}")
    print("wrote", args.out + ".png")

    feed = input_feed(model)
    err = max_rel_error(run_tvm(build(mod, arch=cosa.arch), feed), run_onnxruntime(model, feed))
    print(f"outputs vs onnxruntime: max relative error {err:.2e}")
    return 0 if err <= 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
