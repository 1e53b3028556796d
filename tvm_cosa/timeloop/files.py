"""Timeloop's problem and architecture files.

Problem: a plain 2-D convolution is written as Timeloop's built-in `cnn-layer` (letters R S P
Q C K N, strides and dilations); anything else (matmul, grouped convolution, a custom shape)
as an inline shape with `dimensions`, `coefficients` and `data-spaces` projections, which
Timeloop reads the same way. `read_problem` reads both back.

Architecture: the Timeloop file the architecture was loaded from is written unchanged
(`arch.timeloop_spec`); otherwise the old (0.3) `arch: {arithmetic, storage}` format, innermost
level first, with `vector-access-energy` where the architecture has an energy table (Timeloop
then uses it instead of its built-in estimate).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping as MappingT

import yaml

from ..errors import InputError
from ..problem import CNN_LAYER_DIMS, Problem, Tensor

_CNN_PARAMS = ("Wstride", "Hstride", "Wdilation", "Hdilation")


# ---- problem ------------------------------------------------------------------------------
def problem_dict(problem: Problem) -> dict:
    """The `problem:` document timeloop-model reads for this layer."""
    if _is_cnn_layer(problem):
        body = {"shape": "cnn-layer", **problem.size}
        param = problem.param
        body.update({k: param.get(k, 1) for k in _CNN_PARAMS})
        return {"problem": body}
    return {"problem": _custom_shape(problem)}


def _is_cnn_layer(problem: Problem) -> bool:
    """True when Timeloop's own cnn-layer shape describes the problem exactly."""
    if problem.kind != "conv2d" or set(problem.dims) != set(CNN_LAYER_DIMS):
        return False
    p = problem.param
    reference = Problem.conv2d(
        N=problem.size["N"], K=problem.size["K"], C=problem.size["C"], P=problem.size["P"],
        Q=problem.size["Q"], R=problem.size["R"], S=problem.size["S"],
        stride=(p.get("Hstride", 1), p.get("Wstride", 1)),
        dilation=(p.get("Hdilation", 1), p.get("Wdilation", 1)))
    return reference.tensors == problem.tensors


def _custom_shape(problem: Problem) -> dict:
    coefficients = {}
    data_spaces = []
    for t in problem.tensors:
        projection = []
        for a, axis in enumerate(t.axes):
            terms = []
            for d, c in axis:
                if c == 1:
                    terms.append([d])
                else:
                    name = _coefficient_name(problem, t, a, d, c)
                    coefficients[name] = c
                    terms.append([d, name])
            projection.append(terms)
        space = {"name": t.name, "projection": projection}
        if t.is_output:
            space["read-write"] = True
        data_spaces.append(space)
    shape = {"name": problem.kind if problem.kind != "conv2d" else "grouped-cnn-layer",
             "dimensions": list(problem.dims)}
    if coefficients:
        shape["coefficients"] = [{"name": k, "default": v} for k, v in coefficients.items()]
    shape["data-spaces"] = data_spaces
    return {"shape": shape, "instance": {**problem.size, **coefficients}}


def _coefficient_name(problem, tensor, axis, dim, coef) -> str:
    # Use the cnn-layer names when they say what the coefficient is.
    names = {"P": "Wstride", "Q": "Hstride", "R": "Wdilation", "S": "Hdilation"}
    name = names.get(dim)
    if name and problem.param.get(name) == coef:
        return name
    return f"{tensor.name}{axis}{dim}"


def problem_yaml(problem: Problem) -> str:
    return yaml.safe_dump(problem_dict(problem), sort_keys=False, default_flow_style=None)


def write_problem(problem: Problem, path) -> Path:
    path = Path(path)
    path.write_text(problem_yaml(problem))
    return path


