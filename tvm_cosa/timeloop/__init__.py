"""Timeloop interop: its input files, running timeloop-model, parsing its stats."""

from .files import (architecture_dict, architecture_yaml, problem_dict, problem_yaml,
                    read_problem, write_architecture, write_problem)
from .mapping_io import (mapping_entries, mapping_yaml, parse_factors, read_mapping,
                         write_mapping)
from .runner import find_timeloop, run_timeloop, timeloop_available
from .stats import parse_stats

__all__ = ["read_mapping", "write_mapping", "mapping_yaml", "mapping_entries", "parse_factors",
           "write_problem", "read_problem", "problem_dict", "problem_yaml",
           "write_architecture", "architecture_dict", "architecture_yaml",
           "run_timeloop", "find_timeloop", "timeloop_available", "parse_stats"]
