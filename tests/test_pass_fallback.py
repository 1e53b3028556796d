"""A layer that cannot be scheduled keeps TVM's default schedule, is marked `fallback` with the
reason, raises a FallbackWarning, and the compiled model still computes the right numbers."""

import dataclasses

import pytest

tvm = pytest.importorskip("tvm")

import tvm_cosa  # noqa: E402
from tvm_cosa import InfeasibleError, SolverError  # noqa: E402
from tvm_cosa.models import input_feed, tiny_cnn  # noqa: E402
from tvm_cosa.relax import CoSAPass, FallbackWarning  # noqa: E402
from tvm_cosa.relax import pass_ as pass_module  # noqa: E402
from tvm_cosa.relax.frontend import (build, import_onnx, max_rel_error,  # noqa: E402
                                     run_onnxruntime, run_tvm)
from tvm_cosa.relax.lowering import LoweringError  # noqa: E402


@pytest.fixture(scope="module")
def model():
    return tiny_cnn()


def compile_with(model, arch, tmp_path, **options):
    cosa = CoSAPass(arch, cache=tmp_path / "cache", jobs=1, **options)
    out = cosa(import_onnx(model))
    feed = input_feed(model)
    err = max_rel_error(run_tvm(build(out), feed), run_onnxruntime(model, feed))
    return cosa.report, out, err


def scheduled_names(mod):
    return {gv.name_hint for gv, f in mod.functions.items()
            if isinstance(f, tvm.tirx.PrimFunc) and f.attrs is not None
            and "tirx.is_scheduled" in f.attrs}


def test_infeasible_architecture_keeps_every_default_schedule(model, tmp_path):
    simba = tvm_cosa.preset("simba")
    levels = list(simba.levels)
    levels[0] = dataclasses.replace(levels[0], entries=0)  # weight registers of no capacity
    broken = dataclasses.replace(simba, levels=tuple(levels), name="simba-no-registers")
    with pytest.warns(FallbackWarning, match="infeasible"):
        report, out, err = compile_with(model, broken, tmp_path)
    assert {r.status for r in report.records} == {"fallback"}
    assert all(r.reason.startswith("infeasible: ") and "Registers" in r.reason
               for r in report.records)
    assert not scheduled_names(out)
    assert err <= 1e-4  # TVM's default schedule still computes the model


def test_one_failing_layer_does_not_stop_the_others(model, tmp_path, monkeypatch):
    real = tvm_cosa.scheduler.schedule

    def fail_grouped(problem, arch, **kw):
        if problem.size.get("G", 1) == 4:
            raise InfeasibleError("no room for 4 groups (test)")
        if problem.kind == "matmul":
            raise SolverError("solver crashed (test)")
        return real(problem, arch, **kw)

    monkeypatch.setattr(tvm_cosa.scheduler, "schedule", fail_grouped)
    with pytest.warns(FallbackWarning) as warned:
        report, out, err = compile_with(model, "simba", tmp_path)
    status = {r.op + (" g" if "g4" in r.shape else ""): r for r in report.records}
    assert status["conv2d g"].status == "fallback"
    assert status["conv2d g"].reason == "infeasible: no room for 4 groups (test)"
    assert status["matmul"].status == "fallback"
    assert status["matmul"].reason == "solver failure: solver crashed (test)"
    assert sum(r.status == "scheduled" for r in report.records) == 4
    assert len(scheduled_names(out)) == 4 and len(warned) == 2
    assert err <= 1e-4


def test_check_failure_falls_back(model, tmp_path):
    from tvm_cosa.timeloop.runner import find_timeloop

    if find_timeloop(None) is not None:
        pytest.skip("Timeloop is installed: the timeloop check would pass")
    with pytest.warns(FallbackWarning, match="check failure"):
        report, out, err = compile_with(model, "simba", tmp_path, check="timeloop")
    assert {r.status for r in report.records} == {"fallback"}
    assert all("TimeloopError" in r.reason for r in report.records)
    assert all(r.schedule for r in report.records)  # solved, but not trusted unchecked
    assert not scheduled_names(out) and err <= 1e-4


def test_lowering_failure_falls_back_for_that_layer_only(model, tmp_path, monkeypatch):
    real = pass_module.lower_generic

    def fail_depthwise(prim_func, op, mapping, arch):
        if op.groups == 16:
            raise LoweringError("cannot tile a depthwise layer (test)")
        return real(prim_func, op, mapping, arch)

    monkeypatch.setattr(pass_module, "lower_generic", fail_depthwise)
    with pytest.warns(FallbackWarning, match="lowering failure"):
        report, out, err = compile_with(model, "simba", tmp_path)
    (dw,) = [r for r in report.records if "g16" in r.shape]
    assert dw.status == "fallback" and "cannot tile a depthwise layer" in dw.reason
    assert dw.cycles is not None  # it was solved and checked; only the lowering failed
    assert sum(r.status == "scheduled" for r in report.records) == 5
    assert len(scheduled_names(out)) == 5 and err <= 1e-4


def test_a_schedule_that_does_not_build_falls_back(model, tmp_path, monkeypatch):
    real_compile = tvm.compile
    calls = []

    def compile_refusing_groups(mod, target=None, **kw):
        calls.append(mod)
        funcs = [f for f in mod.functions.values() if isinstance(f, tvm.tirx.PrimFunc)]
        if len(funcs) == 1 and "grouped_conv2d" in funcs[0].script():
            raise tvm.error.InternalError("codegen failed (test)")
        return real_compile(mod, target=target, **kw)

    cosa = CoSAPass("simba", cache=tmp_path, jobs=1)
    with monkeypatch.context() as patch:
        patch.setattr(tvm, "compile", compile_refusing_groups)
        with pytest.warns(FallbackWarning, match="llvm build failed"):
            out = cosa(import_onnx(model))
    grouped = [r for r in cosa.report.records if " g" in r.shape]
    assert len(grouped) == 2 and all(r.status == "fallback" for r in grouped)
    assert all("codegen failed (test)" in r.reason for r in grouped)
    assert len(scheduled_names(out)) == 4 and len(calls) == 6
    feed = input_feed(model)
    assert max_rel_error(run_tvm(build(out), feed), run_onnxruntime(model, feed)) <= 1e-4

    # the four functions that built are remembered: a second compile builds none of them
    calls.clear()
    with monkeypatch.context() as patch:
        patch.setattr(tvm, "compile", compile_refusing_groups)
        with pytest.warns(FallbackWarning):
            CoSAPass("simba", cache=tmp_path, jobs=1)(import_onnx(model))
    assert len(calls) == 2  # only the two that failed are tried again
