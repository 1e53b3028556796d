"""tvm_cosa: one-shot MILP scheduling (CoSA) of DNN layers on spatial accelerators, in TVM."""

from .architecture import Architecture, Arithmetic, MemoryLevel, preset
from .architecture_yaml import load_architecture
from .errors import CoSAError, InfeasibleError, InputError, InputWarning, SolverError, TimeloopError
from .mapping import LevelMapping, Mapping
from .problem import Problem, Tensor
from .scheduler import Objective, cosa, schedule
from .validity import InvalidMappingError, assert_valid, check_mapping, is_valid

__version__ = "0.1.0"

__all__ = [
    "Architecture", "Arithmetic", "MemoryLevel", "preset", "load_architecture",
    "CoSAError", "InfeasibleError", "InputError", "InputWarning", "SolverError", "TimeloopError",
    "LevelMapping", "Mapping", "Problem", "Tensor",
    "InvalidMappingError", "assert_valid", "check_mapping", "is_valid",
    "Objective", "cosa", "schedule", "CoSAPass",
]


def __getattr__(name):
    # The TVM pass needs TVM (the optional `tvm` extra): imported on first use only, so the
    # scheduler and the cost model work without it.
    if name == "CoSAPass":
        try:
            from .relax.pass_ import CoSAPass
        except ImportError as err:
            if "tvm" not in str(err):
                raise
            raise ImportError(f"tvm_cosa.CoSAPass needs TVM ({err}); install it with: "
                              f"pip install 'tvm_cosa[tvm]'") from err
        return CoSAPass
    raise AttributeError(f"module 'tvm_cosa' has no attribute {name!r}")
