"""Models written in plain torch.nn, exported by PyTorch's own ONNX exporters, through tvm_cosa.

A small ResNet-like model (conv, batchnorm, ReLU, residual adds, a strided 1x1 shortcut, max
pooling, global average pooling, flatten, linear) and a small MobileNet-like one (inverted
residuals: 1x1 expand, 3x3 depthwise, 1x1 project; ReLU6, average pooling, linear), with random
batchnorm statistics, exported by `torch.onnx.export` with opsets 11, 13 and 17, by the
TorchScript exporter (`dynamo=False`) and by the dynamo one (which needs onnxscript). Each export:
onnxruntime must agree with torch; tvm_cosa's frontend imports it; the Gemmini flow (preparation,
CoSAPass for the float32 configuration, the c target on the functional model) and CoSAPass on
simba (llvm) must both give onnxruntime's outputs. Exports that import to the same Relax module
are compiled once.

torch is large and not a dependency of the package (CI does not install it): without it these
tests are skipped.
"""

import io
import warnings

import pytest

torch = pytest.importorskip(
    "torch", reason="PyTorch is not installed (optional: pip install torch, CPU build) - the "
                    "exporter tests need it")
pytest.importorskip("tvm")
import onnx  # noqa: E402
import tvm_ffi  # noqa: E402
from torch import nn  # noqa: E402

from tvm_cosa.relax import CoSAPass  # noqa: E402
from tvm_cosa.relax.extract import extract  # noqa: E402
from tvm_cosa.relax.frontend import (build, import_onnx, max_rel_error,  # noqa: E402
                                     run_onnxruntime, run_tvm)
from tvm_cosa.target.gemmini import flow  # noqa: E402

TOLERANCE = 1e-4  # float32, relative to the largest output
OPSETS = (11, 13, 17)
DYNAMO_MIN_OPSET = 18  # the dynamo exporter writes opset 18 and converts down when it can


# ---- the models -------------------------------------------------------------------------------
class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Identity() if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        self.relu = nn.ReLU()

    def forward(self, x):
        y = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


class TinyResNet(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16),
                                  nn.ReLU(), nn.MaxPool2d(3, 2, 1))
        self.layers = nn.Sequential(BasicBlock(16, 16, 1), BasicBlock(16, 32, 2))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(self.layers(self.stem(x))), 1))


class InvertedResidual(nn.Module):
    def __init__(self, cin, cout, stride, expand):
        super().__init__()
        hidden = cin * expand
        self.residual = stride == 1 and cin == cout
        self.body = nn.Sequential(
            nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden), nn.ReLU6(),
            nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        return x + self.body(x) if self.residual else self.body(x)


class TinyMobileNet(nn.Module):
    def __init__(self, classes=10, image_size=32):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16),
                                  nn.ReLU6())
        self.blocks = nn.Sequential(InvertedResidual(16, 16, 1, 2),
                                    InvertedResidual(16, 24, 2, 4),
                                    InvertedResidual(24, 24, 1, 4))
        self.head = nn.Sequential(nn.Conv2d(24, 64, 1, bias=False), nn.BatchNorm2d(64),
                                  nn.ReLU6())
        self.pool = nn.AvgPool2d(image_size // 4)
        self.fc = nn.Linear(64, classes)

    def forward(self, x):
        return self.fc(self.pool(self.head(self.blocks(self.stem(x)))).flatten(1))


MODELS = {"resnet": TinyResNet, "mobilenet": TinyMobileNet}
EXPORTERS = {"torchscript": False, "dynamo": True}


def seeded(model_class, seed=0):
    """The model in eval mode with seeded weights and non-trivial batchnorm statistics."""
    torch.manual_seed(seed)
    model = model_class()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
    return model.eval()


def layer_kinds(model) -> list:
    """(kind, groups) of every convolution and linear layer, in definition order."""
    return [("conv2d", m.groups) if isinstance(m, nn.Conv2d) else ("matmul", 1)
            for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def export(model, x, opset, dynamo) -> onnx.ModelProto:
    if dynamo:
        pytest.importorskip("onnxscript", reason="the dynamo exporter needs onnxscript "
                                                 "(pip install onnxscript)")
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x,), buffer, opset_version=opset, dynamo=dynamo,
                          input_names=["input"], output_names=["logits"])
    return onnx.load_from_string(buffer.getvalue())


def onnx_opset(model) -> int:
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


# ---- compiling each distinct module once --------------------------------------------------------
_COMPILED: dict = {}  # (model name, structural hash of the imported module) -> compiled modules


def compiled(name, mod, cache):
    """(Gemmini runner, its report, the simba executable, its report) for `mod`."""
    key = (name, tvm_ffi.structural_hash(mod))
    if key not in _COMPILED:
        on_gemmini = flow.compile_module(mod, "gemmini", cache=cache, jobs=1)
        runner = flow.load(on_gemmini.mod, on_gemmini.config)
        cosa = CoSAPass("simba", cache=cache, jobs=1)
        simba_mod = cosa(mod)
        _COMPILED[key] = (runner, on_gemmini.report, build(simba_mod), cosa.report)
    return _COMPILED[key]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("schedules")


@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("exporter", sorted(EXPORTERS))
@pytest.mark.parametrize("name", sorted(MODELS))
def test_torch_export_compiles_and_matches_onnxruntime(name, exporter, opset, cache):
    model = seeded(MODELS[name])
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    onnx_model = export(model, x, opset, EXPORTERS[exporter])
    if exporter == "torchscript":
        assert onnx_opset(onnx_model) == opset
    else:  # converted down when the converter can, else left at 18
        assert onnx_opset(onnx_model) in (opset, DYNAMO_MIN_OPSET)
    feed = {"input": x.numpy()}
    want = run_onnxruntime(onnx_model, feed)
    with torch.no_grad():
        assert max_rel_error(want, [model(x).numpy()]) <= 1e-5

    mod = import_onnx(onnx_model)
    ops = extract(mod)
    assert [(op.kind, op.groups if op.kind == "conv2d" else 1) for op in ops] == \
        layer_kinds(model)
    runner, gemmini_report, simba_ex, simba_report = compiled(name, mod, cache)

    # Gemmini: the float32 configuration; every layer on the array except the depthwise ones
    assert gemmini_report.arch == "gemmini-float32"
    for rec, (kind, groups) in zip(gemmini_report.records, layer_kinds(model)):
        assert rec.status == "scheduled", (rec.index, rec.reason)
        if groups == 1:
            assert rec.lowering == "gemmini", (rec.index, rec.reason)
        else:
            assert rec.lowering == "generic" and "depthwise" in rec.reason
    got = runner(feed)
    assert max_rel_error(got, want) <= TOLERANCE
    on_array = sum(1 for _, groups in layer_kinds(model) if groups == 1)
    assert runner.model.counters()["calls"] == on_array

    # simba: every layer scheduled and lowered by the generic TIR lowering, built for llvm
    assert [r.status for r in simba_report.records] == ["scheduled"] * len(ops)
    assert {r.lowering for r in simba_report.records} == {"generic"}
    assert max_rel_error(run_tvm(simba_ex, feed), want) <= TOLERANCE

