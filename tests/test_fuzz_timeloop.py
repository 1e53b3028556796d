"""A seeded sample of `bench/fuzz_timeloop.py` (issue 10, item 3): random architectures in
Timeloop's own formats (v0.3 `arch:` + mapspace, and the hierarchical tree) and random layers;
CoSA's schedule and a random valid map of each are written, run through the real
timeloop-model and compared field by field with the built-in model (utilized capacity, reads,
fills, updates per level and tensor, cycles, energy within 1e-6). Skipped without
timeloop-model on PATH."""

import random

import pytest

from tvm_cosa.architecture_yaml import load_architecture
from tvm_cosa.timeloop import find_timeloop
from tvm_cosa.timeloop.fuzz import random_arch_files, run_case

needs_timeloop = pytest.mark.skipif(find_timeloop() is None,
                                    reason="timeloop-model is not on PATH")

SEEDS = range(24)
PASSING = ("ok", "infeasible", "no_random_mapping")


@needs_timeloop
@pytest.mark.parametrize("seed", SEEDS)
def test_fuzz_case_matches_timeloop(seed, tmp_path):
    records = run_case(seed, tmp_path, random_mappings=1, time_limit=20)
    assert {r["kind"] for r in records} >= {"random0"}
    for r in records:
        assert r["outcome"] in PASSING, (r["kind"], r["outcome"], r["diffs"][:6])


@pytest.mark.parametrize("seed", range(8))
def test_both_formats_describe_the_same_machine(seed):
    """The v0.3 list + mapspace and the tree document of one random machine load equal."""
    a = random_arch_files(random.Random(seed), "v0.3")
    b = random_arch_files(random.Random(seed), "tree")
    assert load_architecture(a.arch, a.mapspace).key() == \
        load_architecture(b.arch, b.mapspace).key()


@pytest.mark.parametrize("seed", range(40))
def test_varied_spellings_describe_the_same_machine(seed):
    """Any spelling timeloop-model reads, decoys it does not read, the MACs listed first,
    subtree attributes and ignored components: the loader reads the same machine."""
    import warnings

    from tvm_cosa.errors import InputWarning
    from tvm_cosa.timeloop.fuzz import vary_spellings

    fmt = ("v0.3", "tree")[seed % 2]
    plain = random_arch_files(random.Random(seed), fmt)
    varied, reference = vary_spellings(plain, random.Random(seed + 1))
    assert varied.arch != plain.arch
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InputWarning)
        assert load_architecture(varied.arch, varied.mapspace).key() == \
            load_architecture(reference.arch, reference.mapspace).key()
