"""The nine graphs of the light model zoo inside the `onnx` wheel (Caffe2 exports: AlexNet,
DenseNet-121, Inception v1 / v2, ResNet-50, ShuffleNet, SqueezeNet, VGG-19, ZFNet-512) through the
Gemmini flow and TVM's standard build, equal to onnxruntime.

Each graph keeps all its layers but runs on 64 x 64 images (`light_model(image_size=64)`): at the
exported 224 x 224 the nine take far longer than CI allows (`bench/third_party.py` runs them at
full size). Measured: the nine together use 123 s of CPU (user + system, gcc included;
`/usr/bin/time -v pytest tests/test_zoo_gemmini.py`); wall seconds on the shared machine under
a load of about 8: DenseNet-121 161, VGG-19 99, AlexNet 79, Inception v2 74, ResNet-50 74,
Inception v1 54, ShuffleNet 41, ZFNet-512 25, SqueezeNet 15. Nothing is downloaded: the graphs
come with onnx, the weights are seeded."""

import numpy as np
import pytest

tvm = pytest.importorskip("tvm")
pytest.importorskip("onnxruntime")

from tvm_cosa.models.zoo import LIGHT_ZOO, light_model  # noqa: E402
from tvm_cosa.relax.frontend import import_onnx, run_onnxruntime, run_tvm, seeded_feed  # noqa: E402
from tvm_cosa.target.gemmini import codegen, flow  # noqa: E402

IMAGE_SIZE = 64
TOLERANCE = 1e-4  # relative to each output's largest |value|
# LLVM without optimizations: the build takes a tenth of the time, and the Gemmini operators
# run in the functional model (compiled with -O2) either way
TARGET = {"kind": "llvm", "opt-level": 0}


@pytest.fixture(scope="module")
def schedule_cache(tmp_path_factory):
    """One cache for the module: layers of the same shape in several graphs are solved once."""
    return tmp_path_factory.mktemp("zoo-schedules")


@pytest.mark.slow
@pytest.mark.parametrize("name", LIGHT_ZOO)
def test_light_zoo_graph_runs_on_gemmini_and_equals_onnxruntime(name, schedule_cache, tmp_path):
    model = light_model(name, image_size=IMAGE_SIZE)
    feed = seeded_feed(model)
    want = run_onnxruntime(model, feed)

    compiled = flow.compile_module(import_onnx(model), "gemmini", cache=schedule_cache, jobs=1,
                                   check="builtin")
    records = compiled.report.records
    assert records and all(r.status == "scheduled" for r in records), compiled.report.table()
    off_array = [r for r in records if r.lowering != "gemmini"]
    # only depthwise convolutions (ShuffleNet's) stay on the CPU, and the report says why
    assert all("depthwise" in r.reason for r in off_array), flow.placement(compiled.report)

    # TVM's standard build: tvm.compile, export, load, relax.VirtualMachine
    ex = tvm.compile(compiled.mod, target=tvm.target.Target(TARGET))
    library = tmp_path / f"{name}.so"
    ex.export_library(str(library))
    vm, model_state = codegen.load(library, compiled.config)
    model_state.reset()
    got = run_tvm(vm, feed)
    model_state.check()

    on_array = [r for r in records if r.lowering == "gemmini"]
    counters = model_state.counters()
    assert counters["calls"] == len(on_array)  # every layer on the array ran there
    assert counters["macs"] >= sum(r.macs for r in on_array)  # padded channels count too
    ok, text = flow.compare(got, want, TOLERANCE)
    assert ok, text
    assert all(np.isfinite(w).all() and np.abs(w).max() > 0 for w in want)  # not degenerate