def read_problem(path_or_data, *, name=None) -> Problem:
    """A Timeloop problem file: `cnn-layer` (or CoSA's layer files), matmul, or a custom shape."""
    from ..architecture_yaml import read_yaml

    if isinstance(path_or_data, (str, Path)):
        source = str(path_or_data)
        data = read_yaml(path_or_data)
        name = name or Path(path_or_data).stem
    else:
        source, data = name or "problem", path_or_data
        name = name or "layer"
    body = data.get("problem", data) if isinstance(data, MappingT) else None
    if not isinstance(body, MappingT):
        raise InputError("expected 'problem: {shape: ..., dimension sizes}'", source=source)
    shape = body.get("shape")
    if isinstance(shape, MappingT) and "data-spaces" in shape:
        return _read_custom(body, shape, name, source)
    return Problem.from_dict(data, name=name, source=source)


def _read_custom(body, shape, name, source) -> Problem:
    dims = shape.get("dimensions")
    if not isinstance(dims, list) or not dims:
        raise InputError("custom shape needs 'dimensions: [...]'", source=source,
                         field="problem.shape.dimensions")
    dims = [str(d) for d in dims]
    instance = body.get("instance", body)
    values = {}
    for c in shape.get("coefficients") or []:
        values[str(c["name"])] = c.get("default", 1)
    for key, value in instance.items():
        if str(key) in values:
            values[str(key)] = value
    sizes = []
    for d in dims:
        n = instance.get(d, 1)
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise InputError(f"size of {d} must be a positive integer, got {n!r}", source=source,
                             field=f"problem.instance.{d}")
        sizes.append((d, n))
    tensors = []
    for n, space in enumerate(shape["data-spaces"]):
        axes = []
        for axis in space.get("projection", []):
            terms = []
            for term in axis:
                d = str(term[0])
                if d not in dims:
                    raise InputError(f"data-space {space.get('name')}: unknown dimension {d!r}",
                                     source=source, field=f"problem.shape.data-spaces[{n}]")
                coef = values.get(str(term[1]), None) if len(term) > 1 else 1
                if not isinstance(coef, int):
                    raise InputError(f"data-space {space.get('name')}: coefficient {term[1]!r} "
                                     "has no integer value", source=source,
                                     field=f"problem.shape.data-spaces[{n}]")
                terms.append((d, coef))
            axes.append(tuple(terms))
        tensors.append(Tensor(str(space["name"]), tuple(axes),
                              is_output=bool(space.get("read-write", False))))
    kind = str(shape.get("name", "custom"))
    kind = kind if kind in ("matmul",) else "custom"
    return Problem(name, kind, tuple(sizes), tuple(tensors))


# ---- architecture -------------------------------------------------------------------------
def architecture_dict(arch) -> dict:
    """The architecture as timeloop-model reads it (the user's own file when there is one)."""
    if arch.timeloop_spec is not None:
        return arch.timeloop_spec
    ar = arch.arithmetic
    arithmetic = {"name": ar.name, "instances": ar.instances, "word-bits": ar.word_bits}
    if ar.mesh_x:
        arithmetic["meshX"] = ar.mesh_x
    storage = [_storage_dict(lv) for lv in arch.levels]
    return {"arch": {"arithmetic": arithmetic, "storage": storage}}


def _storage_dict(lv) -> dict:
    out = {"name": lv.name}
    if lv.is_dram:
        out["technology"] = "DRAM"
    else:
        out["entries"] = lv.entries
    out.update({"instances": lv.instances, "word-bits": lv.word_bits,
                "block-size": lv.block_size, "cluster-size": lv.cluster_size,
                "num-ports": lv.num_ports, "num-banks": lv.num_banks})
    if lv.mesh_x:
        out["meshX"] = lv.mesh_x
    for key, value in (("read_bandwidth", lv.read_bandwidth),
                       ("write_bandwidth", lv.write_bandwidth),
                       ("shared_bandwidth", lv.shared_bandwidth),
                       ("network-word-bits", lv.network_word_bits)):
        if value is not None:
            out[key] = value
    if lv.read_energy_pJ is not None:
        out["vector-access-energy"] = lv.read_energy_pJ
    return out


def architecture_yaml(arch) -> str:
    return yaml.safe_dump(architecture_dict(arch), sort_keys=False, default_flow_style=None)


def write_architecture(arch, path) -> Path:
    path = Path(path)
    path.write_text(architecture_yaml(arch))
    return path
