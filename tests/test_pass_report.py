"""The per-layer report: table, JSON, CSV, plot; and `tvm-cosa compile` printing it."""

import csv
import json

import pytest

tvm = pytest.importorskip("tvm")

from click.testing import CliRunner  # noqa: E402

from tvm_cosa.cli import main  # noqa: E402
from tvm_cosa.models import tiny_cnn  # noqa: E402
from tvm_cosa.relax import CoSAPass, LayerRecord, Report  # noqa: E402
from tvm_cosa.relax.frontend import import_onnx  # noqa: E402


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    cosa = CoSAPass("simba", cache=tmp_path_factory.mktemp("cache"), lower=False)
    cosa(import_onnx(tiny_cnn()))
    rep = cosa.report
    rep.records.append(LayerRecord(index=6, op="matmul", shape="8x8x8", status="fallback",
                                   reason="infeasible: no room (test)", lower_bound_cycles=10))
    rep.records.append(LayerRecord(index=7, op="conv2d_transpose", shape="1x4x6x6",
                                   status="unsupported", reason="conv2d_transpose is not "
                                   "scheduled by CoSAPass (only conv2d and matmul)"))
    return rep


def test_records_have_the_issue_fields(report):
    for r in report.records[:6]:
        assert r.status == "scheduled" and r.reason == ""
        assert r.cycles > 0 and r.solve_time_s >= 0 and r.shape and r.op
        assert r.energy_pJ > 0 and 0 < r.utilization <= 1 and r.check_backend
        assert r.solver in ("highs", "gurobi") and r.schedule.count(":") >= 1


def test_table_lists_every_operator_and_the_summary(report):
    text = report.table()
    lines = text.splitlines()
    assert lines[0].split()[:5] == ["#", "op", "shape", "dtype", "status"]
    body = lines[2:2 + len(report.records)]
    assert [line.split()[0] for line in body] == [str(r.index) for r in report.records]
    assert "infeasible: no room (test)" in body[6] and "fallback" in body[6]
    assert "unsupported" in body[7]
    assert "8 operators on simba: 6 scheduled, 1 fallback, 1 unsupported" in text
    assert str(report) == text


def test_json_round_trip(report, tmp_path):
    path = report.to_json(tmp_path / "report.json")
    data = json.loads(path.read_text())
    assert data["arch"] == "simba" and len(data["layers"]) == 8
    again = Report.from_json(path)
    assert again.records == report.records and again.summary() == report.summary()


def test_csv_has_one_row_per_operator(report, tmp_path):
    path = report.to_csv(tmp_path / "report.csv")
    rows = list(csv.DictReader(path.open()))
    assert len(rows) == 8 and rows[6]["status"] == "fallback"
    assert {"op", "shape", "status", "reason", "cycles", "solve_time_s"} <= set(rows[0])
    assert float(rows[0]["cycles"]) == report.records[0].cycles


def test_plot_has_cycles_and_lower_bounds(report, tmp_path):
    fig = report.plot(tmp_path / "plot.png")
    assert (tmp_path / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ax = fig.axes[0]
    bars = [p.get_height() for p in ax.patches]
    assert bars[:6] == [r.cycles for r in report.records[:6]]
    assert ax.get_yscale() == "log"
    bounds = ax.collections[0].get_offsets()[:, 1]
    assert list(bounds[:6]) == [r.lower_bound_cycles for r in report.records[:6]]


def test_cli_compile_prints_the_report_and_verifies(tmp_path):
    import onnx

    model = tmp_path / "tiny.onnx"
    onnx.save(tiny_cnn(), str(model))
    out = tmp_path / "out"
    out.mkdir()
    result = CliRunner().invoke(main, [
        "compile", str(model), "--arch", "gemmini", "--cache", str(tmp_path / "cache"),
        "--report", str(out / "r.json"), "--csv", str(out / "r.csv"),
        "--plot", str(out / "r.png"), "--verify"])
    assert result.exit_code == 0, result.output
    # a float32 model: the preset's geometry with float32 operands, prepared and on the array
    assert "6 operators on gemmini-float32: 6 scheduled" in result.output
    assert "built with the c target and gcc against the functional model" in result.output
    total = [line for line in result.output.splitlines() if line.startswith("total")][0]
    assert total.split()[1] == "6"  # all six layers ran on the array, the depthwise one too
    assert "verify against onnxruntime: max relative error" in result.output
    assert result.output.rstrip().endswith("OK")
    data = json.loads((out / "r.json").read_text())
    assert [r["status"] for r in data["layers"]] == ["scheduled"] * 6
    assert [r["lowering"] for r in data["layers"]] == ["gemmini"] * 6
    assert {(r["arch"], r["arch_dtype"]) for r in data["layers"]} == {("gemmini-float32",
                                                                       "float32")}
    assert (out / "r.png").stat().st_size > 0 and (out / "r.csv").stat().st_size > 0
    again = CliRunner().invoke(main, ["compile", str(model), "--arch", "gemmini", "--cache",
                                      str(tmp_path / "cache"), "--no-build"])
    assert again.exit_code == 0 and "0 solved, 6 from the cache" in again.output


def test_cli_emit_c_writes_sources_for_gemmini_only(tmp_path):
    import onnx

    model = tmp_path / "tiny.onnx"
    onnx.save(tiny_cnn(), str(model))
    result = CliRunner().invoke(main, ["compile", str(model), "--arch", "gemmini", "--no-cache",
                                       "--no-build", "--emit-c", str(tmp_path / "c")])
    assert result.exit_code == 0, result.output
    written = {p.name for p in (tmp_path / "c").iterdir()}
    assert {"Makefile", "gemmini_func.c", "gemmini.h"} <= written
    assert any(name.endswith(".c") and name != "gemmini_func.c" for name in written)
    # the float32 model is compiled for, and its C linked against, the float32 configuration
    assert "typedef float elem_t;" in (tmp_path / "c" / "gemmini_params.h").read_text()
    assert "gemmini-float32" in result.output
    sources = [p.read_text() for p in (tmp_path / "c").glob("lib*.c")]
    assert any("gemmini_extended_preload(" in text for text in sources)
    refused = CliRunner().invoke(main, ["compile", str(model), "--arch", "simba", "--emit-c",
                                        str(tmp_path / "c2")])
    assert refused.exit_code != 0 and "not a Gemmini architecture" in refused.output
