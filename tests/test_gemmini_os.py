"""The output-stationary dataflow (GemminiConfig(dataflow="OS")).

- the functional model's OS preload / compute against libgemmini's on Spike: random command
  streams (D preloaded or zero, chains of compute_accumulated, partial blocks, C written with or
  without the accumulate bit or not at all) leave the same accumulator (skips without Spike);
- the lowering of OS mappings: random valid OS mappings and CoSA's own OS schedules of conv2d /
  matmul layers, exact (int8) / close (float32) against numpy.
"""

import math
import random

import numpy as np
from hypothesis import HealthCheck, Phase, assume, given, settings, strategies as st

from gemmini_util import (conv_module, conv_ref, lower_module, matmul_module, random_operands,
                          run, the_op)
from spike_programs import c_array, needs_spike, run_on_model, run_on_spike
from tvm_cosa import LevelMapping, Mapping, check_mapping, schedule
from tvm_cosa.problem import prime_factors
from tvm_cosa.target.gemmini.config import GemminiConfig
from tvm_cosa.target.gemmini.dims import gemmini_dims
from tvm_cosa.target.gemmini.plan import UnsupportedMapping, make_plan, pad_channels

CFG = GemminiConfig(dataflow="OS")
DIM = CFG.dim
SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture],
                phases=[Phase.explicit, Phase.reuse, Phase.generate])


# ---- the commands: functional model vs libgemmini -------------------------------------------
def os_program(seed):
    """Random OS blocks: A, B, D in the scratchpad; chains of computes into accumulator rows."""
    rng = random.Random(seed)
    data = np.random.default_rng(seed).integers(-128, 128, (8 * DIM, DIM))
    body = ["gemmini_flush(0);",
            "gemmini_extended_config_ex(OUTPUT_STATIONARY, 0, 0, 1, 0, 0);",
            f"GEMMINI_CONFIG_LD({DIM}, 0);", f"gemmini_config_st({DIM * 4});"]
    body += [f"gemmini_extended_mvin((elem_t*)S + {r * DIM}, {r}, {DIM}, {DIM});"
             for r in range(0, 8 * DIM, DIM)]
    acc_rows = 4 * DIM
    body += [f"gemmini_extended_mvin(NULL, {hex(0x80000000 + r)}, {DIM}, {DIM});"
             for r in range(0, acc_rows, DIM)]  # a zeroed accumulator
    chains = rng.randint(1, 4)
    for k in range(chains):
        chain = rng.randint(1, 3)
        c_rows, c_cols = rng.randint(1, DIM), rng.randint(1, DIM)
        c_row = rng.randrange(0, acc_rows - DIM + 1)
        c_addr = 0x80000000 | (0x40000000 if rng.random() < 0.5 else 0) | c_row
        d = rng.choice(["GARBAGE_ADDR", str(rng.randrange(0, 7 * DIM))])
        for step in range(chain):
            a, b = rng.randrange(0, 7 * DIM), rng.randrange(0, 7 * DIM)
            a_rows, a_cols = rng.randint(1, DIM), rng.randint(1, DIM)
            b_cols = rng.randint(1, DIM)
            # the last chain always writes its result, so every program computes something
            write = step == chain - 1 and (rng.random() < 0.9 or k == chains - 1)
            out = hex(c_addr) if write else "GARBAGE_ADDR"
            bd = d if step == 0 else "GARBAGE_ADDR"
            body.append(f"gemmini_extended_preload({bd}, {out}, {DIM}, {DIM}, {c_cols}, "
                        f"{c_rows});")
            compute = "preloaded" if step == 0 else "accumulated"
            body.append(f"gemmini_extended_compute_{compute}({a}, {b}, {a_cols}, {a_rows}, "
                        f"{b_cols}, {a_cols});")
    body += [f"gemmini_extended_mvout((acc_t*)C + {r * DIM}, {hex(0xA0000000 + r)}, {DIM}, "
             f"{DIM});" for r in range(0, acc_rows, DIM)]
    body += ["gemmini_fence();",
             "#ifdef TVM_COSA_MODEL",
             'if (gemmini_status()) { printf("ERROR %s\\n", gemmini_error_message()); return 1; }',
             "#endif",
             'printf("BEGIN\\n");',
             f"for (int i = 0; i < {acc_rows}; i++) {{ for (int j = 0; j < {DIM}; j++) "
             'printf("%ld ", (long)C[i][j]); printf("\\n"); }',
             'printf("END\\n");', "return 0;"]
    src = c_array("S", "elem_t", data) + f"static acc_t C[{acc_rows}][{DIM}];\n"
    return src + "int main(void) {\n  " + "\n  ".join(body) + "\n}\n"


@needs_spike
@settings(max_examples=5, **SETTINGS)
@given(seed=st.integers(0, 10**6))
def test_os_commands_match_libgemmini(tmp_path, seed):
    source = os_program(seed)
    spike = run_on_spike(source, tmp_path / "spike")
    assert run_on_model(source, tmp_path / "model", CFG) == spike
    assert any(v != "0" for v in spike.split())  # something was computed


