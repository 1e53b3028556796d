"""Gemmini's own toolchain: the SDK (gemmini.h of gemmini-rocc-tests), the RISC-V cross compiler
that builds bare-metal programs against it, and Spike with the libgemmini extension.

    toolchain = find_toolchain(sdk=None, spike=None)   # raises ToolchainMissing with what to do
    toolchain.check_config(GemminiConfig())            # gemmini_params.h must be this config
    toolchain.compile(["prog.c"], "prog.riscv")        # as gemmini-rocc-tests' bareMetalC Makefile
    toolchain.run("prog.riscv")                        # spike --extension=gemmini; exit status

Where things are looked for, first found wins:
- SDK (a folder with include/gemmini.h): `sdk=`, `$GEMMINI_ROCC_TESTS`, then
  `<repository>/../shared/gemmini-spike/sdk`;
- spike: `spike=`, `spike` on PATH, then `<repository>/../shared/gemmini-spike/bin/spike`;
- cross compiler: `$RISCV_CC`, then `riscv64-unknown-elf-gcc` on PATH (Debian's
  gcc-riscv64-unknown-elf with picolibc-riscv64-unknown-elf).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from ...errors import InputError
from .config import GemminiConfig

REPO_ROOT = Path(__file__).resolve().parents[3]
SHARED = REPO_ROOT.parent / "shared" / "gemmini-spike"
SDK_ENV = "GEMMINI_ROCC_TESTS"
CC_ENV = "RISCV_CC"
CROSS_CC = "riscv64-unknown-elf-gcc"
INSTALL_HINT = "apt-get install gcc-riscv64-unknown-elf picolibc-riscv64-unknown-elf"

# The flags of gemmini-rocc-tests' bareMetalC Makefile (and of gemmini-spike's bin/gemmini-cc);
# picolibc gives libc, libm and malloc (heap from 2 MiB past the program's end).
BARE_METAL_FLAGS = (
    "-DPREALLOCATE=1", "-DMULTITHREAD=1", "-mcmodel=medany", "-std=gnu99", "-O2", "-ffast-math",
    "-fno-common", "-fno-builtin-printf", "-fno-tree-loop-distribute-patterns", "-march=rv64gc",
    "-mabi=lp64d", "-DID_STRING=", "-DPRINT_TILE=0", "-nostdlib", "-nostartfiles", "-static",
    "-DBAREMETAL=1", "-Wl,--defsym=__heap_start=_end+0x200000,--defsym=__heap_end=0xF0000000",
)


class ToolchainMissing(InputError):
    """Spike, the SDK or the cross compiler is not installed (tests skip on it)."""


@dataclass(frozen=True)
class Toolchain:
    sdk: Path  # holds include/gemmini.h, rocc-software/, riscv-tests/
    spike: Path
    cc: Path

    @property
    def include_dir(self) -> Path:
        return self.sdk / "include"

    @property
    def params_header(self) -> Path:
        return self.include_dir / "gemmini_params.h"

    # ---- configuration -----------------------------------------------------------------------
    def params(self) -> dict:
        """The hardware parameters of the SDK's gemmini_params.h (what Spike was built with)."""
        return parse_params(self.params_header.read_text())

    def check_config(self, config: GemminiConfig) -> None:
        """Raise InputError unless gemmini_params.h describes `config` (the simulator runs only
        programs built for its own configuration)."""
        differences = config_differences(config, self.params())
        if differences:
            raise InputError(
                f"{self.params_header} is not the configuration {config.name}: "
                + "; ".join(differences) + ". Spike's libgemmini runs only programs built for "
                "its own gemmini_params.h: compile for that configuration, or point --gemmini-sdk "
                "/ $GEMMINI_ROCC_TESTS at an SDK (and a Spike) built for this one",
                source=str(self.params_header))

    # ---- building and running ------------------------------------------------------------------
    def compile_command(self, sources: Sequence, output, extra: Sequence[str] = ()) -> list[str]:
        common = self.sdk / "riscv-tests" / "benchmarks" / "common"
        return [str(self.cc), "--specs=picolibc.specs", *BARE_METAL_FLAGS,
                f"-I{self.sdk / 'riscv-tests'}", f"-I{self.sdk / 'riscv-tests' / 'env'}",
                f"-I{self.sdk}", f"-I{common}", "-T", str(common / "test.ld"), *extra,
                *[str(s) for s in sources], str(common / "syscalls.c"), str(common / "crt.S"),
                "-o", str(output), "-lm", "-lc", "-lgcc"]

    def compile(self, sources: Sequence, output, extra: Sequence[str] = ()) -> Path:
        """A bare-metal RISC-V program from C / assembly sources, against the SDK's gemmini.h."""
        cmd = self.compile_command(sources, output, extra)
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise SimulatorError(f"compiling for Spike failed:\n{' '.join(cmd)}\n"
                                 f"{result.stderr[-4000:]}")
        return Path(output)

    def compile_object(self, source, output, extra: Sequence[str] = ()) -> Path:
        """One source compiled (not linked) with the same flags, e.g. emitted operator C."""
        flags = [f for f in BARE_METAL_FLAGS if not f.startswith("-Wl,")]
        cmd = [str(self.cc), "--specs=picolibc.specs", *flags, f"-I{self.sdk}", *extra, "-c",
               str(source), "-o", str(output)]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise SimulatorError(f"compiling {source} for RISC-V failed:\n{' '.join(cmd)}\n"
                                 f"{result.stderr[-4000:]}")
        return Path(output)

    def run(self, program, timeout: Optional[float] = None) -> subprocess.CompletedProcess:
        """`spike --extension=gemmini program`: the exit status is main()'s."""
        return subprocess.run([str(self.spike), "--extension=gemmini", str(program)],
                              capture_output=True, text=True, timeout=timeout)


