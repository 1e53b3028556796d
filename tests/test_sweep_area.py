"""The sweep's area estimate: Timeloop's composition (per-instance storage area x instances, per-MAC
area x MACs, DRAM free) with 45 nm per-component numbers; real timeloop-model, given the same
per-component numbers as overrides, reports the same total."""

import copy
import re
import subprocess

import pytest
import yaml
from hypothesis import given, settings, strategies as st

from tvm_cosa.dse import area
from tvm_cosa.target.gemmini import GemminiConfig


def test_components_of_the_default_gemmini():
    arch = GemminiConfig().architecture()
    est = area.estimate_area(arch)
    bits = {"Scratchpad": 256 * 1024 * 8, "Accumulator": 64 * 1024 * 8}
    assert est.per_level_um2["Scratchpad"] == pytest.approx(bits["Scratchpad"] * 0.692)
    assert est.per_level_um2["Accumulator"] == pytest.approx(bits["Accumulator"] * 0.692)
    assert est.per_level_um2["Registers"] == pytest.approx(256 * 8 * 5.98)  # flip-flops
    assert est.per_level_um2["DRAM"] == 0
    mac = 6350 * 8 * 8 / 32 ** 2 + 278 * 16 / 32
    assert est.per_level_um2[arch.arithmetic.name] == pytest.approx(256 * mac)
    assert est.total_um2 == pytest.approx(sum(est.per_level_um2.values()))
    assert "estimate" in est.label


@settings(max_examples=25, deadline=None)
@given(dim=st.sampled_from([4, 8, 16, 32]), sp=st.sampled_from([32, 64, 128, 256, 512]),
       acc=st.sampled_from([16, 32, 64]))
def test_area_grows_with_every_resource(dim, sp, acc):
    base = area.estimate_area(GemminiConfig(dim=dim, scratchpad_kib=sp,
                                            accumulator_kib=acc).architecture()).total_um2
    for bigger in (dict(dim=2 * dim, scratchpad_kib=sp, accumulator_kib=acc),
                   dict(dim=dim, scratchpad_kib=2 * sp, accumulator_kib=acc),
                   dict(dim=dim, scratchpad_kib=sp, accumulator_kib=2 * acc)):
        assert area.estimate_area(GemminiConfig(**bigger).architecture()).total_um2 > base
    # bandwidth is not silicon here (DRAM is off chip)
    wider = GemminiConfig(dim=dim, scratchpad_kib=sp, accumulator_kib=acc, dram_bandwidth=23.0)
    assert area.estimate_area(wider.architecture()).total_um2 == base


def test_timeloop_composes_the_same_total(tmp_path):
    from tvm_cosa.problem import Problem
    from tvm_cosa.scheduler import schedule
    from tvm_cosa.timeloop.files import architecture_dict, write_problem
    from tvm_cosa.timeloop.mapping_io import write_mapping
    from tvm_cosa.timeloop.runner import find_timeloop

    binary = find_timeloop()
    if binary is None:
        pytest.skip("timeloop-model is not installed")
    arch = GemminiConfig(dim=8, scratchpad_kib=64, accumulator_kib=16).architecture()
    layer = Problem.conv2d(K=16, C=8, P=4, Q=4, R=3, S=3)
    spec = copy.deepcopy(architecture_dict(arch))
    overrides = area.timeloop_overrides(arch)
    # timeloop-model 019f107 reads these overrides as integers: round, and compare to the rounding
    spec["arch"]["arithmetic"]["area"] = round(overrides["arithmetic"]["area"])
    for level in spec["arch"]["storage"]:
        level["cluster-area"] = round(overrides[level["name"].strip()]["cluster-area"])
    (tmp_path / "arch.yaml").write_text(yaml.safe_dump(spec))
    write_problem(layer, tmp_path / "prob.yaml")
    write_mapping(schedule(layer, arch, solver="highs"), layer, arch, tmp_path / "map.yaml")
    subprocess.run([str(binary), "arch.yaml", "prob.yaml", "map.yaml"], cwd=tmp_path,
                   capture_output=True, check=True, timeout=120)
    stats = (tmp_path / "timeloop-model.stats.txt").read_text()
    total_mm2 = float(re.search(r"^Area: ([\d.]+) mm\^2", stats, re.M).group(1))
    rounded = (spec["arch"]["arithmetic"]["area"] * arch.arithmetic.instances
               + sum(lv["cluster-area"] / lv.get("cluster-size", 1) * lv["instances"]
                     for lv in spec["arch"]["storage"]))
    assert total_mm2 == pytest.approx(rounded / 1e6, abs=0.006)  # Timeloop prints 2 decimals
    # and in um^2: the MAC array's total, then each level's area per instance
    printed = [float(x) for x in re.findall(r"Area(?: \(total\))?\s+: ([\d.]+) um\^2", stats)]
    assert printed[0] == spec["arch"]["arithmetic"]["area"] * arch.arithmetic.instances
    assert printed[1:] == [lv["cluster-area"] for lv in spec["arch"]["storage"]]
    assert rounded == pytest.approx(area.estimate_area(arch).total_um2, abs=300)
    assert area.estimate_area(arch).total_mm2 > 0.1  # large enough for the 2 decimals to test it
