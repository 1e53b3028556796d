"""GemminiConfig -> Architecture, and Gemmini's own tiling heuristics as valid Mappings."""

import math
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings, strategies as st

from tvm_cosa import InputError, Problem, assert_valid, preset
from tvm_cosa.target.gemmini.baseline import (
    ConvShape, baseline_mapping, tiled_conv_auto_tiles, tiled_conv_rows, tiled_matmul_auto_tiles)
from tvm_cosa.target.gemmini.config import GemminiConfig, config_for
from tvm_cosa.target.gemmini.dims import gemmini_dims


def test_default_config_is_the_gemmini_preset():
    arch, ref = GemminiConfig().architecture(), preset("gemmini")
    assert arch.name == "gemmini"
    assert arch.arithmetic == ref.arithmetic
    assert arch.levels == ref.levels  # capacities, keeps, bandwidths, spatial constraints
    assert [lv.entries for lv in arch.levels] == [1, 16384, 262144, None]
    assert [sorted(lv.keeps) for lv in arch.levels] == [
        ["Weights"], ["Outputs"], ["Inputs", "Weights"], ["Inputs", "Outputs", "Weights"]]
    assert arch.levels[-1].read_bandwidth == pytest.approx(5.75 / 2)


REFERENCE = Path(__file__).parent / "data" / "timeloop-reference"


def test_timeloop_form_is_the_reference_gemmini_architecture():
    """The files Timeloop ran for the reference cases: the same arch and bypass pattern."""
    case = REFERENCE / "gemmini__mm_256x512x512__mapper"
    if not case.is_dir():
        pytest.skip("reference data not present")
    cfg = GemminiConfig()
    assert cfg.timeloop_arch() == yaml.safe_load((case / "arch.yaml").read_text())

    def keeps(data):
        return {c["target"]: (set(c["keep"]), set(c["bypass"]))
                for c in data["mapspace"]["constraints"]}

    assert keeps(cfg.timeloop_mapspace()) == keeps(yaml.safe_load(
        (case / "mapspace.yaml").read_text()))


def test_capacities_follow_the_configuration():
    cfg = GemminiConfig(dim=8, scratchpad_kib=64, accumulator_kib=16)
    arch = cfg.architecture()
    assert (cfg.spad_rows, cfg.acc_rows) == (8192, 512)
    assert arch.arithmetic.instances == 64 and arch.arithmetic.mesh == (8, 8)
    assert arch.levels[arch.level_index("Scratchpad")].entries == 64 * 1024
    assert arch.levels[arch.level_index("Accumulator")].entries == 16 * 1024 // 4
    assert arch.fanout(arch.level_index("Accumulator")) == (8, 8)
    assert arch.name.startswith("gemmini-8x8")


def test_float32_words_are_four_bytes():
    cfg = GemminiConfig(dtype="float32")
    arch = cfg.architecture()
    spad = arch.levels[arch.level_index("Scratchpad")]
    assert (spad.word_bits, spad.entries, cfg.spad_rows) == (32, 65536, 4096)
    assert arch.levels[-1].read_bandwidth == pytest.approx(5.75 / 4 / 2)
    assert "typedef float elem_t;" in cfg.params_header()


def test_output_stationary_keeps_partial_sums_in_the_array():
    arch = GemminiConfig(dataflow="OS").architecture()
    assert arch.levels[0].keeps == frozenset({"Outputs"})


@settings(max_examples=30, deadline=None)
@given(dim=st.sampled_from([4, 8, 16, 32]), spad=st.sampled_from([32, 64, 256, 512]),
       acc=st.sampled_from([16, 64, 128]), dtype=st.sampled_from(["int8", "float32"]),
       dataflow=st.sampled_from(["WS", "OS"]), bw=st.sampled_from([2.0, 5.75, 16.0]))
def test_architecture_round_trips_to_the_config(dim, spad, acc, dtype, dataflow, bw):
    cfg = GemminiConfig(dim=dim, scratchpad_kib=spad, accumulator_kib=acc, dtype=dtype,
                        dataflow=dataflow, dram_bandwidth=bw)
    assert config_for(cfg.architecture()) == cfg


@pytest.mark.parametrize("field, value", [("dim", 0), ("dataflow", "RS"), ("dtype", "int4"),
                                          ("scratchpad_kib", -1), ("dram_bandwidth", 0)])
def test_bad_config_names_the_field(field, value):
    with pytest.raises(InputError, match=field):
        GemminiConfig(**{field: value})


def test_rows_that_do_not_divide_are_rejected():
    with pytest.raises(InputError, match="whole number"):
        GemminiConfig(dim=3, scratchpad_kib=1)


# ---- baseline heuristics ------------------------------------------------------------------
def test_tiled_matmul_auto_matches_a_hand_computed_case():
    # blocks I=16 J=32 K=32; start I=J=isqrt(512/16)=5, K=min(32, 256/5); grow J to 6 (acc 480)
    assert tiled_matmul_auto_tiles(256, 512, 512, GemminiConfig()) == (5, 6, 32)


@settings(max_examples=40, deadline=None)
@given(i=st.integers(1, 3000), j=st.integers(1, 3000), k=st.integers(1, 3000),
       dim=st.sampled_from([8, 16]))
