"""lower_generic on random layers and random valid mappings: the scheduled PrimFunc computes the
same numbers as TVM's default one, and its loop nest and cache stages are the mapping's."""

import random

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

tvm = pytest.importorskip("tvm")
from tvm import relax  # noqa: E402

import tvm_cosa  # noqa: E402
from pass_helpers import (conv_module, matmul_module, outermost_mapping,  # noqa: E402
                          random_mapping, single_op_module)
from tvm_cosa.mapping import LevelMapping, Mapping  # noqa: E402
from tvm_cosa.relax.extract import extract  # noqa: E402
from tvm_cosa.relax.lowering import (LoweringError, lower_generic, scope_name,  # noqa: E402
                                     stage_levels)

ARCHS = {name: tvm_cosa.preset(name) for name in ("gemmini", "simba")}
FAST = settings(max_examples=12, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])


def legalized_primfunc(mod):
    """(the operator's OpInfo, its default PrimFunc)."""
    (op,) = extract(mod)
    assert op.supported, op.reason
    legal = relax.transform.LegalizeOps()(mod)
    funcs = [f for _, f in legal.functions.items() if isinstance(f, tvm.tirx.PrimFunc)]
    assert len(funcs) == 1
    return op, funcs[0]


def run_primfunc(func, args, out_shape, out_dtype):
    lib = tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}),
                      target="llvm")
    tensors = [tvm.runtime.tensor(a) for a in args]
    out = tvm.runtime.tensor(np.zeros(out_shape, out_dtype))
    lib(*tensors, out)
    return out.numpy()


def random_args(func, rng):
    args = []
    for buf in list(func.params)[:-1]:  # TVM 0.27: the params are the buffers
        shape = [int(s) for s in buf.shape]
        if "int" in str(buf.dtype):
            args.append(rng.integers(-8, 8, shape).astype(str(buf.dtype)))
        else:
            args.append(rng.standard_normal(shape).astype(str(buf.dtype)))
    out = func.params[-1]
    return args, [int(s) for s in out.shape], str(out.dtype)


def assert_same_numbers(default, scheduled, seed=0):
    args, shape, dtype = random_args(default, np.random.default_rng(seed))
    want = run_primfunc(default, args, shape, dtype)
    got = run_primfunc(scheduled, args, shape, dtype)
    if dtype.startswith("int"):
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def annotated_nest(func):
    """[(level, spatial axis or None, extent)] of the compute block's loops, outermost first."""
    sch = tvm.s_tir.Schedule(func)
    (block,) = [b for b in sch.get_child_blocks(sch.get_sblock("root"))
                if any(int(iv.iter_type) == 2 for iv in sch.get(b).iter_vars)]
    nest = []
    for loop in sch.get_loops(block):
        ann = sch.get(loop).annotations
        if "cosa.level" in ann:
            spatial = ann.get("cosa.spatial")
            nest.append((str(ann["cosa.level"]),
                         None if spatial is None else str(spatial).rsplit(".", 1)[1],
                         int(sch.get(loop).extent)))
    return nest


def loop_annotations(func):
    return sorted(annotated_nest(func), key=str)


def buffer_scopes(func):
    sch = tvm.s_tir.Schedule(func)
    return [str(b.scope()) for b in sch.get(sch.get_sblock("root")).alloc_buffers]


def expected_loops(mapping, arch):
    out = []
    for i, lv in enumerate(mapping.levels):
        name = arch.levels[i].name
        out += [(name, None, f) for f in lv.temporal.values() if f > 1]
        out += [(name, "X", f) for f in lv.spatial_x.values() if f > 1]
        out += [(name, "Y", f) for f in lv.spatial_y.values() if f > 1]
    return sorted(out, key=str)


def expected_scopes(problem, mapping, arch):
    return sorted(scope_name(arch.levels[i].name) for t in problem.tensor_names
                  for i in stage_levels(mapping, arch, t))


def check_lowering(mod, arch, seed):
    op, default = legalized_primfunc(mod)
    mapping = random_mapping(op.problem, arch, random.Random(seed))
    scheduled = lower_generic(default, op, mapping, arch)
    assert loop_annotations(scheduled) == expected_loops(mapping, arch)
    scopes = [s for s in buffer_scopes(scheduled) if s != "global"]
    assert sorted(scopes) == expected_scopes(op.problem, mapping, arch)
    assert scheduled.attrs["tirx.is_scheduled"]
    assert_same_numbers(default, scheduled, seed)


