"""Architecture loaders: the shared Simba / Gemmini files against Timeloop's own parse, the
hierarchical and v0.4 Timeloop formats, the short format (property tests), and every bad input."""

import json
import math
import tempfile
import textwrap
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from tvm_cosa import Architecture, Arithmetic, InputError, MemoryLevel, load_architecture, preset
from tvm_cosa.architecture_yaml import apply_energy_table, load_preset, read_yaml, to_short_dict
from tvm_cosa.errors import InputWarning
from tvm_cosa.problem import TENSOR_NAMES

DATA = Path(__file__).parent / "data"
ARCH = DATA / "arch"
EXAMPLES = Path(__file__).parent.parent / "examples" / "arch"
REFERENCE = DATA / "timeloop-reference"
SIMBA_KEEPS = {"Registers": {"Weights"}, "AccumulationBuffer": {"Outputs"},
               "WeightBuffer": {"Weights"}, "InputBuffer": {"Inputs"},
               "GlobalBuffer": {"Inputs", "Outputs"}, "DRAM": set(TENSOR_NAMES)}


def assert_matches_timeloop_specs(arch, specs):
    """Every number Timeloop printed for the levels, read back from our Architecture."""
    assert arch.num_macs == specs["arithmetic"]["instances"]
    assert arch.arithmetic.word_bits == specs["arithmetic"]["word_bits"]
    assert [lv.name for lv in arch.levels] == [s["name"] for s in specs["levels"]]
    for lv, s in zip(arch.levels, specs["levels"]):
        assert lv.entries == s["size"], lv.name
        assert (lv.instances, lv.word_bits, lv.block_size) == \
            (s["instances"], s["word_bits"], s["block_size"]), lv.name
        assert lv.technology == s["technology"]
        for ours, theirs in ((lv.read_bandwidth, s["read_bandwidth"]),
                             (lv.write_bandwidth, s["write_bandwidth"]),
                             (lv.shared_bandwidth, s["shared_bandwidth"])):
            assert (ours is None) == (theirs is None), lv.name
            if ours is not None:
                assert round(ours, 2) == pytest.approx(theirs), lv.name


# ---- shared data: Simba and Gemmini in CoSA's format -------------------------------------
def test_simba_file_reads_as_timeloop_parsed_it():
    specs = json.loads((ARCH / "timeloop_specs.json").read_text())
    arch = load_architecture(ARCH / "simba.yaml", ARCH / "simba-mapspace.yaml")
    assert arch.name == "simba"
    assert_matches_timeloop_specs(arch, specs["simba"])
    assert {lv.name: set(lv.keeps) for lv in arch.levels} == SIMBA_KEEPS
    assert [arch.fanout(i) for i in range(arch.num_levels)] == [
        (1, 1), (8, 1), (1, 1), (8, 1), (16, 1), (1, 1)]
    # The raw file is kept, unchanged, to be handed to Timeloop.
    assert arch.timeloop_spec == yaml.safe_load((ARCH / "simba.yaml").read_text())
    # Same hardware as the preset; the preset adds only its energy table.
    from dataclasses import replace
    bare = preset("simba")
    bare = replace(bare, arithmetic=replace(bare.arithmetic, energy_pJ=None), levels=tuple(
        replace(lv, read_energy_pJ=None, write_energy_pJ=None) for lv in bare.levels))
    assert arch.key() == bare.key()
    assert all(lv.read_energy_pJ is not None for lv in preset("simba").levels)


def test_without_a_mapspace_every_level_keeps_everything():
    arch = load_architecture(ARCH / "simba.yaml")
    assert all(lv.keeps == frozenset(TENSOR_NAMES) for lv in arch.levels)
    assert arch.bypass_matrix() == [[1] * 6] * 3


def test_gemmini_preset_reads_as_timeloop_parsed_it():
    specs = json.loads((ARCH / "timeloop_specs.json").read_text())
    arch = preset("gemmini")
    assert_matches_timeloop_specs(arch, specs["gemmini"])
    assert arch.fanout(arch.level_index("Accumulator")) == (16, 16)
    acc = arch.levels[arch.level_index("Accumulator")]
    assert (acc.spatial_dims_x, acc.spatial_dims_y) == (("reduction",), ("output_channel",))


# Cases where Timeloop ran (the invalid ones print no specs; they reuse the same arch files).
REFERENCE_CASES = sorted(p.parent for p in REFERENCE.glob("*/arch.yaml")
                         if json.loads((p.parent / "summary.json").read_text()).get("levels"))


