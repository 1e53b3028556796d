"""Our Architecture / Problem / Mapping as ZigZag inputs, evaluated by ZigZag's cost model.

Hardware: every fan-out axis wider than 1 (level i, X or Y) becomes an operational-array
dimension D1, D2, ... (innermost level first); each level that keeps some tensor becomes a ZigZag
memory holding those operands (Weights -> I2, Inputs -> I1, Outputs -> O), of entries x word bits,
serving the array dimensions of the fan-outs at or below it (one instance spans its children).
Workload: a conv2d in ZigZag's letters (R, S, P, Q, C, K, N -> FX, FY, OX, OY, C, K, B; the input
window `ix = Wstride*ox + Wdilation*fx`). Spatial mapping: per array dimension the factors we put
on that axis. Temporal mapping, per operand: the nest's temporal loops (innermost first, level by
level) cut at the operand's boundaries: its memory level k holds the loops above the previous
boundary up to its own (`Mapping.tile_levels`, even when absent) - ZigZag's uneven mapping.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..cost_model import evaluate
from ..errors import InputError
from ..formulation import access_energy_table
from ..uneven import boundary

OPERAND = {"Weights": "W", "Inputs": "I", "Outputs": "O"}
MEMORY_OPERAND = {"W": "I2", "I": "I1", "O": "O"}
ZIGZAG_DIM = {"R": "FX", "S": "FY", "P": "OX", "Q": "OY", "C": "C", "K": "K", "N": "B"}
DRAM_BITS = 10 ** 15  # "unbounded"
PORT_WORDS = 1024  # port width in words: ZigZag's latency only, nothing compared depends on it


def _array_dims(arch):
    """[(level, axis, size, name)] of the fan-out axes wider than 1, innermost level first."""
    out = []
    for i in range(arch.num_levels):
        for axis, size in zip("XY", arch.fanout(i)):
            if size > 1:
                out.append((i, axis, size, f"D{len(out) + 1}"))
    return out


def _kept_levels(mapping, arch, tensor):
    return [i for i in range(arch.num_levels) if tensor in mapping.kept(arch, i)]


def accelerator_data(arch, mapping) -> dict:
    """ZigZag's accelerator definition (the dict its hardware YAML holds)."""
    dims = _array_dims(arch)
    if not dims:
        dims = [(0, "X", 1, "D1")]
    mac_pJ, e_read, e_write = access_energy_table(arch)
    memories = {}
    for i, lv in enumerate(arch.levels):
        kept = [t for t in ("Weights", "Inputs", "Outputs") if t in mapping.kept(arch, i)]
        if not kept:
            continue
        served = [name for level, _, _, name in dims if level <= i]
        unserved = math.prod(size for level, _, size, _ in dims if level > i)
        if unserved != lv.instances:
            raise InputError(f"level {lv.name} has {lv.instances} instances, but the array "
                             f"dimensions above it give {unserved}; ZigZag's memories serve "
                             f"whole array dimensions")
        ops = [MEMORY_OPERAND[OPERAND[t]] for t in kept]
        reads, writes = [], []
        for op in ops:
            reads += [f"{op}, tl"] + ([f"{op}, th"] if op == "O" else [])
            writes += [f"{op}, fh"] + ([f"{op}, fl"] if op == "O" else [])
        bw = lv.word_bits * PORT_WORDS
        memories[lv.name] = {
            "size": DRAM_BITS if lv.entries is None else lv.entries * lv.word_bits,
            "r_cost": e_read[i] * lv.word_bits / 8, "w_cost": e_write[i] * lv.word_bits / 8,
            "area": 0, "latency": 1, "operands": ops,
            "ports": [{"name": "r_port_1", "type": "read", "bandwidth_min": bw,
                       "bandwidth_max": bw, "allocation": reads},
                      {"name": "w_port_1", "type": "write", "bandwidth_min": bw,
                       "bandwidth_max": bw, "allocation": writes}],
            "served_dimensions": served,
        }
    return {"name": arch.name, "memories": memories,
            "operational_array": {"unit_energy": mac_pJ, "unit_area": 1,
                                  "dimensions": [name for *_, name in dims],
                                  "sizes": [size for _, _, size, _ in dims]}}