def test_tiled_matmul_auto_fills_half_the_memories_greedily(i, j, k, dim):
    cfg = GemminiConfig(dim=dim)
    ti, tj, tk = tiled_matmul_auto_tiles(i, j, k, cfg)
    spad = lambda a, b, c: (a * c + c * b) * dim  # noqa: E731
    assert spad(ti, tj, tk) <= cfg.spad_rows // 2 and ti * tj * dim <= cfg.acc_rows // 2
    blocks = [math.ceil(x / dim) for x in (i, j, k)]
    assert ti <= blocks[0] and tj <= blocks[1] and tk <= blocks[2]
    # no single block more fits (that is where the greedy loop stops)
    assert tj == blocks[1] or spad(ti, tj + 1, tk) > cfg.spad_rows // 2 or \
        ti * (tj + 1) * dim > cfg.acc_rows // 2
    assert tk == blocks[2] or spad(ti, tj, tk + 1) > cfg.spad_rows // 2


conv_shapes = st.builds(
    ConvShape, batch=st.integers(1, 2), out_rows=st.integers(1, 60), out_cols=st.integers(1, 60),
    out_channels=st.integers(1, 600), kernel_rows=st.sampled_from([1, 3, 7]),
    kernel_cols=st.sampled_from([1, 3, 7]), in_channels=st.integers(1, 600),
    stride=st.sampled_from([(1, 1), (2, 2)]))


@settings(max_examples=40, deadline=None)
@given(shape=conv_shapes)
def test_tiled_conv_auto_fits_and_cannot_grow(shape):
    cfg = GemminiConfig()
    args = tiled_conv_auto_tiles(shape, cfg)
    limits = (shape.batch, shape.out_rows, shape.out_cols, shape.out_channels,
              shape.kernel_rows, shape.kernel_cols, shape.in_channels)

    def fits(a):
        spad, acc = tiled_conv_rows(a, shape, cfg.dim)
        return spad <= cfg.spad_rows // 2 and acc <= cfg.acc_rows // 2

    assert fits(args) and all(1 <= a <= m for a, m in zip(args, limits))
    for i in range(7):
        grown = list(args)
        grown[i] += 1
        assert grown[i] > limits[i] or not fits(grown)


RESNET50_LIKE = [  # (C, K, P=Q, R=S, stride) of ResNet-50 layer kinds, and its FC as a matmul
    (3, 64, 112, 7, 2), (64, 64, 56, 1, 1), (64, 64, 56, 3, 1), (256, 128, 28, 1, 2),
    (128, 128, 28, 3, 1), (512, 256, 14, 1, 1), (256, 256, 14, 3, 1), (512, 512, 7, 3, 1),
    (1024, 2048, 7, 1, 1), (2048, 512, 7, 1, 1)]


@pytest.mark.parametrize("c, k, pq, rs, stride", RESNET50_LIKE)
def test_baseline_mappings_are_valid_for_resnet50_layers(c, k, pq, rs, stride):
    arch = GemminiConfig().architecture()
    problem = Problem.conv2d(C=c, K=k, P=pq, Q=pq, R=rs, S=rs, stride=stride)
    mapping = baseline_mapping(problem, arch)
    assert_valid(mapping, problem, arch)
    acc = mapping.levels[arch.level_index("Accumulator")]
    assert acc.spatial_x.get("C", 1) == min(c, 16) and acc.spatial_y.get("K", 1) == min(k, 16)
    assert mapping.info["solver"] == "gemmini-tiled_conv_auto"


@settings(max_examples=40, deadline=None)
@given(m=st.integers(1, 512), n=st.integers(1, 1200), k=st.integers(1, 2100),
       batch=st.integers(1, 3))
def test_baseline_matmul_mappings_are_valid(m, n, k, batch):
    arch = GemminiConfig().architecture()
    problem = Problem.matmul(M=m, N=n, K=k, batch=batch)
    mapping = baseline_mapping(problem, arch)
    assert_valid(mapping, problem, arch)


@settings(max_examples=40, deadline=None)
@given(shape=conv_shapes, groups=st.sampled_from([1, 1, 2]))
def test_baseline_conv_mappings_are_valid(shape, groups):
    arch = GemminiConfig(dim=8, scratchpad_kib=64, accumulator_kib=16).architecture()
    problem = Problem.conv2d(N=shape.batch, C=shape.in_channels, K=shape.out_channels,
                             P=shape.out_cols, Q=shape.out_rows, R=shape.kernel_cols,
                             S=shape.kernel_rows, stride=shape.stride, groups=groups)
    assert_valid(baseline_mapping(problem, arch), problem, arch)


def test_roles_of_dimensions_come_from_the_tensors():
    d = gemmini_dims(Problem.conv2d(C=8, K=4, P=5, Q=6, R=3, S=2, stride=(2, 1)))
    assert (d.reduction, d.output_channel, d.window) == ("C", "K", ("R", "S"))
    assert set(d.pixels) == {"P", "Q", "N"}
    assert d.windows == (("Q", "S", 2, 1), ("P", "R", 1, 1))  # height axis first, then width
    m = gemmini_dims(Problem.matmul(M=3, N=4, K=5, batch=2))
    assert (m.reduction, m.output_channel, m.pixels, m.shared) == ("K", "N", ("M",), ("B",))