class SimulatorError(InputError):
    """A program could not be built or did not run on Spike."""


# ---- gemmini_params.h ------------------------------------------------------------------------
_C_TYPES = {"int8_t": "int8", "float": "float32", "int32_t": "int32"}


def parse_params(text: str) -> dict:
    """DIM, scratchpad rows (BANK_NUM x BANK_ROWS), ACC_ROWS and the element types."""
    defines = {m.group(1): m.group(2).strip() for m in
               re.finditer(r"^\s*#define\s+(\w+)\s+([^\n]*)$", text, re.M)}
    types = {m.group(2): m.group(1) for m in
             re.finditer(r"^\s*typedef\s+([\w ]+?)\s+(\w+)\s*;", text, re.M)}

    def number(name):
        if name not in defines:
            raise InputError(f"gemmini_params.h has no #define {name}")
        return int(defines[name].split("//")[0].strip().strip("()"), 0)

    return {"dim": number("DIM"), "spad_rows": number("BANK_NUM") * number("BANK_ROWS"),
            "acc_rows": number("ACC_ROWS"),
            "elem_t": _C_TYPES.get(types.get("elem_t", ""), types.get("elem_t")),
            "acc_t": _C_TYPES.get(types.get("acc_t", ""), types.get("acc_t"))}


def config_differences(config: GemminiConfig, params: dict) -> list[str]:
    """What differs between `config` and the parameters of a gemmini_params.h."""
    want = {"dim": config.dim, "spad_rows": config.spad_rows, "acc_rows": config.acc_rows,
            "elem_t": config.dtype, "acc_t": config.acc_dtype}
    labels = {"dim": "DIM", "spad_rows": "scratchpad rows", "acc_rows": "accumulator rows",
              "elem_t": "elem_t", "acc_t": "acc_t"}
    return [f"{labels[k]} {params[k]} in the header, {want[k]} in the configuration"
            for k in want if params.get(k) != want[k]]


# ---- finding the tools -----------------------------------------------------------------------
def find_sdk(sdk=None) -> Path:
    candidates = [("--gemmini-sdk", sdk), (f"${SDK_ENV}", os.environ.get(SDK_ENV)),
                  ("the shared folder", SHARED / "sdk")]
    for origin, path in candidates:
        if not path:
            continue
        path = Path(path)
        if (path / "include" / "gemmini.h").is_file():
            return path
        if origin != "the shared folder":
            raise ToolchainMissing(f"{origin} {path} has no include/gemmini.h; expected a "
                                   "gemmini-rocc-tests checkout or gemmini-spike/sdk")
    raise ToolchainMissing(f"Gemmini's SDK was not found: pass --gemmini-sdk DIR or set "
                           f"${SDK_ENV} (a gemmini-rocc-tests checkout), or put gemmini-spike "
                           f"at {SHARED}")


def find_spike(spike=None) -> Path:
    if spike:
        path = Path(spike)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise ToolchainMissing(f"--spike {spike} is not an executable file")
        return path
    found = shutil.which("spike")
    if found:
        return Path(found)
    shared = SHARED / "bin" / "spike"
    if shared.is_file():
        return shared
    raise ToolchainMissing("spike was not found: put Spike built with libgemmini on PATH or "
                           f"pass --spike PATH (or put gemmini-spike at {SHARED})")


def find_cross_compiler() -> Path:
    name = os.environ.get(CC_ENV, CROSS_CC)
    found = shutil.which(name)
    if not found:
        raise ToolchainMissing(f"the RISC-V cross compiler {name} was not found ({INSTALL_HINT}, "
                               f"or set ${CC_ENV})")
    return Path(found)


def find_toolchain(sdk=None, spike=None) -> Toolchain:
    """The SDK, Spike and the cross compiler; ToolchainMissing names what is missing."""
    return Toolchain(find_sdk(sdk), find_spike(spike), find_cross_compiler())


def available(sdk=None, spike=None) -> Optional[str]:
    """None when Spike and its toolchain are usable, else why not (for skipping tests)."""
    try:
        find_toolchain(sdk, spike)
    except ToolchainMissing as err:
        return str(err)
    return None
