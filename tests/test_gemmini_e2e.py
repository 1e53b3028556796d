"""Whole models compiled for Gemmini with CoSAPass, run on the functional model against
onnxruntime, through `tvm-cosa verify`; and the emitted C built with its own Makefile."""

import subprocess

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

pytest.importorskip("tvm")

from tvm_cosa.cli import main  # noqa: E402
from tvm_cosa.models import input_feed, int8_mlp, resnet18, tiny_cnn  # noqa: E402


def verify(tmp_path, model, *args):
    path = tmp_path / "model.onnx"
    onnx.save(model, path)
    result = CliRunner().invoke(main, ["verify", str(path), "--no-cache", *args])
    return result


def test_int8_matmul_model_is_exact(tmp_path):
    result = verify(tmp_path, int8_mlp())
    assert result.exit_code == 0, result.output
    assert "output 0 (int32): max abs error 0 (exact)" in result.output
    # the int8 x int8 layer runs on the array; the int32 x int32 one on the CPU
    assert "on the Gemmini array: 1 of 2" in result.output
    assert "#1 matmul 4x48x16 (generic)" in result.output
    total = [line for line in result.output.splitlines() if line.startswith("total")][0].split()
    # calls config mvin mvin_acc mvout preload compute_pre compute_acc fence bytes_in out macs
    assert total[1] == "1" and total[12] == str(4 * 32 * 48)
    assert int(total[10]) == 4 * 32 + 32 * 48  # each input and weight byte moved in once


def test_resnet18_float32_matches_onnxruntime(tmp_path):
    result = verify(tmp_path, resnet18(image_size=32, width=16))
    assert result.exit_code == 0, result.output
    assert "on the Gemmini array: 21 of 21" in result.output
    line = [x for x in result.output.splitlines() if x.startswith("output 0")][0]
    assert line.endswith("OK") and float(line.split("error ")[1].split()[0]) <= 1e-4


def test_mismatch_exits_non_zero_and_depthwise_runs_on_the_array(tmp_path):
    result = verify(tmp_path, tiny_cnn(), "--tolerance", "0")
    assert result.exit_code != 0
    assert "MISMATCH" in result.output and "outputs differ from onnxruntime" in result.output
    assert "on the Gemmini array: 6 of 6" in result.output  # #3 is a depthwise 3x3/1 16->16 g16
    assert "#3 conv2d 3x3/1 16->16 g16" in result.output


def test_emitted_c_builds_with_make_and_runs(tmp_path):
    from tvm_cosa.target.gemmini import codegen

    model = tiny_cnn()
    out_dir = tmp_path / "c"
    result = verify(tmp_path, model, "--emit-c", str(out_dir))
    assert result.exit_code == 0, result.output
    source = (out_dir / "lib0.c").read_text()
    for call in ("gemmini_extended_mvin(", "gemmini_extended_preload(",
                 "gemmini_extended_compute_preloaded(", "gemmini_extended_mvout(",
                 "gemmini_fence(", "gemmini_extended_config_ex("):
        assert call in source
    assert (out_dir / "gemmini_func.c").is_file() and (out_dir / "gemmini.h").is_file()
    make = subprocess.run(["make", "-C", str(out_dir)], capture_output=True, text=True)
    assert make.returncode == 0, make.stderr
    from tvm_cosa.target.gemmini.config import GemminiConfig

    vm, fm = codegen.load(out_dir / "model.so", GemminiConfig(dtype="float32"))
    fm.reset()
    import tvm

    feed = input_feed(model)
    got = vm["main"](*[tvm.runtime.tensor(x) for x in feed.values()]).numpy()
    from tvm_cosa.relax.frontend import run_onnxruntime

    want = run_onnxruntime(model, feed)[0]
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()
    assert fm.counters()["calls"] == 6  # the six layers on the array, the depthwise one too


def test_cosapass_schedules_and_lowers_int8_convolutions_exactly(tmp_path):
    """CoSAPass on a Relax module of int8 convolutions (ONNX has no int8 Conv TVM imports):
    scheduled by CoSA, lowered onto Gemmini, equal to numpy in int32."""
    from gemmini_util import conv_module, conv_ref, random_operands, run
    from tvm_cosa.relax.frontend import compile_model
    from tvm_cosa.target.gemmini.config import GemminiConfig

    cfg = GemminiConfig()
    xs, ws = (1, 14, 14, 32), (3, 3, 32, 48)
    kw = dict(stride=(2, 2), pad=(1, 1, 1, 1))
    mod, report = compile_model(conv_module(xs, ws, **kw), cfg.architecture(), cache=False,
                                check="builtin", jobs=1)
    assert [r.lowering for r in report.records] == ["gemmini"]
    x, w = random_operands(np.random.default_rng(0), [xs, ws], "int8")
    out, counts = run(mod, cfg, [x, w], tmp_path)
    np.testing.assert_array_equal(out, conv_ref(x, w, **kw))
    assert counts["macs"] == 7 * 7 * 48 * 9 * 32