@pytest.mark.parametrize("case", REFERENCE_CASES, ids=lambda p: p.name)
def test_every_timeloop_reference_arch_reads_as_timeloop_parsed_it(case):
    summary = json.loads((case / "summary.json").read_text())
    mapspace = case / "mapspace.yaml"
    arch = load_architecture(case / "arch.yaml", mapspace if mapspace.exists() else None)
    specs = {"arithmetic": summary["arithmetic"],
             "levels": [{"name": lv["name"], **lv["specs"]} for lv in summary["levels"]]}
    assert_matches_timeloop_specs(arch, specs)
    for lv in summary["levels"]:  # Timeloop reports stats only for the data spaces kept
        assert set(lv["dataspaces"]) <= arch.levels[arch.level_index(lv["name"])].keeps


# ---- Timeloop's hierarchical `architecture: {subtree}` format ------------------------------
def test_hierarchical_eyeriss_like():
    # the subtree's word-bits reach no component in timeloop-model: a warning says so
    with pytest.warns(InputWarning, match=r"subtree eyeriss: .*\['word-bits'\] there set nothing"):
        arch = load_architecture(ARCH / "eyeriss_like.tree.yaml")
    assert arch.level_names == ("psum_spad", "weights_spad", "ifmap_spad", "DummyBuffer",
                                "shared_glb", "DRAM")  # innermost first; the NoC is not a level
    assert [lv.entries for lv in arch.levels] == [16, 192, 12, 16, 16384 * 4, None]
    assert [lv.instances for lv in arch.levels] == [168, 168, 168, 14, 1, 1]
    assert all(lv.word_bits == 16 for lv in arch.levels)  # Timeloop's default
    assert [arch.fanout(i) for i in range(arch.num_levels)] == [
        (1, 1), (1, 1), (1, 1), (1, 12), (14, 1), (1, 1)]
    assert (arch.arithmetic.name, arch.num_macs, arch.arithmetic.mesh) == ("mac", 168, (14, 12))
    glb = arch.levels[arch.level_index("shared_glb")]
    assert (glb.block_size, glb.read_bandwidth, glb.num_banks) == (4, 16.0, 32)
    assert [lv.technology for lv in arch.levels] == ["regfile", "SRAM", "regfile", "regfile",
                                                     "SRAM", "DRAM"]
    assert arch.timeloop_spec == yaml.safe_load((ARCH / "eyeriss_like.tree.yaml").read_text())


def test_hierarchical_nested_ranges_multiply():
    arch = load_architecture(ARCH / "two_chips.tree.yaml")
    assert arch.level_names == ("RF", "GLB", "DRAM")
    assert [lv.instances for lv in arch.levels] == [32, 2, 1]  # 2 chips x 16 PEs
    assert [lv.entries for lv in arch.levels] == [64, 4096 * 8, None]
    assert [arch.fanout(i) for i in range(3)] == [(1, 1), (4, 4), (2, 1)]
    assert arch.num_macs == 32


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 6), st.integers(1, 4096)), min_size=1, max_size=4))
def test_random_subtree_chains_multiply_their_ranges(chain):
    """Each subtree `Ln[0..c-1]` holds one buffer; its instances are the product of the ranges
    on the path, and the fanout above it is its own range."""
    def subtree(depth):
        count, entries = chain[depth]
        node = {"name": f"T{depth}[0..{count - 1}]",
                "local": [{"name": f"B{depth}", "class": "SRAM",
                           "attributes": {"entries": entries, "word-bits": 8}}]}
        if depth + 1 < len(chain):
            node["subtree"] = [subtree(depth + 1)]
        else:
            node["local"].append({"name": "mac", "class": "intmac", "attributes": {}})
        return node

    data = {"architecture": {"version": 0.3, "subtree": [{
        "name": "system", "local": [{"name": "DRAM", "class": "DRAM", "attributes": {}}],
        "subtree": [subtree(0)]}]}}
    arch = load_architecture(data, name="chain")
    counts = [c for c, _ in chain]
    assert arch.level_names == tuple(f"B{d}" for d in reversed(range(len(chain)))) + ("DRAM",)
    expected_instances = [math.prod(counts[:d + 1]) for d in range(len(chain))]
    assert [lv.instances for lv in arch.levels] == expected_instances[::-1] + [1]
    assert [lv.entries for lv in arch.levels[:-1]] == [e for _, e in reversed(chain)]
    fanouts = [arch.fanout_total(i) for i in range(arch.num_levels)]
    assert fanouts == [1] + counts[:0:-1] + [counts[0]]
    assert arch.num_macs == math.prod(counts)


