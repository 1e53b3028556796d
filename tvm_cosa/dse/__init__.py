"""Design-space exploration: models x hardware configurations, scheduled by CoSA.

    from tvm_cosa.dse import sweep
    result = sweep(["model.onnx"], "space.yaml", out="sweep-out", jobs=2)   # ray=True for Ray
    print(result.table())                  # the Pareto-optimal configurations of each model

- space: the space file (`load_space`), a base architecture and parameter lists;
- models: layers extracted once per model (`load_model`);
- tasks, backends: one task per (configuration, unique layer), on a local process pool or Ray;
- run: `sweep()`, the schedule cache, resuming;
- results: per (configuration, model) figures, Pareto front, results.csv, pareto.png;
- area: the area estimate (Timeloop's composition, 45 nm per-component numbers).

Importing this package imports neither TVM nor Ray.
"""

from .area import AREA_LABEL, estimate_area
from .models import ModelLayers, load_model
from .run import SweepResult, sweep
from .space import Point, Space, load_space

__all__ = ["sweep", "SweepResult", "load_space", "Space", "Point", "load_model", "ModelLayers",
           "estimate_area", "AREA_LABEL"]