def workload_data(problem, arch) -> list:
    """ZigZag's workload definition of a conv2d (one layer)."""
    if problem.kind != "conv2d" or problem.param.get("groups", 1) != 1:
        raise InputError(f"{problem.name}: the ZigZag translation covers plain conv2d layers "
                         f"(not {problem.kind}, groups {problem.param.get('groups', 1)})")
    size, param = problem.size, problem.param
    dims = ["B", "K", "C", "OY", "OX", "FY", "FX"]
    letters = {v: k for k, v in ZIGZAG_DIM.items()}
    out_bits = next(lv.word_bits for lv in arch.levels if "Outputs" in lv.keeps)
    bits = arch.arithmetic.word_bits
    return [{
        "id": 0, "name": problem.name, "operator_type": "Conv",
        "equation": "O[b][k][oy][ox]+=W[k][c][fy][fx]*I[b][c][iy][ix]",
        "dimension_relations": [f"ix={param['Wstride']}*ox+{param['Wdilation']}*fx",
                                f"iy={param['Hstride']}*oy+{param['Hdilation']}*fy"],
        "loop_dims": dims, "loop_sizes": [size[letters[d]] for d in dims],
        "operand_precision": {"W": bits, "I": bits, "O": out_bits, "O_final": bits},
        "operand_source": {"W": 0, "I": 0},
    }]


def mapping_data(problem, mapping, arch) -> list:
    """ZigZag's mapping entry: spatial factors per array dimension, operand-memory links."""
    spatial = {}
    for level, axis, _, name in _array_dims(arch):
        factors = getattr(mapping.levels[level], "spatial_x" if axis == "X" else "spatial_y")
        spatial[name] = [f"{ZIGZAG_DIM[d]}, {f}" for d, f in factors.items() if f > 1]
    spatial = {k: v for k, v in spatial.items() if v}
    entry = {"spatial_mapping": spatial, "memory_operand_links": {"O": "O", "W": "I2", "I": "I1"}}
    # an entry for the operator itself, so that ZigZag does not warn it falls back to "default"
    return [{"name": "default", **entry}, {"name": "Conv", **entry}]


def temporal_mapping_data(problem, mapping, arch) -> dict:
    """{operand letter: [[(ZigZag dim, factor), ...] per memory level of that operand]}, each
    level's loops innermost first: the loops between the previous boundary and this one."""
    loops = [lv.temporal_loops(problem.dims) for lv in mapping.levels]
    top = arch.num_levels - 1
    out = {}
    for tensor, op in OPERAND.items():
        levels, previous = [], -1
        for c in _kept_levels(mapping, arch, tensor):
            b = top if c == top else boundary(mapping, tensor, c)
            levels.append([(ZIGZAG_DIM[d], f) for k in range(previous + 1, b + 1)
                           for d, f in loops[k]])
            previous = b
        out[op] = levels
    return out


def evaluate_zigzag(mapping, problem, arch):
    """ZigZag's CostModelEvaluation of exactly this mapping (no search). Needs zigzag-dse."""
    from zigzag.cost_model.cost_model import CostModelEvaluation
    from zigzag.datatypes import LayerDim, LayerOperand
    from zigzag.mapping.temporal_mapping import TemporalMapping, TemporalMappingType
    from zigzag.parser.accelerator_factory import AcceleratorFactory
    from zigzag.parser.accelerator_validator import AcceleratorValidator
    from zigzag.parser.mapping_validator import MappingValidator
    from zigzag.parser.workload_factory import WorkloadFactory
    from zigzag.parser.workload_validator import WorkloadValidator
    from zigzag.stages.evaluation.cost_model_evaluation import CostModelStage
    from zigzag.stages.mapping.spatial_mapping_conversion import SpatialMappingConversionStage

    acc_validator = AcceleratorValidator(accelerator_data(arch, mapping))
    if not acc_validator.validate():
        raise InputError(f"ZigZag rejects the translated accelerator: "
                         f"{acc_validator.validator.errors}")
    accelerator = AcceleratorFactory(acc_validator.normalized_data).create()
    work_validator = WorkloadValidator(workload_data(problem, arch))
    map_validator = MappingValidator(mapping_data(problem, mapping, arch))
    if not work_validator.validate() or not map_validator.validate():
        raise InputError("ZigZag rejects the translated workload or spatial mapping")
    workload = WorkloadFactory(work_validator.normalized_data,
                               map_validator.normalized_data).create()
    layer = next(iter(workload.topological_sort()))
    if layer.spatial_mapping.oa_dim_sizes is None:
        layer.spatial_mapping.initialize_oa_dims(accelerator.operational_array.dimension_sizes)
    converter = SpatialMappingConversionStage([CostModelStage], accelerator=accelerator,
                                              layer=layer)
    spatial, spatial_int = converter.convert_user_spatial_mapping(layer.spatial_mapping)
    temporal = {LayerOperand(op): [[(LayerDim(d), f) for d, f in lv] for lv in levels]
                for op, levels in temporal_mapping_data(problem, mapping, arch).items()}
    kind = TemporalMappingType.UNEVEN if mapping.tile_levels else TemporalMappingType.EVEN
    return CostModelEvaluation(accelerator=accelerator, layer=layer, spatial_mapping=spatial,
                               spatial_mapping_int=spatial_int,
                               temporal_mapping=TemporalMapping(temporal, layer, kind),
                               access_same_data_considered_as_no_access=False)