def _structure(arch):
    """What schedules and costs depend on, independent of the file format's spellings."""
    return (arch.num_macs, arch.arithmetic.mesh, arch.arithmetic.word_bits,
            [(lv.name, lv.entries, lv.instances, lv.mesh, lv.word_bits, lv.block_size,
              lv.keeps, lv.read_bandwidth, lv.write_bandwidth, lv.is_dram,
              lv.network_word_bits, lv.num_banks)
             for lv in arch.levels],
            [arch.fanout(i) for i in range(arch.num_levels)])


def test_gemmini_in_all_four_formats_is_the_same_hardware():
    reference = _structure(preset("gemmini"))
    tree = load_architecture(ARCH / "gemmini_like.tree.yaml", preset_mapspace("gemmini"))
    v04 = load_architecture(ARCH / "gemmini_like.v04.yaml")  # bypass from its constraints
    short = load_architecture(ARCH / "gemmini_like.short.yaml")
    assert _structure(tree) == reference
    assert _structure(v04) == reference
    assert _structure(short) == reference
    assert short.levels[1].spatial_dims_x == ("reduction",)
    assert v04.timeloop_spec is None and short.timeloop_spec is None


def preset_mapspace(name):
    return Path(load_preset.__code__.co_filename).parent / "presets" / f"{name}.mapspace.yaml"


def test_v04_nodes_parallel_and_nothing():
    arch = load_architecture(ARCH / "simba_like.v04.yaml")
    # !Parallel branches become consecutive levels, the first listed outermost; !Nothing is
    # skipped; spatial meshes multiply down the list.
    assert arch.level_names == ("PEWeightRegs", "PEAccuBuffer", "PEWeightBuffer",
                                "PEInputBuffer", "GlobalBuffer", "DRAM")
    assert [lv.instances for lv in arch.levels] == [256, 64, 64, 16, 1, 1]
    assert [lv.mesh for lv in arch.levels] == [(16, 16), (16, 4), (16, 4), (16, 1), (1, 1),
                                               (1, 1)]
    assert [arch.fanout(i) for i in range(arch.num_levels)] == [
        (1, 1), (1, 4), (1, 1), (1, 4), (16, 1), (1, 1)]
    # depth x (width / datawidth): 2048 x 32, 8192 x 8, 4096 x 8, 128 x 1, 1 x 512 / (8 x 64)
    assert [lv.entries for lv in arch.levels] == [1, 128, 32768, 65536, 65536, None]
    assert [lv.word_bits for lv in arch.levels] == [8, 24, 8, 8, 8, 8]
    assert arch.levels[0].cluster_size == 64 and arch.levels[-1].block_size == 8
    assert {lv.name: set(lv.keeps) for lv in arch.levels} == {
        "PEWeightRegs": {"Weights"}, "PEAccuBuffer": {"Outputs"}, "PEWeightBuffer": {"Weights"},
        "PEInputBuffer": {"Inputs"}, "GlobalBuffer": {"Inputs", "Outputs"},
        "DRAM": set(TENSOR_NAMES)}


def test_a_mapspace_overrides_the_bypass_of_any_format(tmp_path):
    ms = tmp_path / "ms.yaml"
    ms.write_text("mapspace:\n  constraints:\n"
                  "  - {target: GLB, type: bypass, keep: [Weights], bypass: [Inputs, Outputs]}\n"
                  "  - {target: RF, type: temporal, factors: K1}\n")
    arch = load_architecture(ARCH / "two_chips.tree.yaml", ms)
    assert arch.levels[arch.level_index("GLB")].keeps == {"Weights"}
    assert arch.levels[arch.level_index("RF")].keeps == frozenset(TENSOR_NAMES)
    assert arch.timeloop_spec is not None  # the bypass lives in the mapspace, not the arch file


@pytest.mark.parametrize("layout", [
    "mapspace:\n  constraints:\n  - {target: GLB, type: datatype, keep: [Weights]}\n",
    "mapspace_constraints:\n  - {target: GLB, type: bypass, bypass: [Inputs, Outputs]}\n",
    "architecture_constraints:\n  targets:\n  - {target: GLB, type: bypass, keep: [Weights], "
    "bypass: [Inputs, Outputs]}\n",
])
def test_mapspace_layouts_of_the_timeloop_versions(tmp_path, layout):
    ms = tmp_path / "constraints.yaml"
    ms.write_text(layout)
    arch = load_architecture(ARCH / "two_chips.tree.yaml", ms)
    assert arch.levels[arch.level_index("GLB")].keeps == {"Weights"}


