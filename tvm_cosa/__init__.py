"""tvm_cosa: one-shot MILP scheduling (CoSA) of DNN layers on spatial accelerators, in TVM."""

from .architecture import Architecture, Arithmetic, MemoryLevel, preset
from .architecture_yaml import load_architecture
from .errors import CoSAError, InfeasibleError, InputError, SolverError, TimeloopError
from .mapping import LevelMapping, Mapping
from .problem import Problem, Tensor
from .scheduler import Objective, cosa, schedule
from .validity import InvalidMappingError, assert_valid, check_mapping, is_valid

__version__ = "0.1.0"

__all__ = [
    "Architecture", "Arithmetic", "MemoryLevel", "preset", "load_architecture",
    "CoSAError", "InfeasibleError", "InputError", "SolverError", "TimeloopError",
    "LevelMapping", "Mapping", "Problem", "Tensor",
    "InvalidMappingError", "assert_valid", "check_mapping", "is_valid",
    "Objective", "cosa", "schedule",
]