# ---- the lowering ---------------------------------------------------------------------------
def random_os_mapping(problem, arch, seed, tries=300):
    """A random valid output-stationary mapping: reductions may run at the registers, one or two
    pixel dimensions may go spatial on X (a 2-D block of pixels) and the output channel on Y (up
    to DIM each), every other prime factor on a random level; random loop orders. None if no
    draw within `tries` fits."""
    rng = random.Random(seed)
    d = gemmini_dims(problem)
    n, acc = arch.num_levels, arch.spatial_levels[0]
    config = GemminiConfig.from_architecture(arch)
    for _ in range(tries):
        levels = [LevelMapping() for _ in range(n)]
        x_pixels = rng.sample(d.pixels, min(len(d.pixels), rng.choice([1, 2])))
        for name, size in problem.sizes:
            for p in prime_factors(size):
                slots = list(range(acc, n))
                if name in d.reductions:
                    slots += list(range(acc)) * 2
                if name in x_pixels or name == d.output_channel:
                    slots.append("S")
                slot = rng.choice(slots)
                if slot == "S":
                    side = levels[acc].spatial_x if name in x_pixels else levels[acc].spatial_y
                    if math.prod(side.values()) * p <= DIM:
                        side[name] = side.get(name, 1) * p
                        continue
                    slot = rng.choice(range(acc, n))
                lv = levels[slot]
                lv.temporal[name] = lv.temporal.get(name, 1) * p
        for lv in levels:
            order = list(problem.dims)
            rng.shuffle(order)
            lv.order = tuple(order)
        mapping = Mapping(levels)
        if check_mapping(mapping, problem, arch):
            continue
        try:
            make_plan(problem, mapping, arch, config)
        except UnsupportedMapping:
            continue
        return mapping
    return None


cases = st.fixed_dictionaries({
    "kind": st.sampled_from(["conv", "conv", "matmul"]),
    "n": st.sampled_from([1, 1, 2]), "c": st.sampled_from([3, 8, 16, 32]),
    "k": st.sampled_from([4, 16, 24]), "hw": st.integers(3, 8), "kernel": st.sampled_from([1, 3]),
    "stride": st.sampled_from([1, 2]), "pad": st.sampled_from([0, 1]),
    "layout": st.sampled_from([("NHWC", "HWIO"), ("NCHW", "OIHW")]),
    "m": st.integers(1, 40), "seed": st.integers(0, 10**6)})


def _layer(case, dtype):
    if case["kind"] == "matmul":
        shapes = [(case["m"], case["c"]), (case["c"], case["k"])]
        return matmul_module(*shapes, dtype=dtype), shapes, \
            lambda a, b: a.astype(np.float64) @ b.astype(np.float64)
    layout, klayout = case["layout"]
    hw, kern, pad = case["hw"], case["kernel"], case["pad"]
    xshape = dict(zip("NHWC", (case["n"], hw, hw + 1, case["c"])))
    wshape = dict(zip("OIHW", (case["k"], case["c"], kern, kern)))
    xs, ws = tuple(xshape[a] for a in layout), tuple(wshape[a] for a in klayout)
    kw = dict(stride=(case["stride"],) * 2, pad=(pad, pad, pad, 0), layout=layout,
              klayout=klayout)
    return conv_module(xs, ws, dtype=dtype, **kw), [xs, ws], lambda x, w: conv_ref(x, w, **kw)


@settings(max_examples=12, **SETTINGS)
@given(case=cases, dtype=st.sampled_from(["int8", "int8", "float32"]))
def test_os_random_mappings_match_numpy(tmp_path, case, dtype):
    cfg = GemminiConfig(dataflow="OS", dtype=dtype)
    arch = cfg.architecture()
    mod, shapes, reference = _layer(case, dtype)
    op = the_op(mod)
    problem = pad_channels(op.problem, DIM) if case["seed"] % 2 else op.problem
    mapping = random_os_mapping(problem, arch, case["seed"])
    assume(mapping is not None)
    inputs = random_operands(np.random.default_rng(case["seed"]), shapes, dtype)
    out, counters = run(lower_module(mod, mapping, arch, op), cfg, inputs, tmp_path)
    want = reference(*inputs)
    if dtype == "int8":
        np.testing.assert_array_equal(out, want)
    else:
        np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    if problem is op.problem:
        assert counters["macs"] == op.problem.macs
    assert counters["config_ex"] == 1 and counters["compute_preloaded"] >= 1


def test_cosa_os_schedules_run_exactly(tmp_path):
    """CoSA's own schedules for the OS architecture: the reduction chain at the registers."""
    arch = CFG.architecture()
    rng = np.random.default_rng(7)
    for mod, shapes, ref in (
            (matmul_module((64, 96), (96, 48)), [(64, 96), (96, 48)], lambda a, b: a @ b),
            (conv_module((1, 9, 9, 20), (3, 3, 20, 24), stride=(2, 2), pad=(1, 1, 1, 1)),
             [(1, 9, 9, 20), (3, 3, 20, 24)],
             lambda x, w: conv_ref(x, w, (2, 2), (1, 1, 1, 1)))):
        op = the_op(mod)
        problem = pad_channels(op.problem, DIM)
        mapping = schedule(problem, arch)
        plan = make_plan(problem, mapping, arch, CFG, sizes=op.problem.size)
        assert plan.dataflow == "OS" and all(lp.dim in plan.dims.reductions
                                             for lp in plan.reg_loops)
        inputs = random_operands(rng, shapes, "int8")
        out, counters = run(lower_module(mod, mapping, arch, op), CFG, inputs, tmp_path)
        np.testing.assert_array_equal(out, ref(*[x.astype(np.int64) for x in inputs]))
        assert counters["macs"] == op.problem.macs


@needs_spike
@settings(max_examples=3, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(case=cases)
def test_os_lowered_layers_are_bit_exact_on_spike(case):
    from spike_programs import lowered_layer_on_spike

    mod, _, _ = _layer(case, "int8")
    result, _ = lowered_layer_on_spike(mod, CFG, case["seed"])
    assert result.ok, result.message
    assert result.spike_vs_functional == [0] and result.spike_vs_reference == [True]
