"""A persistent schedule cache: a JSON file per (problem, architecture, objective, solver).

The key is a SHA-256 of a canonical JSON form of `problem.key()`, `arch.key()`, the objective's
key, the solver's name and version and the scheduler's revision, so a change to any of them (a
new solver release, another buffer size, the exact-model polish) misses the cache instead of
reusing a stale schedule. Sets are sorted before hashing:
the key is the same in every process whatever the hash seed.

It also remembers which scheduled PrimFuncs (by structural hash and TVM version) built for llvm
before, so a warm compile does not build-check them again.

An entry also records how hard it was solved (the solver's status and gap, the time limit it
had): `answers()` lets it answer only a request asking no more than that, so a schedule cut short
by a time limit or solved to a looser gap is never handed out as optimal.

Default location: `$TVM_COSA_CACHE`, else `~/.cache/tvm_cosa`. Files are written to a temporary
name and renamed, so two compiles running at once never read half a file; an unreadable entry is a
miss, not an error.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Optional

from ..errors import InputError
from ..solvers import DEFAULT_MIP_GAP, effective_time_limit

FORMAT_VERSION = 2  # bump when the entry layout changes
# bump when the scheduler returns other schedules for the same request
SCHEDULER_REVISION = "milp-gap-1e-3+exact-polish-1+output-fills"


def default_cache_dir() -> Path:
    env = os.environ.get("TVM_COSA_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "tvm_cosa"


def canonical(obj):
    """A JSON-able form of keys made of dataclasses, tuples, sets, enums and scalars."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {"__type__": type(obj).__name__,
                **{f.name: canonical(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                   if f.compare}}
    if isinstance(obj, enum.Enum):
        return canonical(obj.value)
    if isinstance(obj, (set, frozenset)):
        return sorted((canonical(x) for x in obj), key=lambda x: json.dumps(x, sort_keys=True))
    if isinstance(obj, (list, tuple)):
        return [canonical(x) for x in obj]
    if isinstance(obj, dict):
        return {str(k): canonical(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, float):
        return repr(obj)
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    return repr(obj)


def cache_key(problem, arch, objective_key, solver: str, solver_version: str) -> str:
    payload = {"format": FORMAT_VERSION, "problem": canonical(problem.key()),
               "arch": canonical(arch.key()), "objective": canonical(objective_key),
               "solver": solver, "solver_version": solver_version,
               "scheduler": SCHEDULER_REVISION}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def solve_quality(info: dict, time_limit: Optional[float]) -> dict:
    """What a cache entry records of how its mapping was solved (`info`: Mapping.info)."""
    return {"status": str(info.get("status", "")), "gap": info.get("gap"),
            "time_limit": effective_time_limit(time_limit)}


def answers(quality: Optional[dict], time_limit: Optional[float],
            mip_gap: Optional[float]) -> bool:
    """Whether a schedule solved as `quality` says may answer a request with this time limit and
    gap: an optimal one within the asked gap always; one stopped by its time limit only a request
    with the same or a shorter limit (no limit given: `solvers.DEFAULT_TIME_LIMIT`; a request
    for the full proof, math.inf, solves again)."""
    if not isinstance(quality, dict):
        return False
    status, gap = quality.get("status"), quality.get("gap")
    if status == "time_limit":
        limit = quality.get("time_limit")
        return limit is not None and effective_time_limit(time_limit) <= limit
    if status != "optimal":
        return False
    wanted = DEFAULT_MIP_GAP if mip_gap is None else mip_gap
    return gap is None or gap <= wanted + 1e-12


class ScheduleCache:
    """Mapping cache on disk. `ScheduleCache(False)` is a cache that never hits nor stores."""

    def __init__(self, path=None):
        if path is False:
            self.path: Optional[Path] = None
        elif path is None or path is True:
            self.path = default_cache_dir()
        elif isinstance(path, (str, os.PathLike)):
            self.path = Path(path).expanduser()
        else:
            raise InputError(f"cache must be None (default directory), False (no cache) or a "
                             f"directory path, got {path!r}", field="cache")
        if self.path is not None and self.path.exists() and not self.path.is_dir():
            raise InputError(f"{self.path} is a file; the cache needs a directory",
                             field="cache")
        self.hits = 0
        self.misses = 0

    @property
    def enabled(self) -> bool:
        return self.path is not None

    def _file(self, key: str) -> Path:
        return self.path / key[:2] / f"{key}.json"

    def get(self, key: str, accept=None) -> Optional[dict]:
        """The entry under `key`, if any and if `accept(entry)` (when given) says it will do."""
        if not self.enabled:
            return None
        file = self._file(key)
        try:
            entry = json.loads(file.read_text())
        except FileNotFoundError:
            self.misses += 1
            return None
        except (OSError, ValueError) as err:
            warnings.warn(f"ignoring unreadable schedule cache entry {file}: {err}")
            self.misses += 1
            return None
        if (not isinstance(entry, dict) or entry.get("format") != FORMAT_VERSION
                or (accept is not None and not accept(entry))):
            self.misses += 1
            return None
        self.hits += 1
        return entry

    def put(self, key: str, entry: dict) -> None:
        if not self.enabled:
            return
        file = self._file(key)
        try:
            file.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=file.parent, prefix=".tmp", suffix=".json")
            with os.fdopen(fd, "w") as out:
                # insertion order kept: a mapping's factor dicts print in solver order
                json.dump({**entry, "format": FORMAT_VERSION}, out, indent=1)
            os.replace(tmp, file)
        except OSError as err:  # a read-only home must not stop a compile
            warnings.warn(f"could not write the schedule cache at {file}: {err}")

    # ---- build checks: lowered functions known to build, so a warm compile skips the build --
    def _built_file(self, key: str) -> Path:
        return self.path / "built" / key

    def has_built(self, key: str) -> bool:
        return self.enabled and self._built_file(key).is_file()

    def mark_built(self, key: str) -> None:
        if not self.enabled:
            return
        try:
            self._built_file(key).parent.mkdir(parents=True, exist_ok=True)
            self._built_file(key).touch()
        except OSError as err:
            warnings.warn(f"could not write the schedule cache at {self.path}: {err}")

    def __len__(self) -> int:
        if not self.enabled or not self.path.is_dir():
            return 0
        return sum(1 for _ in self.path.glob("[0-9a-f][0-9a-f]/*.json"))

    def clear(self) -> None:
        if self.enabled and self.path.is_dir():
            for file in [*self.path.glob("[0-9a-f][0-9a-f]/*.json"),
                         *self.path.glob("built/*")]:
                file.unlink(missing_ok=True)