@st.composite
def conv_layers(draw):
    groups_kind = draw(st.sampled_from(["dense", "grouped", "depthwise"]))
    c = draw(st.sampled_from([1, 2, 3, 4, 6, 8]))
    if groups_kind == "depthwise":
        groups, k = c, c * draw(st.sampled_from([1, 2]))
    elif groups_kind == "grouped" and c % 2 == 0:
        groups, k = 2, 2 * draw(st.integers(1, 3))
    else:
        groups, k = 1, draw(st.integers(1, 8))
    kernel = draw(st.sampled_from([1, 2, 3]))
    dilation = draw(st.sampled_from([1, 2]))
    pad = draw(st.integers(0, 2))
    size = draw(st.integers(dilation * (kernel - 1) + 1 - 2 * pad if pad < 2 else 1, 9))
    return dict(n=draw(st.sampled_from([1, 2])), c=c, k=k, h=max(size, 1),
                w=max(size + draw(st.integers(0, 2)), 1), kernel=kernel,
                stride=draw(st.sampled_from([1, 2])), pad=pad, dilation=dilation, groups=groups,
                layout=draw(st.sampled_from(["NCHW", "NHWC"])),
                dtype=draw(st.sampled_from(["float32", "int8"])))


def _conv_fits(p):
    span = p["dilation"] * (p["kernel"] - 1) + 1
    return min(p["h"], p["w"]) + 2 * p["pad"] >= span


@FAST
@given(layer=conv_layers().filter(_conv_fits), arch=st.sampled_from(sorted(ARCHS)),
       seed=st.integers(0, 10_000))
def test_conv2d_lowering_matches_default(layer, arch, seed):
    check_lowering(conv_module(**layer), ARCHS[arch], seed)


@st.composite
def matmul_layers(draw):
    """2-D, batched 3-D, or 3-D with a unit batch (what CoSAPass legalizes; it reshapes other
    ranks to these first)."""
    m, k, n = (draw(st.integers(1, 12)) for _ in range(3))
    form = draw(st.sampled_from(["2d", "batched", "unit_batch"]))
    batch = draw(st.integers(2, 3))
    a, b = {"2d": ((m, k), (k, n)), "batched": ((batch, m, k), (batch, k, n)),
            "unit_batch": ((1, m, k), (k, n))}[form]
    return a, b, draw(st.sampled_from(["float32", "int8"]))


@FAST
@given(layer=matmul_layers(), arch=st.sampled_from(sorted(ARCHS)), seed=st.integers(0, 10_000))
def test_matmul_lowering_matches_default(layer, arch, seed):
    check_lowering(matmul_module(*layer), ARCHS[arch], seed)


def test_matmul_with_two_axes_for_one_dimension_asks_for_a_reshape():
    op, default = legalized_primfunc(matmul_module((2, 3, 5), (5, 4), "float32"))
    assert op.problem.size == {"M": 6, "N": 4, "K": 5}
    mapping = outermost_mapping(op.problem, ARCHS["simba"])
    with pytest.raises(LoweringError, match=r"reshape it to \(6, 4\)"):
        lower_generic(default, op, mapping, ARCHS["simba"])


def test_nest_order_follows_each_levels_permutation():
    arch = ARCHS["gemmini"]
    mod = single_op_module(lambda x, y: relax.op.matmul(x, y), ((8, 12), "float32"),
                           ((12, 6), "float32"))
    op, default = legalized_primfunc(mod)
    levels = [LevelMapping() for _ in arch.levels]
    top = arch.num_levels - 1
    levels[top] = LevelMapping(temporal={"M": 4, "N": 3, "K": 3}, order=("N", "K", "M"))
    levels[top - 1] = LevelMapping(temporal={"M": 2, "N": 2, "K": 4}, order=("M", "K", "N"))
    mapping = Mapping(levels)
    tvm_cosa.assert_valid(mapping, op.problem, arch)
    scheduled = lower_generic(default, op, mapping, arch)
    nest = [(level, extent) for level, _, extent in annotated_nest(scheduled)]
    outer, inner = arch.levels[top].name, arch.levels[top - 1].name
    # order is innermost first: DRAM runs M (4), K (3), N (3) from the outside in
    assert nest == [(outer, 4), (outer, 3), (outer, 3), (inner, 2), (inner, 4), (inner, 2)]
    assert_same_numbers(default, scheduled)


