"""The module CoSAPass returns for Gemmini under TVM's standard build: `tvm.compile(mod,
target="llvm" | "c")` and `relax.VirtualMachine` run its Gemmini operators on the functional
model (linked in by the build), an exported library runs in a fresh process, modules of two
configurations live in one process, and what cannot run raises a Python error instead of
killing the process. Every scenario runs in a subprocess, so a crash fails the test instead of
pytest."""

import json
import re
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("tvm")

ROOT = Path(__file__).resolve().parents[1]

PRELUDE = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, {tests!r})
    import numpy as np, tvm
    from tvm import relax
    from gemmini_util import conv_module, conv_ref, matmul_module
    from tvm_cosa.relax import CoSAPass
    from tvm_cosa.target.gemmini import GemminiConfig, GemminiPrepare, flow
    from tvm_cosa.target.gemmini.functional import FunctionalModel

    def lowered(dtype):
        mod = conv_module((1, 8, 8, 16), (3, 3, 16, 32), dtype=dtype, pad=(1, 1, 1, 1))
        cosa = CoSAPass("gemmini", cache=False, jobs=1, check="builtin")
        mod = cosa(mod)
        assert cosa.report.records[0].lowering == "gemmini", cosa.report.table()
        return mod

    def operands(dtype, seed=0):
        rng = np.random.default_rng(seed)
        if dtype == "int8":
            return (rng.integers(-128, 128, (1, 8, 8, 16), dtype=np.int8),
                    rng.integers(-128, 128, (3, 3, 16, 32), dtype=np.int8))
        return (rng.standard_normal((1, 8, 8, 16)).astype("float32"),
                rng.standard_normal((3, 3, 16, 32)).astype("float32"))

    def error(vm, dtype):
        x, w = operands(dtype)
        out = vm["main"](tvm.runtime.tensor(x), tvm.runtime.tensor(w)).numpy()
        return float(np.abs(out - conv_ref(x, w, (1, 1), (1, 1, 1, 1))).max())
