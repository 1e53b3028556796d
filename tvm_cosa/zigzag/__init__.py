"""Cross-check with ZigZag (KULeuven-MICAS/zigzag, `pip install zigzag-dse six`), the reference
model for uneven mappings. ZigZag is never a dependency of tvm_cosa: importing this package does
not import it; `evaluate_zigzag` / `compare` do, and raise ImportError without it.

`translate.py` turns an Architecture, a conv2d Problem and a (possibly uneven) Mapping into
ZigZag's inputs: its accelerator and workload definitions (the same dicts its YAML files hold),
the spatial mapping per array dimension and the temporal mapping per operand and memory level,
and evaluates them with ZigZag's `CostModelEvaluation` directly (no mapping search).
`compare` lists, per tensor and level, the quantities both models define the same way; see
docs/zigzag.md for each difference of definition.
"""

from .translate import (ComparedCount, accelerator_data, compare, evaluate_zigzag,
                        temporal_mapping_data, workload_data)

__all__ = ["ComparedCount", "accelerator_data", "workload_data", "temporal_mapping_data",
           "evaluate_zigzag", "compare"]