# ---- the short format ------------------------------------------------------------------------
def test_short_format_example_files():
    arch = load_architecture(EXAMPLES / "my_accel.yaml")
    assert arch.name == "my-accel" and arch.level_names == ("RF", "Acc", "Spad", "DRAM")
    assert arch.fanout(1) == (16, 16) and arch.arithmetic.energy_pJ == 0.25
    spad = arch.levels[2]
    assert spad.capacity_for("Inputs") == 131072 and arch.part_ratios()[2] == [0.5, 0.5, 0.0]
    assert (spad.read_energy_pJ, spad.write_energy_pJ) == (110.0, 110.0)
    dram = arch.levels[-1]
    assert dram.entries is None and dram.is_dram and dram.read_bandwidth == 2.875
    small = load_architecture(EXAMPLES / "small_os.yaml")
    assert small.levels[0].word_bits == 24 and small.levels[1].word_bits == 8  # default: MACs'
    assert small.fanout(1) == (8, 8)


def test_short_format_defaults():
    arch = load_architecture({"macs": {"instances": 4, "word_bits": 16},
                              "levels": [{"name": "L1", "entries": 8, "instances": 4},
                                         {"name": "Main"}]}, name="tiny")
    l1, main = arch.levels
    assert (l1.word_bits, l1.keeps, l1.shares, l1.mesh, l1.technology) == \
        (16, frozenset(TENSOR_NAMES), (), (4, 1), "SRAM")
    assert (main.entries, main.technology, main.instances, main.read_bandwidth) == \
        (None, "DRAM", 1, None)
    assert arch.name == "tiny" and arch.fanout(1) == (4, 1)


@pytest.mark.parametrize("name", ["simba", "gemmini"])
def test_presets_round_trip_through_the_short_format(name, tmp_path):
    arch = preset(name)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(to_short_dict(arch), sort_keys=False))
    again = load_architecture(path)
    assert again == arch  # name, MACs and every level field


ROLES = ("reduction", "output_channel", "window", "pixel")


@st.composite
def short_architectures(draw):
    """(the short-format dict, the same Architecture built directly in Python)."""
    n = draw(st.integers(1, 5))
    fanouts = [(draw(st.sampled_from([1, 2, 4])), draw(st.sampled_from([1, 1, 3])))
               for _ in range(n)]
    meshes = [(1, 1)] * n  # outermost first, then each level's mesh = parent's x its fanout
    for i in range(n - 2, -1, -1):
        px, py = meshes[i + 1]
        fx, fy = fanouts[i + 1]
        meshes[i] = (px * fx, py * fy)
    mac_mesh = (meshes[0][0] * fanouts[0][0], meshes[0][1] * fanouts[0][1])
    mac_bits = draw(st.sampled_from([8, 16]))
    macs = {"instances": mac_mesh[0] * mac_mesh[1], "mesh_x": mac_mesh[0], "word_bits": mac_bits}
    arithmetic = Arithmetic(instances=macs["instances"], word_bits=mac_bits, mesh_x=mac_mesh[0])
    specs, levels = [], []
    for i in range(n):
        spec, kw = {"name": f"L{i}"}, {"name": f"L{i}"}
        x, y = meshes[i]
        kw["instances"] = spec["instances"] = x * y
        kw["mesh_x"] = spec["mesh_x"] = x
        outermost = i == n - 1
        entries = None if outermost and draw(st.booleans()) else draw(st.integers(0, 10 ** 6))
        if entries is not None:
            spec["entries"] = entries
        kw["entries"] = entries
        kw["technology"] = "DRAM" if entries is None else "SRAM"
        kw["word_bits"] = mac_bits
        if draw(st.booleans()):
            kw["word_bits"] = spec["word_bits"] = draw(st.sampled_from([8, 16, 24, 32]))
        keeps = draw(st.sets(st.sampled_from(TENSOR_NAMES), min_size=1))
        kw["keeps"] = frozenset(keeps)
        if draw(st.booleans()):
            spec["keeps"] = sorted(keeps)
        else:
            spec["bypass"] = sorted(set(TENSOR_NAMES) - keeps)
        shares = draw(st.dictionaries(st.sampled_from(sorted(keeps)),
                                      st.sampled_from([0.125, 0.25, 0.5, 1.0])))
        if shares:
            spec["shares"] = shares
        kw["shares"] = tuple(sorted(shares.items()))
        for key in ("block_size", "cluster_size", "num_ports", "num_banks"):
            if draw(st.booleans()):
                kw[key] = spec[key] = draw(st.integers(1, 64))
        for key in ("read_bandwidth", "write_bandwidth", "shared_bandwidth"):
            if draw(st.booleans()):
                kw[key] = spec[key] = draw(st.sampled_from([0.5, 2.875, 8.0, 64.0]))
        for key in ("read_energy_pJ", "write_energy_pJ"):
            if draw(st.booleans()):
                kw[key] = spec[key] = draw(st.floats(0, 1e4, allow_nan=False))
        for axis in ("x", "y"):
            if draw(st.booleans()):
                dims = tuple(draw(st.lists(st.sampled_from(ROLES), min_size=1, max_size=2,
                                           unique=True)))
                spec[f"spatial_{axis}"] = list(dims)
                kw[f"spatial_dims_{axis}"] = dims
        specs.append(spec)
        levels.append(MemoryLevel(**kw))
    data = {"name": "random", "macs": macs, "levels": specs}
    return data, Architecture("random", arithmetic, tuple(levels))