""").format(tests=str(ROOT / "tests"))


def run_python(code, tmp_path, timeout=600):
    script = tmp_path / "scenario.py"
    script.write_text(PRELUDE + textwrap.dedent(code))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TVM_COSA_CACHE": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=timeout, cwd=tmp_path, env=env)
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr[-3000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


@pytest.fixture(scope="module")
def standard_builds(tmp_path_factory):
    """One subprocess builds and runs every combination (a TVM import per process is slow)."""
    folder = tmp_path_factory.mktemp("standard-builds")
    result, stderr = run_python("""
        out = {}
        for target in ("llvm", "c"):
            ex = tvm.compile(lowered("float32"), target=target)
            out[target] = error(relax.VirtualMachine(ex, tvm.cpu()), "float32")
            ex.export_library(f"float32-{target}.so")  # self-contained
            model = FunctionalModel(GemminiConfig(dtype="float32"),
                                    library=f"float32-{target}.so")
            vm = relax.VirtualMachine(tvm.runtime.load_module(f"float32-{target}.so"), tvm.cpu())
            model.reset()
            out[target + " exported"] = error(vm, "float32")
            model.check()
            out[target + " macs"] = model.counters()["macs"]
        # two configurations in one process, and flow.load of an executable
        ex8 = tvm.compile(lowered("int8"), target="llvm")
        ex8.export_library("int8.so")
        ex32 = tvm.compile(lowered("float32"), target="llvm")
        vm8, vm32 = (relax.VirtualMachine(e, tvm.cpu()) for e in (ex8, ex32))
        runner = flow.load(ex32, GemminiConfig(dtype="float32"))  # links its own copy
        x, w = operands("float32")
        out["flow"] = float(np.abs(runner({"x": x, "w": w})[0]
                                   - conv_ref(x, w, (1, 1), (1, 1, 1, 1))).max())
        out["flow macs"] = runner.model.counters()["macs"]
        out["int8"], out["float32"] = error(vm8, "int8"), error(vm32, "float32")
        out["int8 again"] = error(vm8, "int8")
        # the README's example: GemminiPrepare + CoSAPass in a Sequential, then tvm.compile
        mod = conv_module((1, 8, 8, 3), (3, 3, 3, 8), dtype="float32", pad=(1, 1, 1, 1))
        cosa = CoSAPass("gemmini", cache=False, jobs=1, check="builtin")
        mod = tvm.transform.Sequential([GemminiPrepare("gemmini"), cosa])(mod)
        vm = relax.VirtualMachine(tvm.compile(mod, target="llvm"), tvm.cpu())
        rng = np.random.default_rng(1)
        x = rng.standard_normal((1, 8, 8, 3)).astype("float32")
        w = rng.standard_normal((3, 3, 3, 8)).astype("float32")
        got = vm["main"](tvm.runtime.tensor(x), tvm.runtime.tensor(w)).numpy()
        ref = conv_ref(x, w, (1, 1), (1, 1, 1, 1))
        out["prepared rel"] = float(np.abs(got - ref).max() / np.abs(ref).max())
        out["prepared lowering"] = cosa.report.records[0].lowering
        # last: the LLVM module JIT-compiled alone, without the Executable's link step
        try:
            error(relax.VirtualMachine(ex32.mod, tvm.cpu()), "float32")
            out["raw"] = "ran"
        except Exception as err:
            out["raw"] = type(err).__name__ + ": " + str(err)
        print(json.dumps(out))
    """, folder)
    return result, stderr, folder


@pytest.mark.parametrize("target", ["llvm", "c"])
def test_tvm_compile_and_the_vm_run_gemmini_operators_on_the_functional_model(
        target, standard_builds):
    result, _, _ = standard_builds
    assert result[target] < 1e-3 and result[target + " exported"] < 1e-3
    assert result[target + " macs"] == 8 * 8 * 16 * 32 * 9  # the conv ran on the model's array


def test_a_prepared_module_runs_through_the_standard_build(standard_builds):
    result, _, _ = standard_builds
    assert result["prepared lowering"] == "gemmini" and result["prepared rel"] < 1e-5


def test_modules_of_two_configurations_run_in_one_process(standard_builds):
    """Each built module calls its own copy of the model (protected symbols), so an int8 and a
    float32 module, and a flow.load of the same executable, do not mix."""
    result, _, _ = standard_builds
    assert result["int8"] == 0 and result["int8 again"] == 0  # int8 x int8 -> int32: exact
    assert result["float32"] < 1e-3 and result["flow"] < 1e-3
    assert result["flow macs"] == 8 * 8 * 16 * 32 * 9


def test_the_llvm_module_jitted_without_the_model_raises_with_a_hint(standard_builds):
    """relax.VirtualMachine(ex.mod, ...) skips the Executable's link step: the JIT used to die
    on the missing Gemmini symbols (segfault); now the guard library answers them."""
    result, stderr, _ = standard_builds
    assert result["raw"].startswith(("RuntimeError", "TVMError", "InternalError"))
    assert "Gemmini functional model" in result["raw"]
    assert "JIT-compiled without the functional model" in stderr
    assert "relax.VirtualMachine(tvm.compile(mod" in stderr


def test_an_exported_library_runs_in_a_fresh_process(standard_builds):
    _, _, folder = standard_builds
    result, _ = run_python("""
        vm = relax.VirtualMachine(tvm.runtime.load_module("int8.so"), tvm.cpu())
        print(json.dumps({"err": error(vm, "int8")}))
    """, folder)
    assert result["err"] == 0


def test_the_guard_library_defines_every_command_the_lowering_emits():
    """Each gemmini.h command the lowering can issue (isa.COMMANDS) has a refusing stand-in in
    the guard library, so a module JIT-compiled without its model never meets a missing symbol
    (LLVM's JIT kills the process on one)."""
    import re

    from tvm_cosa.target.gemmini import isa
    from tvm_cosa.target.gemmini.functional import RUNTIME_DIR

    source = (RUNTIME_DIR / "gemmini_guard.c").read_text()
    defined = set(re.findall(r"^int32_t (\w+)\(", source, re.M))
    defined |= set(re.findall(r"^(?:MOVE|SIX)\((\w+)\)", source, re.M))
    assert set(isa.COMMANDS) <= defined, sorted(set(isa.COMMANDS) - defined)


def test_generated_c_declares_the_commands_unless_a_gemmini_h_is_included():
    from tvm_cosa.target.gemmini import isa

    text = isa.declarations()
    assert text.startswith("#if !defined(TVM_COSA_GEMMINI_H) && !defined(SRC_MAIN_C_GEMMINI_H)")
    for name in isa.COMMANDS:
        assert re.search(rf"\b{name}\(", text), name
    assert 'extern "C"' in text  # TVM's export compiles the C with g++
