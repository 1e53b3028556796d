"""Relax rewrites before CoSAPass for Gemmini: int8 casts folded, channels padded, NHWC."""

import numpy as np
import pytest

from gemmini_util import conv_module, matmul_module

tvm = pytest.importorskip("tvm")
from tvm import relax  # noqa: E402

from tvm_cosa.relax.extract import extract  # noqa: E402
from tvm.relax.frontend.onnx import from_onnx  # noqa: E402
from tvm_cosa.models import int8_mlp  # noqa: E402
from tvm_cosa.target.gemmini.prepare import (fold_int8_casts, gemmini_dtype, pad_channels,  # noqa
                                             prepare_module)


def run_llvm(mod, *inputs):
    ex = tvm.compile(mod, target="llvm")
    vm = relax.VirtualMachine(ex, tvm.cpu())
    return vm["main"](*[tvm.runtime.tensor(x) for x in inputs]).numpy()


def test_matmul_integer_becomes_an_int8_matmul():
    # TVM's own importer widens MatMulInteger to int32 (tvm_cosa's import_onnx does not)
    mod = from_onnx(int8_mlp())
    before = [(op.dtype, op.out_dtype) for op in extract(mod)]
    after = [(op.dtype, op.out_dtype) for op in extract(fold_int8_casts(mod))]
    assert before[0] == ("int32", "int32") and after[0] == ("int8", "int32")
    assert after[1] == before[1]  # the int32 x int32 layer stays as it is
    assert gemmini_dtype(fold_int8_casts(mod)) == "int8" and gemmini_dtype(mod) == "float32"
    x = np.random.default_rng(0).integers(-8, 8, (4, 32)).astype(np.int8)
    np.testing.assert_array_equal(run_llvm(fold_int8_casts(mod), x), run_llvm(mod, x))


def test_channels_are_padded_to_the_array_width_without_changing_results():
    rng = np.random.default_rng(1)
    mod = conv_module((1, 9, 9, 3), (3, 3, 3, 10), dtype="float32", stride=(2, 2),
                      pad=(1, 1, 1, 1))
    weights = rng.standard_normal((3, 3, 3, 10)).astype(np.float32)
    x = rng.standard_normal((1, 9, 9, 3)).astype(np.float32)
    padded = pad_channels(mod, 16)
    (op,) = extract(padded)
    assert (op.problem.size["C"], op.problem.size["K"]) == (16, 16)
    np.testing.assert_allclose(run_llvm(padded, x, weights), run_llvm(mod, x, weights),
                               rtol=1e-6, atol=1e-6)
    mm = matmul_module((5, 20), (20, 30), dtype="float32")
    (op,) = extract(pad_channels(mm, 16))
    assert (op.problem.size["K"], op.problem.size["N"]) == (32, 32)
    a, b = rng.standard_normal((5, 20)).astype(np.float32), rng.standard_normal(
        (20, 30)).astype(np.float32)
    np.testing.assert_allclose(run_llvm(pad_channels(mm, 16), a, b), a @ b, rtol=1e-5,
                               atol=1e-5)


def test_nchw_convolutions_become_nhwc_hwio_and_grouped_ones_keep_their_channels():
    mod = conv_module((1, 16, 8, 8), (32, 4, 3, 3), layout="NCHW", klayout="OIHW", groups=4,
                      dtype="float32")
    (op,) = extract(prepare_module(mod))
    assert (op.layout, op.kernel_layout, op.groups) == ("NHWC", "HWIO", 4)
    assert op.problem.size["C"] == 4  # per group: not padded
