"""The layers of a model, extracted once: what a sweep schedules on every configuration.

A model is an ONNX file (imported into Relax and walked by `tvm_cosa.relax.extract`, which needs
the `tvm` extra), a CoSA / Timeloop layer YAML file (a one-layer model), or a directory of layer
YAML files (one model whose layers are the files, each counted once, as CoSA's workload folders
list each distinct ResNet-50 layer once). Identical layers (same `problem.key()`) are merged and
counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import CoSAError, InputError

LAYER_SUFFIXES = (".yaml", ".yml")


@dataclass
class ModelLayers:
    name: str
    source: str
    layers: dict = field(default_factory=dict)  # problem key -> (Problem, occurrences)
    unsupported: list = field(default_factory=list)  # (op description, reason)

    def add(self, problem):
        key = problem.key()
        found = self.layers.get(key)
        self.layers[key] = (found[0] if found else problem, (found[1] if found else 0) + 1)

    @property
    def num_layers(self) -> int:
        return sum(count for _, count in self.layers.values())

    @property
    def macs(self) -> int:
        return sum(p.macs * count for p, count in self.layers.values())


def load_model(spec, name=None) -> ModelLayers:
    """Layers of an ONNX file, a layer YAML file, a directory of layer YAMLs, or an
    onnx.ModelProto (give `name`)."""
    if not isinstance(spec, (str, Path)):
        return _from_onnx(spec, name or "model", "<ModelProto>")
    path = Path(spec)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in LAYER_SUFFIXES)
        if not files:
            raise InputError("a model directory must hold layer YAML files (*.yaml)",
                             source=path)
        model = ModelLayers(name or path.name, str(path))
        for file in files:
            model.add(_layer_file(file))
        return model
    if not path.is_file():
        raise InputError("no such model file; expected an ONNX file, a layer YAML file or a "
                         "directory of layer YAML files", source=path)
    if path.suffix in LAYER_SUFFIXES:
        model = ModelLayers(name or path.stem, str(path))
        model.add(_layer_file(path))
        return model
    if path.suffix == ".onnx":
        return _from_onnx(path, name or path.stem, str(path))
    raise InputError(f"unknown model type {path.suffix!r}; expected .onnx, .yaml or a directory",
                     source=path)


def _layer_file(path):
    from ..problem import Problem

    try:
        return Problem.from_yaml(path)
    except CoSAError:
        raise
    except Exception as err:  # noqa: BLE001 - a malformed YAML must name the file
        raise InputError(f"not a layer file ({type(err).__name__}: {err})", source=path) from None


def _from_onnx(onnx_model, name, source) -> ModelLayers:
    try:
        from ..relax import frontend
        from ..relax.extract import extract
    except ImportError as err:
        raise InputError(f"ONNX models need TVM and onnx ({err.name} is missing): "
                         "pip install 'tvm_cosa[tvm]'", source=source) from None
    mod = frontend.import_onnx(frontend.load_onnx(onnx_model))
    model = ModelLayers(name, source)
    for op in extract(mod):
        if op.supported:
            model.add(op.problem)
        else:
            model.unsupported.append((f"{op.kind} {op.shape_text()}", op.reason))
    if not model.layers:
        raise InputError("the model has no conv2d or matmul to schedule", source=source)
    return model


def unique_models(specs) -> list:
    """`load_model` for each spec; model names made unique (a repeated name gets a suffix)."""
    models, seen = [], {}
    for spec in specs:
        model = load_model(spec)
        n = seen.get(model.name, 0)
        seen[model.name] = n + 1
        if n:
            model.name = f"{model.name}_{n + 1}"
        models.append(model)
    return models
