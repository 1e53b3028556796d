"""Gemmini's CISC convolution loop (gemmini_loop_conv_ws, target/gemmini/conv_loops.py).

- the functional model's loop_conv_ws against libgemmini's on Spike: random programs (kernel,
  stride, dilation, padding, channels beyond one block, bias / no bias, ReLU and scale, a
  second call reusing the scratchpad through NULL input and weights) print the same int8
  outputs;
- the lowering: requantized convolutions of random shapes run one loop_conv_ws per CoSA tile
  where the tile allows it, exact against onnxruntime, with fewer commands issued by the CPU;
  on Spike bit-exact.
Spike parts skip without Spike and the RISC-V cross compiler.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings, strategies as st

tvm = pytest.importorskip("tvm")

from spike_programs import c_array, run_on_model, run_on_spike  # noqa: E402
from test_gemmini_requant import conv_model  # noqa: E402
from tvm_cosa.relax.frontend import import_onnx, run_onnxruntime  # noqa: E402
from tvm_cosa.target.gemmini import GemminiConfig, flow, loops, sdk, spike  # noqa: E402
from tvm_cosa.target.gemmini.lowering import OP_REGISTRY  # noqa: E402

OPTIONS = dict(cache=False, jobs=1, check="builtin")
COMMANDS = ("config_ex", "config_ld", "config_st", "mvin", "mvin_acc", "mvout", "preload",
            "compute_preloaded", "compute_accumulated", "flush")


def issued(counters) -> int:
    """RoCC commands the CPU issued: all but those the loop unit issued itself, plus six per
    loop_ws and seven per loop_conv_ws (their configuration registers and the loop)."""
    return (sum(counters[c] for c in COMMANDS) - counters.get("loop_commands", 0)
            + 6 * counters.get("loop_ws", 0) + 7 * counters.get("loop_conv_ws", 0))


# ---- loop_conv_ws: functional model against libgemmini ------------------------------------------
def conv_program(rng, *, batch, rows, cols, in_ch, out_ch, kernel, stride, dilation, pad,
                 no_bias, relu, scale):
    """Two loop_conv_ws calls over the whole (padded) image: the second reuses the input and
    weights left in the scratchpad (NULL) with another bias. Prints both outputs."""
    dk = kernel + (dilation - 1) * (kernel - 1)
    orows = (rows + 2 * pad - dk) // stride + 1
    ocols = (cols + 2 * pad - dk) // stride + 1
    # the loop unit's window is orows * stride + dk - 1 rows: the rows past the image are padding
    dpad = orows * stride + dk - 1 - pad - rows
    rpad = ocols * stride + dk - 1 - pad - cols
    x = rng.integers(-128, 128, (batch, rows, cols, in_ch), dtype=np.int8)
    w = rng.integers(-128, 128, (kernel, kernel, in_ch, out_ch), dtype=np.int8)
    b1 = rng.integers(-5000, 5000, out_ch, dtype=np.int32)
    b2 = rng.integers(-5000, 5000, out_ch, dtype=np.int32)
    bits = int(np.float32(scale).view(np.uint32))
    size = batch * orows * ocols * out_ch

    def call(out, bias, inp, wts):
        return (f"  gemmini_loop_conv_ws({batch}, {rows}, {cols}, {in_ch}, {out_ch}, {orows}, "
                f"{ocols}, {orows}, {ocols}, {stride}, {pad}, {kernel}, {dilation}, 1, 1, 0, "
                f"{batch}, {orows}, {ocols}, {out_ch}, {kernel}, {kernel}, {in_ch}, {pad}, "
                f"{rpad}, {pad}, {dpad}, 0, 0, 0, 0, {orows}, {ocols}, {wts}, {out}, {bias}, "
                f"{inp}, {int(no_bias)}, 1, 0, 0, 0, {int(relu)}, 0, 0, 0, 0, 1, {in_ch}, "
                f"{out_ch}, {out_ch}, 0, 0, 0);\n")

    source = (c_array("x", "int8_t", x) + c_array("w", "int8_t", w) +
              c_array("b1", "int32_t", b1) + c_array("b2", "int32_t", b2) +
              f"static int8_t out1[{size}], out2[{size}];\n" + f"""
