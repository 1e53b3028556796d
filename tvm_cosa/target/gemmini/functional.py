"""Building and driving the C functional model of the Gemmini ISA (runtime/gemmini_func.c).

`build_library(config)` compiles the model for one GemminiConfig with gcc into a shared library,
cached under a directory keyed by the hash of the sources and the parameters (so concurrent test
workers and repeated runs compile it once). `FunctionalModel` opens it with ctypes: counters,
status and error message, and each ISA command for direct tests. A model compiled by TVM contains
its own copy of the model (`link_options`); `FunctionalModel(config, library=model.so)` reads it.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Optional

import numpy as np

from ...errors import CoSAError, InputError
from .config import GemminiConfig

RUNTIME_DIR = Path(__file__).parent / "runtime"
SOURCES = ("gemmini.h", "gemmini_func.c")
LIB_NAME = "gemmini_func"
CFLAGS = ("-std=c99", "-O2", "-Wall", "-Wextra", "-fPIC")
GARBAGE_ADDR = 0xFFFFFFFF
ACC_BIT, ACCUMULATE_BIT, FULL_BIT = 1 << 31, 1 << 30, 1 << 29


class GemminiError(CoSAError):
    """The functional model stopped on an error (bad address, overflow, missing config...)."""


def cache_root() -> Path:
    """`$TVM_COSA_CACHE/gemmini` (the schedule cache's variable), or a per-user folder in the
    temp directory."""
    root = os.environ.get("TVM_COSA_CACHE")
    base = Path(root) if root else Path(tempfile.gettempdir()) / f"tvm_cosa-{os.getuid()}"
    return base / "gemmini"


def gcc() -> str:
    path = shutil.which(os.environ.get("CC", "gcc")) or shutil.which("gcc")
    if not path:
        raise InputError("gcc was not found on PATH; the Gemmini functional model and the "
                         "generated C need a C compiler (install gcc or set CC)")
    return path


def _sources(config: GemminiConfig) -> dict[str, str]:
    files = {name: (RUNTIME_DIR / name).read_text() for name in SOURCES}
    files["gemmini_params.h"] = config.params_header()
    return files


def source_dir(config: GemminiConfig) -> Path:
    """A folder with gemmini.h, gemmini_params.h and gemmini_func.c for this configuration."""
    files = _sources(config)
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + files[name].encode() + b"\0")
    digest.update(" ".join(CFLAGS).encode())
    folder = cache_root() / digest.hexdigest()[:16]
    if not all((folder / n).is_file() for n in files):
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            _write_atomic(folder / name, text.encode())
    return folder


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _compile(config: GemminiConfig, name: str, extra: list[str]) -> Path:
    """`name` in the configuration's cache folder, compiled once (atomically) from the model;
    the file name carries a digest of `extra`, so other options never reuse a stale build."""
    folder = source_dir(config)
    tag = hashlib.sha256(" ".join(extra).encode()).hexdigest()[:8]
    target = folder / f"{Path(name).stem}-{tag}{Path(name).suffix}"
    if target.is_file():
        return target
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=name + ".", suffix=target.suffix)
    os.close(fd)
    cmd = [gcc(), *CFLAGS, *extra, "-I", str(folder), str(folder / "gemmini_func.c"), "-o", tmp]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        os.unlink(tmp)
        raise GemminiError(f"compiling the Gemmini functional model failed:\n{' '.join(cmd)}\n"
                           f"{result.stderr}")
    os.replace(tmp, target)
    return target


def build_library(config: GemminiConfig) -> Path:
    """libgemmini_func.so for `config` (for driving the model directly through ctypes). Bound
    -Bsymbolic: its calls between its own functions stay inside it even after the guard library
    (load_guard) put same-named symbols in the global scope."""
    return _compile(config, f"lib{LIB_NAME}.so", ["-shared", "-Wl,-Bsymbolic"])


def build_object(config: GemminiConfig) -> Path:
    """gemmini_func.o for `config`, to link into a compiled model."""
    return _compile(config, f"{LIB_NAME}.o", ["-c"])


def build_protected_object(config: GemminiConfig) -> Path:
    """gemmini_func.o for `config` with protected symbols: a shared object it is linked into
    calls its own copy even when another definition is loaded process-wide (what -Bsymbolic
    does for flow.load, without needing the linker option). The standard build links it
    (see vm.py)."""
    return _compile(config, f"{LIB_NAME}_protected.o", ["-c", "-fvisibility=protected"])


_guard = []  # the loaded guard library (once per process)


def load_guard() -> None:
    """Load runtime/gemmini_guard.c process-wide (once): the ISA symbols for code JIT-compiled
    without its functional model, which fail with a hint instead of letting the JIT crash the
    process on missing symbols."""
    if _guard:
        return
    source = (RUNTIME_DIR / "gemmini_guard.c").read_text()
    folder = cache_root() / f"guard-{hashlib.sha256(source.encode()).hexdigest()[:16]}"
    library = folder / "libgemmini_guard.so"
    if not library.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        _write_atomic(folder / "gemmini_guard.c", source.encode())
        fd, tmp = tempfile.mkstemp(dir=folder, prefix="libgemmini_guard.", suffix=".so")
        os.close(fd)
        cmd = [gcc(), *CFLAGS, "-shared", str(folder / "gemmini_guard.c"), "-o", tmp]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            os.unlink(tmp)
            raise GemminiError(f"compiling {' '.join(cmd)} failed:\n{result.stderr}")
        os.replace(tmp, library)
    _guard.append(ctypes.CDLL(str(library), mode=ctypes.RTLD_GLOBAL))


def link_options(config: GemminiConfig) -> list[str]:
    """gcc options that put the functional model of `config` inside a model's shared object.

    Each model gets its own copy (its own scratchpad, accumulator and counters), bound with
    -Bsymbolic so that its calls reach that copy even when another model built for another
    configuration is loaded in the same process.
    """
    obj = build_object(config)
    return [str(obj), f"-I{obj.parent}", "-Wl,-Bsymbolic"]


_I32 = ctypes.c_int32


class FunctionalModel:
    """ctypes access to one loaded functional model (one scratchpad, accumulator, counters)."""

    _ISA = {
        "gemmini_flush": [_I32], "gemmini_fence": [],
        "gemmini_extended_config_ex": [_I32] * 6,
        "gemmini_extended_config_ld": [_I32, ctypes.c_float],
        "gemmini_extended3_config_ld": [_I32, ctypes.c_float, _I32, _I32],
        "gemmini_config_st": [_I32],
        "gemmini_extended_config_st": [_I32, _I32, ctypes.c_float],
        "gemmini_extended_mvin": [ctypes.c_void_p] + [_I32] * 3,
        "gemmini_extended_mvin2": [ctypes.c_void_p] + [_I32] * 3,
        "gemmini_extended_mvin3": [ctypes.c_void_p] + [_I32] * 3,
        "gemmini_extended_mvout": [ctypes.c_void_p] + [_I32] * 3,
        "gemmini_extended_preload": [_I32] * 6,
        "gemmini_extended_compute_preloaded": [_I32] * 6,
        "gemmini_extended_compute_accumulated": [_I32] * 6,
        "gemmini_reset": [], "gemmini_status": [], "gemmini_begin_op": [_I32],
        "gemmini_end_op": [], "gemmini_num_counters": [], "gemmini_num_ops": [],
        "gemmini_op_id": [_I32], "gemmini_hw_param": [_I32],
        "gemmini_peek_row": [_I32, ctypes.c_void_p],
    }

    def __init__(self, config: Optional[GemminiConfig] = None, *, library: Optional[Path] = None):
        self.config = config or GemminiConfig()
        self.path = Path(library).resolve() if library else build_library(self.config)
        self.lib = ctypes.CDLL(str(self.path))
        for name, argtypes in self._ISA.items():
            fn = getattr(self.lib, name)
            fn.argtypes, fn.restype = argtypes, _I32
        self.lib.gemmini_counter.argtypes = [_I32, _I32]
        self.lib.gemmini_counter.restype = ctypes.c_int64
        for name in ("gemmini_counter_name", "gemmini_error_message"):
            getattr(self.lib, name).restype = ctypes.c_char_p
        self.lib.gemmini_counter_name.argtypes = [_I32]
        self.counter_names = [self.lib.gemmini_counter_name(i).decode()
                              for i in range(self.lib.gemmini_num_counters())]
        hw = [self.lib.gemmini_hw_param(i) for i in range(6)]
        self.dim, self.spad_rows, self.acc_rows, self.elem_bytes, self.acc_bytes = hw[:5]
        self.is_float = bool(hw[5])
        self.elem_dtype = np.dtype(np.float32 if self.is_float else np.int8)
        self.acc_dtype = np.dtype(np.float32 if self.is_float else np.int32)

    # ---- state ------------------------------------------------------------------------------
    def reset(self) -> None:
        self.lib.gemmini_reset()

    @property
    def status(self) -> int:
        return self.lib.gemmini_status()

    @property
    def error_message(self) -> str:
        return self.lib.gemmini_error_message().decode()

    def check(self) -> None:
        """Raise GemminiError with the model's message if it stopped on an error."""
        if self.status:
            raise GemminiError(f"Gemmini functional model: {self.error_message}")

    def counters(self, op_id: Optional[int] = None) -> dict[str, int]:
        op = -1 if op_id is None else op_id
        return {name: self.lib.gemmini_counter(op, i) for i, name in enumerate(self.counter_names)}

    def op_ids(self) -> list[int]:
        return [self.lib.gemmini_op_id(i) for i in range(self.lib.gemmini_num_ops())]

    def row(self, sp_addr: int) -> np.ndarray:
        """One row of the scratchpad (elem_t) or, with the accumulator bit, of the accumulator."""
        acc = bool(sp_addr & ACC_BIT)
        out = np.zeros(self.dim, self.acc_dtype if acc else self.elem_dtype)
        if self.lib.gemmini_peek_row(_I32(_signed(sp_addr)), out.ctypes.data):
            raise IndexError(f"row address {sp_addr:#x} is outside the memory")
        return out

    # ---- ISA ----------------------------------------------------------------------------------
    def call(self, name: str, *args) -> int:
        """Issue one command (`mvin`, `preload`, ... without the gemmini_ prefix)."""
        fn = getattr(self.lib, f"gemmini_{name}")
        conv = [a if isinstance(a, (ctypes.c_void_p, type(None))) or not isinstance(a, int)
                else _signed(a) for a in args]
        return fn(*conv)

    def mvin(self, array: Optional[np.ndarray], sp_addr: int, cols: int, rows: int,
             id: int = 0) -> int:
        """mvin rows x cols of a 2-D array (None: zeros) whose row stride is configured first."""
        suffix = {0: "", 1: "2", 2: "3"}[id]
        if array is not None:
            self.call("extended3_config_ld", array.strides[0], 1.0, 0, id)
        ptr = None if array is None else ctypes.c_void_p(array.ctypes.data)
        return self.call(f"extended_mvin{suffix}", ptr, sp_addr, cols, rows)

    def mvout(self, array: np.ndarray, sp_addr: int, cols: int, rows: int) -> int:
        self.call("config_st", array.strides[0])
        return self.call("extended_mvout", ctypes.c_void_p(array.ctypes.data), sp_addr, cols, rows)


def _signed(value: int) -> int:
    """An address as the int32 the C functions take (bit 31 set -> negative)."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value
