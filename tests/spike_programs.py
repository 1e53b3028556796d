"""One C program, two Gemminis: build a gemmini.h program for Spike + libgemmini (Gemmini's own
functional simulator, ../shared/gemmini-spike) and natively against tvm_cosa's functional model,
run both, return what each printed. Tests skip when Spike or the cross compiler is missing.

The program may use GEMMINI_CONFIG_LD(stride_bytes, id) (an unscaled mvin stride);
TVM_COSA_MODEL is defined in the native build. What it prints between the lines
BEGIN and END is returned (Spike adds its own banner).
"""

import subprocess
from pathlib import Path

import pytest


def _spike_dir():
    """The gemmini-spike folder (bin/spike, bin/gemmini-cc, sdk/) of the SDK that
    target/gemmini/sdk.py finds (--gemmini-sdk / $GEMMINI_ROCC_TESTS / ../shared), or None."""
    from tvm_cosa.target.gemmini import sdk

    if sdk.available() is not None:
        return None
    folder = sdk.find_sdk().parent
    return folder if (folder / "bin" / "gemmini-cc").exists() else None


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
#define GEMMINI_CONFIG_LD(stride, id) \\
  gemmini_extended3_config_ld(stride, MVIN_SCALE_IDENTITY, 0, id)
"""


needs_spike = pytest.mark.skipif(SPIKE_DIR is None, reason="needs gemmini-spike (Spike, SDK, "
                                 "gemmini-cc) and riscv64-unknown-elf-gcc")


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


def lowered_layer_on_spike(mod, config, seed=0):
    """Compile a one-layer int8 module for `config` (CoSA's schedule), run it on the functional
    model with seeded inputs, then its Gemmini operator on Spike (target/gemmini/spike.py):
    (the Spike result, the lowering's note on loop_ws)."""
    import numpy as np

    from tvm_cosa.target.gemmini import flow, spike
    from tvm_cosa.target.gemmini.lowering import OP_REGISTRY

    compiled = flow.compile_module(mod, config, cache=False, jobs=1, check="builtin")
    assert [r.lowering for r in compiled.report.records] == ["gemmini"], \
        flow.placement(compiled.report)
    runner = flow.load(compiled.mod, compiled.config)
    rng = np.random.default_rng(seed)
    feed = {p.name: rng.integers(-128, 128, [int(d) for d in p.ty.shape], dtype=np.int8)
            for p in compiled.mod["main"].params}
    operators = spike.capture(runner, compiled.mod, feed)
    (result,) = spike.run_on_spike(operators, compiled.config, jobs=1)
    (func,) = [f for f in compiled.mod.functions.values()
               if "gemmini.op_id" in (getattr(f, "attrs", None) or {})]
    return result, OP_REGISTRY[int(func.attrs["gemmini.op_id"])]["loop_ws"]