int main(void) {{
  union {{ uint32_t bits; float value; }} scale = {{ {bits}u }};
  gemmini_flush(0);
  gemmini_extended_config_ex(WEIGHT_STATIONARY, 0, 0, {stride}, 0, 0);
  gemmini_extended_config_st({out_ch}, {int(relu)}, scale.value);
""" + call("out1", "b1", "x", "w") + call("out2", "b2", "NULL", "NULL") + f"""
  gemmini_fence();
#ifdef TVM_COSA_MODEL
  if (gemmini_status()) {{ printf("ERROR %s\\n", gemmini_error_message()); return 1; }}
#endif
  printf("BEGIN\\n");
  for (int i = 0; i < {size}; i++) printf("%d %d\\n", out1[i], out2[i]);
  printf("END\\n");
  return 0;
}}
""")
    return source, (x, w, b1, b2, orows, ocols)


def numpy_conv(x, w, bias, stride, dilation, pad, orows, ocols, scale, relu, no_bias):
    wide = np.pad(x.astype(np.int64), ((0, 0), (pad, pad + stride), (pad, pad + stride), (0, 0)))
    k = w.shape[0]
    acc = np.zeros((x.shape[0], orows, ocols, w.shape[3]), np.int64)
    for i in range(k):
        for j in range(k):
            patch = wide[:, i * dilation:i * dilation + stride * orows:stride,
                         j * dilation:j * dilation + stride * ocols:stride, :]
            acc += np.tensordot(patch, w[i, j].astype(np.int64), axes=([3], [0]))
    if not no_bias:
        acc += bias
    out = np.clip(np.rint(acc.astype(np.int32).astype(np.float32) * np.float32(scale)), -128, 127)
    return np.maximum(out, 0) if relu else out


@settings(max_examples=8, deadline=None, derandomize=True, phases=[Phase.generate],
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_loop_conv_ws_matches_libgemmini(tmp_path_factory, data):
    draw = lambda s, label: data.draw(s, label=label)  # noqa: E731
    kernel = draw(st.sampled_from([1, 2, 3]), "kernel")
    params = dict(batch=draw(st.integers(1, 2), "batch"), rows=draw(st.integers(3, 9), "rows"),
                  cols=draw(st.integers(3, 20), "cols"),
                  in_ch=draw(st.sampled_from([3, 16, 24, 40]), "in_ch"),
                  out_ch=draw(st.sampled_from([5, 16, 20, 36]), "out_ch"), kernel=kernel,
                  stride=draw(st.integers(1, 2), "stride"),
                  dilation=draw(st.integers(1, 2), "dilation") if kernel > 1 else 1,
                  pad=draw(st.integers(0, kernel // 2 + 1), "pad"),
                  no_bias=draw(st.booleans(), "no_bias"), relu=draw(st.booleans(), "relu"),
                  scale=np.float32(draw(st.sampled_from([2.0 ** -10, 0.000771, 0.0123]),
                                        "scale")))
    dk = kernel + (params["dilation"] - 1) * (kernel - 1)
    if min(params["rows"], params["cols"]) + 2 * params["pad"] < dk:
        return
    seed = data.draw(st.integers(0, 2 ** 16), label="seed")
    source, (x, w, b1, b2, orows, ocols) = conv_program(np.random.default_rng(seed), **params)
    args = (params["stride"], params["dilation"], params["pad"], orows, ocols, params["scale"],
            params["relu"], params["no_bias"])
    want = np.stack([numpy_conv(x, w, b1, *args).ravel(), numpy_conv(x, w, b2, *args).ravel()],
                    axis=1)
    folder = tmp_path_factory.mktemp("conv")
    model = run_on_model(source, folder / "model", GemminiConfig())
    got = np.array(model.split(), np.int64).reshape(-1, 2)
    assert np.array_equal(got, want)
    if sdk.available() is None:
        assert run_on_spike(source, folder / "spike") == model


def test_loop_conv_ws_refuses_a_tile_over_half_the_memories(tmp_path):
    source, _ = conv_program(np.random.default_rng(0), batch=1, rows=4, cols=4, in_ch=16,
                             out_ch=16, kernel=3, stride=1, dilation=1, pad=1, no_bias=False,
                             relu=False, scale=np.float32(0.01))
    too_big = source.replace("gemmini_loop_conv_ws(1, 4, 4, 16, 16, 4, 4, 4, 4, 1, 1, 3, 1, 1, "
                             "1, 0, 1, 4, 4, 16,",
                             "gemmini_loop_conv_ws(1, 4, 4, 16, 16, 4, 4, 4, 4, 1, 1, 3, 1, 1, "
                             "1, 0, 1, 4, 4, 16 * 40,")
    assert too_big != source
    with pytest.raises(AssertionError, match="too large for double buffering"):
        run_on_model(too_big, tmp_path, GemminiConfig())


# ---- the lowering ----------------------------------------------------------------------------
def compile_both_ways(model):
    results = {}
    for name, enabled in (("plain", False), ("looped", True)):
        with loops.loop_instructions(enabled):
            compiled = flow.compile_module(import_onnx(model), "gemmini", **OPTIONS)
        notes = [OP_REGISTRY[int(f.attrs["gemmini.op_id"])]["loop_ws"]
                 for f in spike.gemmini_functions(compiled.mod).values()]
        results[name] = (compiled, notes)
    return results


@settings(max_examples=5, deadline=None, derandomize=True, phases=[Phase.generate],
          suppress_health_check=[HealthCheck.too_slow])
@given(cin=st.sampled_from([16, 32, 48]), cout=st.sampled_from([16, 32, 64]),
       k=st.sampled_from([1, 3, 5]), stride=st.sampled_from([1, 2]), hw=st.integers(6, 20),
       relu=st.booleans(), seed=st.integers(0, 1000))
def test_requantized_convolutions_run_one_loop_conv_ws_per_tile(cin, cout, k, stride, hw, relu,
                                                                 seed):
    model = conv_model(cin, cout, k, stride, hw, relu, seed)
    feed = {"input": np.random.default_rng(seed).standard_normal((1, cin, hw, hw))
            .astype(np.float32)}
    want = run_onnxruntime(model, feed)
    both = compile_both_ways(model)
    counters = {}
    for name, (compiled, notes) in both.items():
        runner = flow.load(compiled.mod, compiled.config)
        got = runner(feed)
        assert np.array_equal(got[0], want[0]), name
        counters[name] = runner.model.counters()
    (note,) = both["looped"][1]
    assert counters["plain"]["loop_conv_ws"] == 0
    if note == "loop_conv_ws":
        assert counters["looped"]["loop_conv_ws"] >= 1
        assert issued(counters["looped"]) < issued(counters["plain"])
        assert counters["looped"]["bytes_out"] == counters["plain"]["bytes_out"]
        if sdk.available() is None:
            compiled = both["looped"][0]
            runner = flow.load(compiled.mod, compiled.config)
            operators = spike.capture(runner, compiled.mod, feed)
            (result,) = spike.run_on_spike(operators, compiled.config, jobs=1)
            assert result.ok, result.message
            assert result.commands.get("loop_conv_ws", 0) >= 1
    elif note == "loop_ws":  # a 1x1 layer loop_conv_ws declines, as a matrix product
        assert counters["looped"]["loop_ws"] >= 1 and counters["looped"]["loop_conv_ws"] == 0
        assert issued(counters["looped"]) < issued(counters["plain"])
    else:  # the reason is one of the rules of conv_loops.loop_conv_ws_tile
        assert counters["looped"]["loop_conv_ws"] == 0
        assert any(why in note for why in ("splits the reduction", "does not fit half",
                                           "small tile", "skips input rows")), note


def test_a_layer_that_qualifies_uses_loop_conv_ws_and_issues_fewer_commands():
    """ResNet's 3x3 layer at 8x8: CoSA keeps the whole reduction in one tile."""
    model = conv_model(16, 16, 3, 1, 8, True, 0)
    feed = {"input": np.random.default_rng(0).standard_normal((1, 16, 8, 8)).astype(np.float32)}
    both = compile_both_ways(model)
    assert both["looped"][1] == ["loop_conv_ws"]
    counts = {}
    for name, (compiled, _) in both.items():
        runner = flow.load(compiled.mod, compiled.config)
        runner(feed)
        counts[name] = runner.model.counters()
    assert counts["looped"]["loop_conv_ws"] >= 1
    assert issued(counts["looped"]) * 5 < issued(counts["plain"])
