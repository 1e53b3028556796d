"""Gemmini's CISC matmul loop (gemmini_loop_ws).

- the functional model's loop_ws against libgemmini's on Spike: the same random programs
  (bounds, padding, NULL operands reusing what is resident, D / ex_accumulate, K split over
  calls) print the same accumulator results (skips without Spike);
- the lowering: one loop_ws per CoSA tile for random matmuls and 1x1 convolutions, exact
  (int8) / close (float32) against numpy, with fewer commands issued by the CPU.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, assume, event, given, settings, strategies as st

from gemmini_util import (conv_module, conv_ref, lower_module, matmul_module,
                          random_gemmini_mapping, random_operands, run, the_op)
from spike_programs import c_array, needs_spike, run_on_model, run_on_spike
from tvm_cosa import LevelMapping as L, Mapping
from tvm_cosa.target.gemmini.config import GemminiConfig

CFG = GemminiConfig()
DIM = CFG.dim
# no shrinking: each example builds programs (a failure is reported as drawn)
SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture],
                phases=[Phase.explicit, Phase.reuse, Phase.generate])


# ---- the instruction: functional model vs libgemmini ----------------------------------------
def loop_ws_program(rng, I, J, K, pads, calls):
    """A program: A, B, D random; each call (a, b, d, c, ex_acc, k_half) runs loop_ws on the
    whole I x J x K (k_half None) or on half of K's blocks; then prints C."""
    pad_i, pad_j, pad_k = pads
    m, n, k = I * DIM - pad_i, J * DIM - pad_j, K * DIM - pad_k
    a = rng.integers(-128, 128, (m, k))
    b = rng.integers(-128, 128, (k, n))
    d = rng.integers(-2**20, 2**20, (m, n))
    src = c_array("A", "elem_t", a) + c_array("B", "elem_t", b) + c_array("D", "acc_t", d)
    src += f"static acc_t C[{m}][{n}];\n"
    body = [f"for (int i = 0; i < {m}; i++) for (int j = 0; j < {n}; j++) C[i][j] = 7;",
            "gemmini_flush(0);",
            "gemmini_extended_config_ex(WEIGHT_STATIONARY, 0, 0, 1, 0, 0);",
            f"GEMMINI_CONFIG_LD({k}, 0);", f"GEMMINI_CONFIG_LD({n}, 1);",
            f"GEMMINI_CONFIG_LD({n * 4}, 2);", f"gemmini_config_st({n * 4});"]
    for use_a, use_b, use_d, use_c, ex_acc, half in calls:
        k0, k_blocks, pk = 0, K, pad_k
        if half is not None and K > 1:  # blocks [0, K // 2) or [K // 2, K)
            k0, k_blocks, pk = (0, K // 2, 0) if half == 0 else (K // 2, K - K // 2, pad_k)
        ptr = {"A": f"(elem_t*)A + {k0 * DIM}", "B": f"(elem_t*)B + {k0 * DIM * n}",
               "D": "(acc_t*)D", "C": "(acc_t*)C"}
        args = [ptr[x] if use else "NULL" for x, use in zip("ABDC", (use_a, use_b, use_d, use_c))]
        body.append(f"gemmini_loop_ws({I}, {J}, {k_blocks}, {pad_i}, {pad_j}, {pk}, "
                    f"{', '.join(args)}, {k}, {n}, {n}, {n}, 0, 0, 1, 0, {int(ex_acc)}, 0, 0, 0, "
                    "0);")
    body += ["gemmini_fence();",
             "#ifdef TVM_COSA_MODEL",
             'if (gemmini_status()) { printf("ERROR %s\\n", gemmini_error_message()); return 1; }',
             "#endif",
             'printf("BEGIN\\n");',
             f"for (int i = 0; i < {m}; i++) {{ for (int j = 0; j < {n}; j++) "
             'printf("%ld ", (long)C[i][j]); printf("\\n"); }',
             'printf("END\\n");',
             "return 0;"]
    return src + "int main(void) {\n  " + "\n  ".join(body) + "\n}\n", (a, b, d)


@needs_spike
@settings(max_examples=6, **SETTINGS)
@given(I=st.integers(1, 3), J=st.integers(1, 3), K=st.integers(1, 3),
       pads=st.tuples(*[st.integers(0, DIM - 1)] * 3), seed=st.integers(0, 10**6),
       scenario=st.sampled_from(["one", "bias", "k split", "reuse", "garbage acc"]))
def test_loop_ws_matches_libgemmini(tmp_path, I, J, K, pads, seed, scenario):
    calls = {"one": [(1, 1, 0, 1, 0, None)],
             "bias": [(1, 1, 1, 1, 1, None)],
             # partial sums of K's first half stay in the accumulator for the second
             "k split": [(1, 1, 0, 0, 0, 0), (1, 1, 0, 1, 1, 1)],
             # the second call moves nothing in: A and B are still in the scratchpad
             "reuse": [(1, 1, 0, 1, 0, None), (0, 0, 0, 1, 1, None)],
             # accumulate onto whatever a previous call left
             "garbage acc": [(1, 1, 1, 0, 1, None), (1, 1, 0, 1, 1, None)]}[scenario]
    source, (a, b, d) = loop_ws_program(np.random.default_rng(seed), I, J, K, pads, calls)
    spike = run_on_spike(source, tmp_path / "spike")
    model = run_on_model(source, tmp_path / "model", CFG)
    assert model == spike
    got = np.array([[int(v) for v in line.split()] for line in model.splitlines()])
    product = a @ b
    # (K = 1 cannot split: both calls run the whole product, the second accumulating)
    want = {"one": product, "bias": product + d, "k split": product * (1 if K > 1 else 2),
            "reuse": 2 * product,
            "garbage acc": 2 * product + d}[scenario]
    np.testing.assert_array_equal(got, want)


def test_loop_ws_rejects_what_does_not_fit_half_the_memories(tmp_path):
    """(I*K + K*J) * DIM rows must fit half the scratchpad: libgemmini stops; the model says
    why."""
    source, _ = loop_ws_program(np.random.default_rng(0), 1, 1, 1, (0, 0, 0),
                                [(1, 1, 0, 1, 0, None)])
    too_big = source.replace("gemmini_loop_ws(1, 1, 1,", "gemmini_loop_ws(16, 1, 32,")
    assert too_big != source
    with pytest.raises(AssertionError, match="too large for double buffering"):
        run_on_model(too_big, tmp_path, CFG)


# ---- the lowering ---------------------------------------------------------------------------
def issued(counters) -> int:
    """RoCC commands the CPU issued: every command but those the loop unit issued itself, and
    six per loop_ws (its configuration registers and the loop)."""
    commands = ("config_ex", "config_ld", "config_st", "mvin", "mvin_acc", "mvout", "preload",
                "compute_preloaded", "compute_accumulated", "flush")
    return (sum(counters[c] for c in commands) - counters.get("loop_commands", 0)
            + 6 * counters.get("loop_ws", 0))


def lowered_both_ways(mod, mapping, arch, op):
    from tvm_cosa.target.gemmini import loops
    from tvm_cosa.target.gemmini.lowering import OP_REGISTRY

    with loops.loop_instructions(False):
        plain = lower_module(mod, mapping, arch, op)
    with loops.loop_instructions(True):
        looped = lower_module(mod, mapping, arch, op)
    (func,) = [f for f in looped.functions.values() if "gemmini.op_id" in (f.attrs or {})]
    note = OP_REGISTRY[int(func.attrs["gemmini.op_id"])]["loop_ws"]
    return plain, looped, note


layer_cases = st.fixed_dictionaries({
    "kind": st.sampled_from(["matmul", "matmul", "batched", "conv1x1"]),
    "m": st.integers(1, 70), "k": st.integers(1, 70), "n": st.integers(1, 70),
    "hw": st.integers(1, 9), "batch": st.sampled_from([1, 2]), "stride": st.sampled_from([1, 2]),
    "groups": st.sampled_from([1, 1, 2]), "seed": st.integers(0, 10**6)})


def _layer(case, dtype):
    if case["kind"] == "conv1x1":
        g = case["groups"]
        c, k = g * max(1, case["k"] // g), g * max(1, case["n"] // g)
        xs, ws = (case["batch"], case["hw"], case["hw"] + 1, c), (1, 1, c // g, k)
        kw = dict(stride=(case["stride"],) * 2, pad=(0, 0, 0, 0), groups=g)
        return (conv_module(xs, ws, dtype=dtype, **kw), [xs, ws],
                lambda x, w: conv_ref(x, w, **kw))
    shapes = [(case["m"], case["k"]), (case["k"], case["n"])]
    if case["kind"] == "batched":
        shapes = [(2,) + shapes[0], (2,) + shapes[1]]
    return (matmul_module(*shapes, dtype=dtype), shapes,
            lambda a, b: np.matmul(a.astype(np.float64), b.astype(np.float64)))


@settings(max_examples=8, **SETTINGS)
@given(case=layer_cases, dtype=st.sampled_from(["int8", "int8", "float32"]))
def test_loop_ws_lowering_matches_numpy_with_fewer_commands(tmp_path, case, dtype):
    cfg = GemminiConfig(dtype=dtype)
    arch = cfg.architecture()
    mod, shapes, reference = _layer(case, dtype)
    op = the_op(mod)
    mapping = random_gemmini_mapping(op.problem, arch, case["seed"])
    assume(mapping is not None)
    plain, looped, note = lowered_both_ways(mod, mapping, arch, op)
    assume(note == "loop_ws")
    inputs = random_operands(np.random.default_rng(case["seed"]), shapes, dtype)
    want = reference(*inputs)
    outs = {}
    for name, lowered in (("plain", plain), ("looped", looped)):
        out, counters = run(lowered, cfg, inputs, tmp_path)
        if dtype == "int8":
            np.testing.assert_array_equal(out, want)
        else:
            np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
        assert counters["macs"] == op.problem.macs
        outs[name] = counters
    assert outs["looped"]["loop_ws"] >= 1
    # every compute and move of the tile is the loop unit's: the CPU issues fewer commands
    assert outs["looped"]["loop_commands"] > 6 * outs["looped"]["loop_ws"]
    assert issued(outs["looped"]) < issued(outs["plain"])
    # CoSA's reuse is kept (NULL operands): no more bytes move in; fewer when the plan moves
    # the bounding box of a strided input and loop_ws only the rows it reads
    assert outs["looped"]["bytes_in"] <= outs["plain"]["bytes_in"]
    if case["kind"] != "conv1x1" or case["stride"] == 1:
        assert outs["looped"]["bytes_in"] == outs["plain"]["bytes_in"]


def test_what_loop_ws_does_not_cover_keeps_every_command(tmp_path):
    arch = CFG.architecture()
    # a 3x3 kernel is loop_conv_ws's (not lowered): command by command
    mod = conv_module((1, 6, 6, 16), (3, 3, 16, 16))
    op = the_op(mod)
    _, looped, note = lowered_both_ways(mod, random_gemmini_mapping(op.problem, arch, 1), arch, op)
    assert "window" in note
    # a 256 x 16 x 512 tile fits the scratchpad (8192 + 512 rows) but not half of it, which
    # loop_ws needs ((16 * 32 + 32 * 1) * 16 rows)
    mod = matmul_module((256, 512), (512, 16))
    mapping = Mapping([L(temporal={"M": 256}), L(temporal={"K": 32}, spatial_x={"K": 16},
                                                  spatial_y={"N": 16}), L(), L()])
    _, looped, note = lowered_both_ways(mod, mapping, arch, the_op(mod))
    assert "half the scratchpad" in note
    a, b = random_operands(np.random.default_rng(0), [(256, 512), (512, 16)], "int8")
    out, counters = run(looped, CFG, [a, b], tmp_path)
    np.testing.assert_array_equal(out, a.astype(np.int32) @ b.astype(np.int32))
    assert counters["loop_ws"] == 0


def test_double_buffered_schedules_let_loop_ws_run_the_tiles(tmp_path):
    """GemminiConfig(double_buffer=True): CoSA's tiles fit half the memories, the hardware
    (functional model, gemmini_params.h) keeps all of them, and loop_ws runs the tiles that the
    full-memory schedule makes too big for it."""
    from tvm_cosa import schedule
    from tvm_cosa.target.gemmini.config import config_for

    db = GemminiConfig(double_buffer=True)
    arch = db.architecture()
    assert arch.name == "gemmini-db" and config_for(arch) == db
    rows = {lv.name: lv.row_capacity for lv in arch.levels}
    assert (rows["Scratchpad"], rows["Accumulator"]) == (CFG.spad_rows // 2, CFG.acc_rows // 2)
    assert db.params_header() == CFG.params_header().replace(CFG.name, db.name)
    mod = matmul_module((256, 512), (512, 256))
    op = the_op(mod)
    notes = {}
    for cfg in (CFG, db):
        _, looped, notes[cfg.name] = lowered_both_ways(
            mod, schedule(op.problem, cfg.architecture()), cfg.architecture(), op)
    assert "half the scratchpad" in notes["gemmini"] and notes["gemmini-db"] == "loop_ws"
    a, b = random_operands(np.random.default_rng(1), [(256, 512), (512, 256)], "int8")
    out, counters = run(looped, db, [a, b], tmp_path)
    np.testing.assert_array_equal(out, a.astype(np.int32) @ b.astype(np.int32))
    # the CPU issues the configuration (flush, config_ex, 3 config_ld, config_st) and the loops
    assert counters["loop_ws"] >= 1 and issued(counters) == 6 + 6 * counters["loop_ws"]


@needs_spike
@settings(max_examples=3, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(case=layer_cases)
def test_loop_ws_layers_are_bit_exact_on_spike(case):
    """CoSA's double-buffered schedules of random matmuls / 1x1 convolutions, loop_ws where the
    tile allows it, on libgemmini."""
    from spike_programs import lowered_layer_on_spike

    mod, _, _ = _layer(case, "int8")
    result, note = lowered_layer_on_spike(mod, GemminiConfig(double_buffer=True), case["seed"])
    event(f"lowering: {note[:40]}")
    assert result.ok, result.message
    assert result.spike_vs_functional == [0] and result.spike_vs_reference == [True]
    if note == "loop_ws":
        assert result.commands.get("loop_ws", 0) >= 1
        assert "compute_preloaded" not in result.commands  # every compute inside the loops