@settings(max_examples=60, deadline=None)
@given(short_architectures())
def test_random_short_format_files_load_into_the_python_architecture(case):
    data, expected = case
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "random.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        arch = load_architecture(path)
    assert arch == expected
    assert [arch.fanout(i) for i in range(arch.num_levels)] == \
        [expected.fanout(i) for i in range(expected.num_levels)]
    # ...and the writer gives back a file that loads into the same architecture.
    assert load_architecture(to_short_dict(arch)) == arch


# ---- energy tables -------------------------------------------------------------------------
def test_energy_table_sets_per_level_energies():
    arch = apply_energy_table(load_architecture(ARCH / "simba.yaml"), {"DRAM": {"read": 6400.0},
                                                "Registers": {"read": 0.1, "write": 0.2},
                                                "arithmetic": 0.25})
    dram, regs = arch.levels[-1], arch.levels[0]
    assert (dram.read_energy_pJ, dram.write_energy_pJ) == (6400.0, 6400.0)
    assert (regs.read_energy_pJ, regs.write_energy_pJ) == (0.1, 0.2)
    assert arch.arithmetic.energy_pJ == 0.25 and arch.levels[1].read_energy_pJ is None


# ---- bad input -------------------------------------------------------------------------------
def check_error(err, path, field, *phrases):
    message = str(err.value)
    assert str(path) in message, message
    if field is not None:
        assert f"field '{field}'" in message, message
    for phrase in phrases:
        assert phrase in message, message


V03 = """
arch:
  arithmetic: {instances: 16, word-bits: 8}
  storage:
  - {name: RF, entries: 4, instances: 16, word-bits: 8}
  - {name: GB, entries: 1024, instances: 1, word-bits: 8}
  - {name: DRAM, technology: DRAM, word-bits: 8}
"""

BAD_V03 = [
    ("arch: [1, 2]", "arch", "expected a mapping"),
    ("arch: {storage: [{name: DRAM, technology: DRAM}]}", "arch.arithmetic", "missing"),
    ("arch: {arithmetic: {word-bits: 8}, storage: [{name: D, technology: DRAM}]}",
     "arch.arithmetic.instances", "number of MACs"),
    ("arch: {arithmetic: {instances: 4}, storage: []}", "arch.storage", "non-empty list"),
    ("arch: {arithmetic: {instances: 4}, storage: [{entries: 4}]}", "arch.storage[0].name",
     "missing"),
    (V03.replace("entries: 4,", "entries: -4,"), "arch.storage[0].entries",
     "expected an integer >= 0, got -4"),
    (V03.replace("entries: 1024, instances: 1, word-bits: 8",
                 "entries: 1024, instances: 1, word-bits: eight"),
     "arch.storage[1].word-bits", "expected a positive integer, got 'eight'"),
    (V03.replace("entries: 1024, ", ""), "arch.storage[1].entries", "no capacity"),
    (V03.replace("instances: 1, word", "instances: 3, word"), "arch.storage[1].instances",
     "level GB has 3 instances", "whole number of children"),
    (V03.replace("{instances: 16, word-bits: 8}", "{instances: 16, meshX: 3}"),
     "arch.arithmetic.meshX", "must divide the 16 instances"),
    (V03.replace("name: GB", "name: RF"), None, "level names repeat"),
    (V03.replace("entries: 1024,", "depth: 128, width: 12,"), "arch.storage[1].width",
     "not a multiple of word bits"),
    (V03.replace("technology: DRAM, word-bits: 8", "technology: DRAM, bandwidth: fast"),
     "arch.storage[2].bandwidth", "expected a positive number"),
]