def test_spatial_loops_are_marked_as_the_pe_array():
    arch = ARCHS["gemmini"]
    mod = single_op_module(lambda x, y: relax.op.matmul(x, y), ((4, 32), "float32"),
                           ((32, 16), "float32"))
    op, default = legalized_primfunc(mod)
    mapping = outermost_mapping(op.problem, arch)
    acc = arch.level_index("Accumulator")
    mapping.levels[-1].temporal = {"M": 4, "K": 2}
    mapping.levels[acc] = LevelMapping(spatial_x={"K": 16}, spatial_y={"N": 16})
    tvm_cosa.assert_valid(mapping, op.problem, arch)
    scheduled = lower_generic(default, op, mapping, arch)
    spatial = [a for a in loop_annotations(scheduled) if a[1]]
    assert spatial == [("Accumulator", "X", 16), ("Accumulator", "Y", 16)]
    assert_same_numbers(default, scheduled)


def test_a_mapping_for_another_shape_is_a_lowering_error():
    arch = ARCHS["simba"]
    mod = single_op_module(lambda x, y: relax.op.matmul(x, y), ((4, 6), "float32"),
                           ((6, 5), "float32"))
    op, default = legalized_primfunc(mod)
    wrong = outermost_mapping(tvm_cosa.Problem.matmul(M=4, N=5, K=3), arch)
    with pytest.raises(LoweringError, match="K"):
        lower_generic(default, op, wrong, arch)


def test_uneven_mapping_moves_the_stage_inside_the_levels_loops():
    """tile_levels[(Inputs, i)] = j: the Inputs tile kept at level i spans only levels 0..j, so
    its copy goes inside level i's own loops (CoSA's Z / ZigZag's uneven mapping)."""
    arch = ARCHS["simba"]
    op, default = legalized_primfunc(matmul_module((8, 6), (6, 4), "float32"))
    gb, ib = arch.level_index("GlobalBuffer"), arch.level_index("InputBuffer")
    levels = [LevelMapping() for _ in arch.levels]
    levels[gb] = LevelMapping(temporal={"M": 8, "K": 6, "N": 4}, order=("N", "K", "M"))
    even = Mapping(levels)
    uneven = Mapping([LevelMapping(**vars(lv)) for lv in levels],
                     tile_levels={("Inputs", gb): ib})
    for mapping in (even, uneven):
        tvm_cosa.assert_valid(mapping, op.problem, arch)

    def inputs_stage_depth(mapping):
        scheduled = lower_generic(default, op, mapping, arch)
        assert_same_numbers(default, scheduled)
        sch = tvm.s_tir.Schedule(scheduled)
        (stage,) = [b for b in sch.get_child_blocks(sch.get_sblock("root"))
                    if sch.get(b).name_hint.endswith("global.globalbuffer")
                    and sch.get(b).name_hint.startswith("p0")]
        return [str(sch.get(lp).annotations.get("cosa.level", "")) for lp in
                sch.get_loops(stage)]

    assert "GlobalBuffer" not in inputs_stage_depth(even)
    assert inputs_stage_depth(uneven).count("GlobalBuffer") == 3  # inside M, K and N


def test_scheduled_functions_keep_their_own_global_symbol():
    """A grouped convolution is rebuilt with te.create_prim_func, which names it "main": the
    scheduled function must come back with the original's symbol (none for a legalized one), or
    a module with two of them fails to build ("duplicate global symbol: main")."""
    arch = ARCHS["simba"]
    for groups in (1, 4):
        mod = conv_module(n=1, c=8, k=8, h=6, w=6, kernel=3, stride=1, pad=1, dilation=1,
                          groups=groups, layout="NCHW", dtype="float32")
        op, func = legalized_primfunc(mod)
        mapping = outermost_mapping(op.problem, arch)
        assert "global_symbol" not in lower_generic(func, op, mapping, arch).attrs
        named = func.with_attr("global_symbol", "my_conv")
        assert lower_generic(named, op, mapping, arch).attrs["global_symbol"] == "my_conv"


def test_a_module_with_several_scheduled_grouped_convolutions_builds_for_c(tmp_path):
    from tvm_cosa.models import tiny_cnn
    from tvm_cosa.relax import CoSAPass
    from tvm_cosa.relax.frontend import import_onnx

    cosa = CoSAPass("simba", cache=tmp_path, jobs=1)
    out = cosa(import_onnx(tiny_cnn()))  # two grouped convolutions (groups 4 and 16)
    assert [r.lowering for r in cosa.report.records] == ["generic"] * 6
    assert tvm.compile(out, target="c") is not None
