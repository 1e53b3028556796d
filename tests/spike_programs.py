"""One C program, two Gemminis: build a gemmini.h program for Spike + libgemmini (Gemmini's own
functional simulator, ../shared/gemmini-spike) and natively against tvm_cosa's functional model,
run both, return what each printed. Tests skip when Spike or the cross compiler is missing.

The program may use GEMMINI_CONFIG_LD(stride_bytes, id) (an unscaled mvin stride);
TVM_COSA_MODEL is defined in the native build. What it prints between the lines
BEGIN and END is returned (Spike adds its own banner).
"""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _spike_dir() -> Path:
    """$GEMMINI_SPIKE, else shared/gemmini-spike beside the repository (CI) or beside one of
    its parent folders (a worktree)."""
    if os.environ.get("GEMMINI_SPIKE"):
        return Path(os.environ["GEMMINI_SPIKE"])
    for folder in REPO.parents:
        if (folder / "shared" / "gemmini-spike").is_dir():
            return folder / "shared" / "gemmini-spike"
    return REPO.parent / "shared" / "gemmini-spike"


SPIKE_DIR = _spike_dir()

PRELUDE = """\
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#ifdef TVM_COSA_MODEL
#include "gemmini.h"
#else
#include "include/gemmini.h"
#endif
#define GEMMINI_CONFIG_LD(stride, id) gemmini_extended3_config_ld(stride, MVIN_SCALE_IDENTITY, 0, id)
"""


def spike_available() -> bool:
    return (SPIKE_DIR / "bin" / "spike").exists() and shutil.which("riscv64-unknown-elf-gcc")


needs_spike = pytest.mark.skipif(not spike_available(),
                                 reason="needs ../shared/gemmini-spike and riscv64-unknown-elf-gcc")


def run_on_spike(source: str, folder: Path) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "prog.c").write_text(PRELUDE + source)
    subprocess.run([str(SPIKE_DIR / "bin" / "gemmini-cc"), str(folder / "prog.c"), "-o",
                    str(folder / "prog.riscv")], check=True, capture_output=True)
    done = subprocess.run([str(SPIKE_DIR / "bin" / "spike"), "--extension=gemmini",
                           str(folder / "prog.riscv")], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return _printed(done.stdout)


def run_on_model(source: str, folder: Path, config) -> str:
    from tvm_cosa.target.gemmini.functional import source_dir

    folder.mkdir(parents=True, exist_ok=True)
    src = source_dir(config)
    (folder / "prog.c").write_text("#define TVM_COSA_MODEL 1\n" + PRELUDE + source)
    subprocess.run(["gcc", "-std=gnu99", "-O1", "-I", str(src), str(folder / "prog.c"),
                    str(src / "gemmini_func.c"), "-o", str(folder / "prog")], check=True,
                   capture_output=True)
    done = subprocess.run([str(folder / "prog")], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return _printed(done.stdout)


def c_array(name: str, ctype: str, values) -> str:
    flat = ", ".join(str(int(v)) for v in values.reshape(-1))
    dims = "".join(f"[{n}]" for n in values.shape)
    return f"static {ctype} {name}{dims} = {{{flat}}};\n"


def _printed(stdout: str) -> str:
    lines = stdout.splitlines()
    assert "BEGIN" in lines and "END" in lines, stdout[-2000:]
    return "\n".join(lines[lines.index("BEGIN") + 1:lines.index("END")])