TREE = """
architecture:
  version: 0.4
  subtree:
  - name: system
    local:
    - {name: DRAM, class: DRAM, attributes: {word-bits: 8}}
    subtree:
    - name: PE[0..3]
      local:
      - {name: RF, class: regfile, attributes: {depth: 16, width: 8, word-bits: 8}}
      - {name: mac, class: intmac, attributes: {datawidth: 8}}
"""

def _tree_arch(tmp_path, text):
    path = tmp_path / "arch.yaml"
    path.write_text(textwrap.dedent(text))
    return load_architecture(path)


def test_tree_is_read_as_timeloop_model_reads_it(tmp_path):
    """timeloop-model (019f107) matches attribute names verbatim, defaults to 16-bit words,
    ignores components of other classes and passes no subtree attribute down; the compute
    component may sit anywhere in its list."""
    arch = _tree_arch(tmp_path, TREE)
    assert [lv.word_bits for lv in arch.levels] == [8, 8]
    with pytest.warns(InputWarning, match=r"component RF: timeloop-model does not read "
                                          r"'word_bits' \(it reads 'word-bits' or"):
        arch = _tree_arch(tmp_path,
                          TREE.replace("width: 8, word-bits: 8", "width: 16, word_bits: 8"))
    rf = arch.levels[0]
    assert (rf.word_bits, rf.block_size, rf.entries) == (16, 1, 16)  # Timeloop's default word
    with pytest.warns(InputWarning, match="ignores a component of class 'magic_box'"):
        arch = _tree_arch(tmp_path, TREE.replace("class: regfile", "class: magic_box"))
    assert arch.level_names == ("DRAM",)
    moved = TREE.replace(
        "      - {name: RF, class: regfile, attributes: {depth: 16, width: 8, word-bits: 8}}\n"
        "      - {name: mac, class: intmac, attributes: {datawidth: 8}}\n",
        "      - {name: mac, class: intmac, attributes: {datawidth: 8}}\n"
        "      - {name: RF, class: regfile, attributes: {depth: 16, width: 8, word-bits: 8}}\n")
    assert moved != TREE
    assert _tree_arch(tmp_path, moved).level_names == ("RF", "DRAM")
    with pytest.warns(InputWarning, match=r"subtree PE: .*\['word-bits'\] there set nothing"):
        arch = _tree_arch(tmp_path, TREE.replace(
            "    - name: PE[0..3]\n", "    - name: PE[0..3]\n      attributes: {word-bits: 32}\n")
            .replace("width: 8, word-bits: 8}", "width: 16}"))
    assert arch.levels[0].word_bits == 16


BAD_TREE = [
    ("architecture: {version: 0.3}", "architecture.subtree", "missing"),
    (TREE + "    - {name: other, local: []}\n", "architecture.subtree[0].subtree",
     "2 sibling subtrees"),
    (TREE.replace("PE[0..3]", "PE[3..1]"), "architecture.subtree[0].subtree[0].name",
     "range in 'PE[3..1]' is empty"),
    (TREE.replace("PE[0..3]", "PE[0..x]"), "architecture.subtree[0].subtree[0].name",
     "malformed instance range"),
    (TREE.replace("      - {name: mac, class: intmac, attributes: {datawidth: 8}}\n", ""),
     "architecture.subtree", "found 0 compute components"),
    (TREE.replace("{depth: 16,", "{instances: 3, depth: 16,"),
     "architecture.subtree[0].subtree[0].local[0].attributes.instances",
     "disagrees with the 4 instances"),
    (TREE.replace("{depth: 16,", "{depth: -16,"),
     "architecture.subtree[0].subtree[0].local[0].attributes.depth", "integer >= 0"),
    (TREE.replace("{name: RF, class: regfile,", "{class: regfile,"),
     "architecture.subtree[0].subtree[0].local[0].name", "missing"),
]

