"""Depthwise convolutions on the Gemmini array (one channel per group, as gemmini.h's
tiled_conv_dw does it: each group a convolution with one input and one output channel).

- random depthwise layers (channel multiplier, stride, padding, dilation, NCHW / NHWC) with
  random valid mappings on the functional model: exact (int8) / close (float32) against numpy;
- CoSA-scheduled depthwise layers on Spike (libgemmini): bit-exact against the functional model
  and numpy (skips without Spike);
- a small int8 MobileNetV2 through `tvm-cosa verify --simulator spike`: every layer on the array,
  every operator bit-exact on Spike.
"""

import subprocess
import sys

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, Phase, assume, given, settings, strategies as st

from gemmini_util import (conv_module, conv_ref, lower_module, random_gemmini_mapping,
                          random_operands, run, the_op)
from tvm_cosa.target.gemmini import GemminiConfig, flow, sdk, spike

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture],
                phases=[Phase.explicit, Phase.reuse, Phase.generate])
MISSING = sdk.available()
needs_spike = pytest.mark.skipif(MISSING is not None, reason=f"Spike not usable: {MISSING}")

cases = st.fixed_dictionaries({
    "n": st.sampled_from([1, 1, 2]), "c": st.sampled_from([2, 4, 8, 16, 24]),
    "multiplier": st.sampled_from([1, 1, 2]), "hw": st.integers(3, 10),
    "kernel": st.sampled_from([3, 3, 5]), "stride": st.sampled_from([1, 2]),
    "pad": st.sampled_from([0, 1, 2]), "dilation": st.sampled_from([1, 1, 2]),
    "layout": st.sampled_from([("NHWC", "HWIO"), ("NCHW", "OIHW")]),
    "seed": st.integers(0, 10**6)})


def fits(case) -> bool:
    """The window fits the padded input (pad top, left and bottom: H + 2 pad, W + pad)."""
    span = case["dilation"] * (case["kernel"] - 1) + 1
    return min(case["hw"] + 2 * case["pad"], case["hw"] + 1 + case["pad"]) >= span


def depthwise(case, dtype="int8"):
    c, k = case["c"], case["c"] * case["multiplier"]
    layout, klayout = case["layout"]
    hw, kern, pad, dil = case["hw"], case["kernel"], case["pad"], case["dilation"]
    xshape = dict(zip("NHWC", (case["n"], hw, hw + 1, c)))
    wshape = dict(zip("OIHW", (k, 1, kern, kern)))
    xs, ws = tuple(xshape[a] for a in layout), tuple(wshape[a] for a in klayout)
    kw = dict(stride=(case["stride"],) * 2, pad=(pad, pad, pad, 0), layout=layout,
              klayout=klayout, groups=c, dilation=(dil, dil))
    return conv_module(xs, ws, dtype=dtype, **kw), [xs, ws], kw


@settings(max_examples=12, **SETTINGS)
@given(case=cases, dtype=st.sampled_from(["int8", "int8", "float32"]))
def test_random_depthwise_layers_and_mappings_match_numpy(tmp_path, case, dtype):
    assume(fits(case))
    cfg = GemminiConfig(dtype=dtype)
    arch = cfg.architecture()
    mod, shapes, kw = depthwise(case, dtype)
    op = the_op(mod)
    assert op.problem.size["C"] == 1 and op.problem.size["G"] == case["c"]
    mapping = random_gemmini_mapping(op.problem, arch, case["seed"])
    assume(mapping is not None)
    x, w = random_operands(np.random.default_rng(case["seed"]), shapes, dtype)
    out, counters = run(lower_module(mod, mapping, arch, op), cfg, [x, w], tmp_path)
    want = conv_ref(x, w, **kw)
    if dtype == "int8":
        np.testing.assert_array_equal(out, want)
    else:
        np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    assert counters["macs"] == op.problem.macs  # every MAC on the array, once


@needs_spike
@settings(max_examples=3, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(case=cases)
def test_cosa_scheduled_depthwise_layers_are_bit_exact_on_spike(case):
    assume(fits(case))
    mod, _, _ = depthwise(case)
    compiled = flow.compile_module(mod, "gemmini", cache=False, jobs=1, check="builtin")
    assert [r.lowering for r in compiled.report.records] == ["gemmini"]
    runner = flow.load(compiled.mod, compiled.config)
    rng = np.random.default_rng(case["seed"])
    feed = {p.name: rng.integers(-128, 128, [int(d) for d in p.ty.shape], dtype=np.int8)
            for p in compiled.mod["main"].params}
    (result,) = spike.run_on_spike(spike.capture(runner, compiled.mod, feed), compiled.config,
                                   jobs=2)
    assert result.ok, result.message
    assert result.spike_vs_functional == [0] and result.spike_vs_reference == [True]


@needs_spike
def test_small_int8_mobilenet_v2_runs_every_layer_on_the_array_bit_exact_on_spike(tmp_path):
    """Depthwise 3x3 layers (stride 1 and 2) and the 1x1 ones (loop_ws where the tile fits)."""
    from tvm_cosa.models import mobilenet_v2_int8

    path = tmp_path / "mbv2.onnx"
    onnx.save(mobilenet_v2_int8(image_size=16, width_mult=0.25, blocks=3), path)
    done = subprocess.run([sys.executable, "-m", "tvm_cosa.cli", "verify", str(path), "--arch",
                           "gemmini", "--no-cache", "--simulator", "spike"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "on the Gemmini array: 20 of 20" in done.stdout
    assert "max abs error 0 (exact)" in done.stdout
    line = [x for x in done.stdout.splitlines() if x.startswith("Spike:")][0]
    assert "bit-exact" in line and "MISMATCH" not in done.stdout.split("RoCC/call", 1)[1]
