"""The built-in cost model (agrees with Timeloop 019f107) and its result type."""

from .energy import ESTIMATE_LABEL
from .model import evaluate, level_specs, loop_nest_lines, lower_bound_cycles
from .result import Evaluation, LevelStats, TensorStats

__all__ = ["evaluate", "Evaluation", "LevelStats", "TensorStats", "lower_bound_cycles",
           "ESTIMATE_LABEL", "level_specs", "loop_nest_lines"]