V04 = """
architecture:
  version: 0.4
  nodes:
  - !Container {name: sys, attributes: {datawidth: 8}}
  - !Component {name: DRAM, class: DRAM, attributes: {}}
  - !Container {name: PE, spatial: {meshX: 4}}
  - !Component
    name: RF
    class: regfile
    attributes: {depth: 4, width: 8}
    constraints: {dataspace: {keep: [Weights]}}
  - !Component {name: mac, class: intmac, attributes: {}}
"""

BAD_V04 = [
    (V04.replace("!Container {name: PE", "!Box {name: PE"), "architecture.nodes[2].!",
     "unknown node tag !Box"),
    (V04.replace("keep: [Weights]", "keep: [Weight]"),
     "architecture.nodes[3].constraints.dataspace.keep", "unknown tensor names ['Weight']"),
    (V04.replace("{meshX: 4}", "{meshX: 0}"), "architecture.nodes[2].spatial.meshX",
     "positive integer"),
    (V04.replace("- !Component {name: mac, class: intmac, attributes: {}}\n", ""),
     "architecture.nodes[3].class", "last component must be the compute element"),
    (V04.replace("{name: DRAM, class: DRAM,", "{class: DRAM,"), "architecture.nodes[1].name",
     "missing"),
]

SHORT = """
name: s
macs: {instances: 16, mesh_x: 4}
levels:
  - {name: RF, entries: 4, instances: 16, mesh_x: 4, keeps: [Weights]}
  - {name: GB, entries: 4096, shares: {Inputs: 0.5, Outputs: 0.5}, keeps: [Inputs, Outputs]}
  - {name: DRAM, read_bandwidth: 4}
"""

BAD_SHORT = [
    ("levels: [{name: DRAM}]", "macs", "missing"),
    ("macs: {instances: 4}\nlevels: []", "levels", "non-empty list"),
    ("macs: {instances: 4}\nlevels: [{name: DRAM}]\nextra: 1", "extra", "unknown field"),
    ("macs: {mesh_x: 4}\nlevels: [{name: DRAM}]", "macs.instances", "number of MACs"),
    (SHORT.replace("entries: 4096", "entires: 4096"), "levels[1].entires",
     "unknown field; expected one of ['name', 'entries'"),
    (SHORT.replace("entries: 4096, ", ""), "levels[1].entries",
     "only the outermost level may omit it"),
    (SHORT.replace("keeps: [Weights]", "keeps: [Weights, Psums]"), "levels[0].keeps",
     "unknown tensor names ['Psums']"),
    (SHORT.replace("keeps: [Weights]", "keeps: [Weights], bypass: [Inputs]"), "levels[0].bypass",
     "either 'keeps' or 'bypass'"),
    (SHORT.replace("Inputs: 0.5,", "Inputs: 1.5,"), "levels[1].shares.Inputs",
     "fraction in (0, 1]"),
    (SHORT.replace("Inputs: 0.5,", "Weights: 0.5,"), "levels[1].shares.Weights",
     "does not keep"),
    (SHORT.replace("read_bandwidth: 4", "read_bandwidth: -4"), "levels[2].read_bandwidth",
     "expected a positive number, got -4"),
    (SHORT.replace("instances: 16, mesh_x: 4, keeps", "instances: 16, mesh_x: 5, keeps"),
     "levels[0].mesh_x", "must divide the 16 instances"),
    (SHORT.replace("instances: 16, mesh_x: 4, keeps", "instances: 5, keeps"), "levels[0].instances",
     "level RF has 5 instances", "whole number of children"),
    (SHORT.replace("entries: 4,", "entries: 4.5,"), "levels[0].entries", "got 4.5"),
    (SHORT.replace("keeps: [Weights]", "keeps: {Weights: 1}"), "levels[0].keeps",
     "expected a list of names"),
    ("macs: {instances: 4}\nlevels: [[DRAM]]", "levels[0]", "expected a mapping"),
    (SHORT.replace("keeps: [Inputs, Outputs]", "keeps: [Inputs, Outputs], spatial_x: [reducton]"),
     "levels[1].spatial_x", "unknown dimension or role 'reducton'", "output_channel"),
    (SHORT.replace("keeps: [Inputs, Outputs]", "keeps: [Inputs, Outputs], spatial_y: [C, k]"),
     "levels[1].spatial_y", "unknown dimension or role 'k'"),
    (SHORT.replace("keeps: [Inputs, Outputs]", "keeps: [Inputs, Outputs], row_dims: {Inputs: Cin}"),
     "levels[1].row_dims.Inputs", "unknown dimension or role 'Cin'"),
]