@dataclass
class ComparedCount:
    level: str
    tensor: str
    quantity: str  # what both models count (see docs/zigzag.md)
    ours: float
    zigzag: float
    same_definition: bool = True  # False: reported, but the two models define it differently

    @property
    def equal(self) -> bool:
        return math.isclose(self.ours, self.zigzag, rel_tol=1e-9, abs_tol=1e-9)


def plain_window(problem) -> bool:
    """True when no input axis has a window or a stride: then both models count the input tile
    as the words the MACs use (Timeloop takes the bounding box, ZigZag its own window size, and
    their sliding-window reuse rules differ)."""
    size = problem.size
    return all(sum(size[d] > 1 for d, _ in axis) <= 1 and all(c == 1 for _, c in axis)
               for axis in problem.tensor("Inputs").axes)


def compare(mapping, problem, arch, cme=None) -> list:
    """Counts of both models, totals over a level's instances, per tensor and level:

    - tile words (ZigZag's data size per memory unit), below the outermost level;
    - reads of a read-only operand by the level below (ZigZag `rd_out_to_low`) and its fills
      from the level above (`wr_in_by_high`), below the outermost level;
    - output updates from below (`wr_in_by_low`);
    - partial sums read back to be accumulated further (`rd_out_to_low`): ZigZag counts every
      update after the first one of each *output word*; Timeloop after the first one in each
      *instance's copy* (spatially reduced copies start at zero each), so ours is compared as
      updates - output words;
    - output fills from above except the first arrival (`wr_in_by_high`): ZigZag refetches a
      partial sum into one of the copies reduced across the array, Timeloop into each, so ours
      is compared as (fills - partition) x instances / copies;
    - MAC count; spatial utilization as ZigZag defines it (ceil(MACs / array) / temporal
      cycles).
    Input counts are marked `same_definition=False` on layers with a window or a stride (see
    `plain_window`).
    """
    from zigzag.datatypes import LayerOperand
    from zigzag.mapping.data_movement import DataDirection, DataMoveAttr

    ours = evaluate(mapping, problem, arch)
    if not ours.valid:
        raise InputError(f"the mapping is invalid: {ours.error}")
    cme = cme or evaluate_zigzag(mapping, problem, arch)
    zmap = cme.mapping
    top = arch.num_levels - 1
    ideal = math.ceil(problem.macs / arch.num_macs)
    rows = [ComparedCount("-", "-", "MACs", problem.macs, cme.layer.total_mac_count),
            ComparedCount("-", "-", "spatial utilization", ideal / mapping.compute_cycles(),
                          cme.mac_spatial_utilization)]
    output_words = problem.full_size("Outputs")
    plain_inputs = plain_window(problem)
    for tensor, op in OPERAND.items():
        operand = LayerOperand(op)
        same = tensor != "Inputs" or plain_inputs
        for k, level in enumerate(_kept_levels(mapping, arch, tensor)):
            name = arch.levels[level].name
            stats = ours.levels[level].tensors[tensor]
            inst = stats.utilized_instances
            moves = zmap.unit_mem_data_movement[operand][k].get_attribute(
                DataMoveAttr.DATA_ELEM_MOVE_COUNT)

            def row(quantity, mine, direction):
                rows.append(ComparedCount(name, tensor, quantity, mine, moves.get(direction),
                                          same))

            if level != top:
                rows.append(ComparedCount(name, tensor, "tile words", stats.utilized_capacity,
                                          zmap.data_elem_per_level_unrolled[operand][k + 1],
                                          same))
            if tensor != "Outputs":
                row("reads by the level below", stats.reads * inst, DataDirection.RD_OUT_TO_LOW)
                if level != top:
                    row("fills from above", stats.fills * inst, DataDirection.WR_IN_BY_HIGH)
                continue
            row("updates from below", stats.updates * inst, DataDirection.WR_IN_BY_LOW)
            row("partial sums read back", stats.updates * inst - output_words,
                DataDirection.RD_OUT_TO_LOW)
            if level != top:
                copies = inst * stats.partition_size / output_words
                row("partial sums refetched from above",
                    (stats.fills - stats.partition_size) * inst / copies,
                    DataDirection.WR_IN_BY_HIGH)
    return rows
