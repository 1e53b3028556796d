"""Run timeloop-model on a schedule and read its stats.

The binary is found from an explicit path (the binary itself, or a folder holding it, its
`bin/` or its `build/`), else `$TIMELOOP_DIR` (same folder rules), else `timeloop-model` on
PATH. It runs in a fresh temporary folder on the three files written by `tvm_cosa.timeloop`
(`timeloop-model arch.yaml prob.yaml map.yaml`).

A mapping Timeloop rejects (`ERROR: couldn't map level ...`, `ERROR: parsing mapping: product
of all factors ...`) comes back as an invalid `Evaluation` carrying Timeloop's message; every
other failure (missing binary, non-zero exit, another `ERROR:` line, no stats file, time-out)
raises `TimeloopError` with Timeloop's own output.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Optional

from ..cost_model.energy import arithmetic_energy, level_energies
from ..cost_model.result import Evaluation
from ..errors import TimeloopError
from .files import write_architecture, write_problem
from .mapping_io import write_mapping
from .stats import parse_stats

BINARY = "timeloop-model"
STATS_FILE = "timeloop-model.stats.txt"
# Timeloop's messages for mappings it rejects (the mapping is invalid, Timeloop worked).
_REJECTIONS = ("couldn't map level", "parsing mapping: product of all factors")


def find_timeloop(timeloop=None) -> Optional[Path]:
    """Path of timeloop-model, or None. `timeloop`: a binary or a folder; else $TIMELOOP_DIR;
    else PATH."""
    if timeloop:
        return _in_place(Path(timeloop))
    env = os.environ.get("TIMELOOP_DIR")
    if env:
        found = _in_place(Path(env))
        if found is not None:
            return found
    which = shutil.which(BINARY)
    return Path(which) if which else None


def _in_place(path: Path) -> Optional[Path]:
    if path.is_file():
        return path
    for candidate in (path / BINARY, path / "bin" / BINARY, path / "build" / BINARY):
        if candidate.is_file():
            return candidate
    return None


def timeloop_available(timeloop=None) -> bool:
    return find_timeloop(timeloop) is not None


def run_timeloop(mapping, problem, arch, *, timeloop=None, timeout: float = 300.0,
                 workdir=None, keep: bool = False):
    """Evaluate `mapping` with real timeloop-model; returns `Evaluation(backend='timeloop')`.

    `workdir`: run there instead of a temporary folder (the files are left in place);
    `keep`: keep the temporary folder (its path is in `evaluation.info['workdir']`).
    """
    binary = find_timeloop(timeloop)
    if binary is None:
        where = f"'{timeloop}'" if timeloop else "$TIMELOOP_DIR or PATH"
        raise TimeloopError(f"{BINARY} not found in {where}; install Timeloop, put {BINARY} on "
                            "PATH or set TIMELOOP_DIR", option=("backend", "builtin"))
    if workdir is not None:
        folder = Path(workdir)
        folder.mkdir(parents=True, exist_ok=True)
        return _run_in(folder, binary, mapping, problem, arch, timeout)
    tmp = tempfile.mkdtemp(prefix="tvm_cosa_timeloop_")
    try:
        result = _run_in(Path(tmp), binary, mapping, problem, arch, timeout)
        if keep:
            result.info["workdir"] = tmp
        return result
    finally:
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)


def _run_in(folder: Path, binary: Path, mapping, problem, arch, timeout):
    write_architecture(arch, folder / "arch.yaml")
    write_problem(problem, folder / "prob.yaml")
    write_mapping(mapping, problem, arch, folder / "map.yaml")
    command = [str(binary), "arch.yaml", "prob.yaml", "map.yaml"]
    start = time.perf_counter()
    try:
        proc = subprocess.run(command, cwd=folder, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired as err:
        output = _text(err.stdout) + _text(err.stderr)
        raise TimeloopError(f"{BINARY} did not finish within {timeout:g} s (in {folder})"
                            + (f"; its output:\n{_tail(output)}" if output.strip() else "")) \
            from None
    except OSError as err:
        raise TimeloopError(f"cannot run {binary}: {err}") from None
    wall = time.perf_counter() - start
    output = proc.stdout + proc.stderr
    errors = [line.strip() for line in output.splitlines() if line.strip().startswith("ERROR:")]
    info = {"exit_code": proc.returncode, "command": " ".join([BINARY] + command[1:]),
            "timeloop": str(binary), "wall_s": round(wall, 3), "log": output}
    if errors and any(r in errors[0] for r in _REJECTIONS):
        return Evaluation(valid=False, backend="timeloop", error=errors[0][len("ERROR:"):].strip(),
                          energy_estimated=_estimated(arch), info=info)
    if proc.returncode != 0 or errors:
        message = "\n".join(errors) if errors else _tail(output)
        raise TimeloopError(f"{BINARY} failed (exit status {proc.returncode}): {message}")
    stats = folder / STATS_FILE
    if not stats.is_file():
        raise TimeloopError(f"{BINARY} exited 0 but wrote no {STATS_FILE} in {folder}; its "
                            f"output:\n{_tail(output)}")
    result = parse_stats(stats.read_text())
    result.energy_estimated = _estimated(arch)
    result.info.update(info)
    return result


def _estimated(arch) -> bool:
    """Timeloop used its built-in estimate where the architecture has no energy table."""
    return any(level_energies(lv)[2] for lv in arch.levels) or arithmetic_energy(
        arch.arithmetic)[1]


def _text(data) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data


def _tail(text: str, lines: int = 20) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])