BAD_FILES = [
    ("", None, "the file is empty"),
    ("arch: {arithmetic: [}", None, "not valid YAML", "line 1"),
    ("- 1\n- 2\n", None, "expected a mapping with a top-level key 'arch'"),
    ("problem: {R: 3}", None, "unrecognised architecture format", "'levels'"),
]


def cases(table):
    """(text, field, phrases...) rows as (text, field, phrases) parameters."""
    return [pytest.param(text, field, phrases, id=f"{field}:{phrases[0][:30]}")
            for text, field, *phrases in table]


@pytest.mark.parametrize("text, field, phrases",
                         cases(BAD_FILES + BAD_V03 + BAD_TREE + BAD_V04 + BAD_SHORT))
def test_bad_architecture_files_name_the_file_and_field(tmp_path, text, field, phrases):
    path = tmp_path / "bad.arch.yaml"
    path.write_text(textwrap.dedent(text))
    with pytest.raises(InputError) as err:
        load_architecture(path)
    check_error(err, path, field, *phrases)


def test_the_good_versions_of_the_bad_files_load(tmp_path):
    """The bad cases above are one edit away from these: the edit is what is rejected."""
    for text, levels in ((V03, 3), (TREE, 2), (V04, 2), (SHORT, 3)):
        path = tmp_path / "good.yaml"
        path.write_text(text)
        assert load_architecture(path).num_levels == levels


def test_missing_file_and_unknown_preset(tmp_path):
    with pytest.raises(InputError) as err:
        load_architecture(tmp_path / "nope.yaml")
    check_error(err, tmp_path / "nope.yaml", None, "file not found")
    with pytest.raises(InputError, match=r"unknown architecture preset 'simbaa'.*'simba', "
                                         r"'gemmini'.*or a path"):
        load_architecture("simbaa")
    with pytest.raises(InputError, match="is not a file|not a file"):
        read_yaml(tmp_path)


BAD_MAPSPACES = [
    ("mapspace:\n  constraints:\n  - {target: GlobalBufer, type: bypass, keep: [Inputs]}",
     "mapspace.constraints[0].target", "no level named 'GlobalBufer'", "'GlobalBuffer'"),
    ("mapspace:\n  constraints:\n  - {target: DRAM, type: bypass, keep: [Input]}",
     "mapspace.constraints[0].keep", "unknown tensor names ['Input']"),
    ("mapspace:\n  constraints:\n  - {target: DRAM, type: bypass, keep: [Inputs], "
     "bypass: [Inputs]}", "mapspace.constraints[0].keep", "both kept and bypassed"),
    ("mapspace:\n  constraints:\n  - {target: DRAM, keep: [Inputs]}",
     "mapspace.constraints[0].type", "missing"),
    ("mapspace:\n  constraints:\n  - {type: bypass, keep: [Inputs]}",
     "mapspace.constraints[0].target", "missing"),
    ("mapspace: {constraints: 3}", "mapspace", "list of constraints"),
    ("something: else", "mapspace.constraints", "no constraints"),
]


@pytest.mark.parametrize("text, field, phrases", cases(BAD_MAPSPACES))
def test_bad_mapspaces_name_the_file_and_field(tmp_path, text, field, phrases):
    path = tmp_path / "bad.mapspace.yaml"
    path.write_text(text)
    with pytest.raises(InputError) as err:
        load_architecture(ARCH / "simba.yaml", path)
    check_error(err, path, field, *phrases)


def test_bad_energy_table_names_the_level():
    with pytest.raises(InputError, match="field 'Registrs'.*no level named 'Registrs'"):
        apply_energy_table(preset("simba"), {"Registrs": {"read": 1.0}}, "simba.energy.yaml")
    with pytest.raises(InputError, match="simba.energy.yaml: field 'DRAM.read': .*missing"):
        apply_energy_table(preset("simba"), {"DRAM": {"write": 1.0}}, "simba.energy.yaml")



def test_instances_that_do_not_divide_in_the_tree_format_name_the_component(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(TREE.replace("{depth: 16,", "{meshX: 4, depth: 16,")
                    .replace("- {name: DRAM, class: DRAM, attributes: {word-bits: 8}}",
                             "- {name: 'DRAM[0..2]', class: DRAM, attributes: {word-bits: 8}}"))
    with pytest.raises(InputError) as err:
        load_architecture(path)
    check_error(err, path, "architecture.subtree[0].local[0].instances",
                "level DRAM has 3 instances", "whole number of children")
