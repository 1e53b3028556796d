"""Bad arguments to CoSAPass and to `tvm-cosa compile` give a clear error naming the argument."""

import pytest

tvm = pytest.importorskip("tvm")

from click.testing import CliRunner  # noqa: E402

import tvm_cosa  # noqa: E402
from tvm_cosa import InputError  # noqa: E402
from tvm_cosa.cli import main  # noqa: E402
from tvm_cosa.relax import CoSAPass  # noqa: E402
from tvm_cosa.relax.frontend import compile_model, import_onnx, input_shapes  # noqa: E402
from tvm_cosa.models import tiny_cnn  # noqa: E402


@pytest.mark.parametrize("kwargs, field", [
    ({"arch": 16}, "arch"),
    ({"arch": "no-such-arch"}, "no-such-arch"),
    ({"arch": "/nonexistent/arch.yaml"}, "arch.yaml"),
    ({"arch": "simba", "solver": "cplex"}, "solver"),
    ({"arch": "simba", "solver": None}, "solver"),
    ({"arch": "simba", "check": "spice"}, "check"),
    ({"arch": "simba", "jobs": 0}, "jobs"),
    ({"arch": "simba", "jobs": 1.5}, "jobs"),
    ({"arch": "simba", "cache": 3}, "cache"),
    ({"arch": "simba", "objective": "latency"}, "objective"),
    ({"arch": "simba", "time_limit": -1}, "time_limit"),
    ({"arch": "simba", "polish": "no"}, "polish"),
])
def test_bad_pass_arguments_raise_input_errors(kwargs, field):
    with pytest.raises(InputError, match=field):
        CoSAPass(**kwargs)


def test_cache_path_that_is_a_file(tmp_path):
    file = tmp_path / "cache"
    file.write_text("")
    with pytest.raises(InputError, match="is a file"):
        CoSAPass("simba", cache=file)


def test_good_arguments_are_kept(tmp_path):
    arch = tvm_cosa.preset("gemmini")
    cosa = CoSAPass(arch, solver="highs", check="builtin", cache=tmp_path, jobs=3, lower=False)
    assert cosa.arch is arch and cosa.solver == "highs" and cosa.jobs == 3
    assert cosa.cache.path == tmp_path and cosa.report is None


def test_layout_and_input_shape_errors():
    model = tiny_cnn()
    with pytest.raises(InputError, match="layout"):
        compile_model(import_onnx(model), "simba", layout="NCWH", cache=False)
    with pytest.raises(InputError, match="no input named images"):
        input_shapes(model, {"images": (1, 3, 8, 8)})


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    import onnx

    path = tmp_path_factory.mktemp("model") / "tiny.onnx"
    onnx.save(tiny_cnn(), str(path))
    return path


@pytest.mark.parametrize("args, message", [
    (["compile", "missing.onnx", "--arch", "simba"], "does not exist"),
    (["compile", "{model}", "--arch", "nope"], "nope"),
    (["compile", "{model}", "--arch", "simba", "--input-shape", "input=1,x"], "NAME=D1,D2"),
    (["compile", "{model}", "--arch", "simba", "--input-shape", "pixels=1,3,8,8"],
     "no input named pixels"),
    (["compile", "{model}", "--arch", "simba", "--jobs", "0"], "--jobs"),
    (["compile", "{model}"], "--arch"),
    (["compile", "{model}", "--arch", "simba", "--dtype", "int8"], "not a Gemmini architecture"),
    (["compile", "{model}", "--arch", "gemmini", "--layout", "NCHW"], "NHWC"),
    (["compile", "{model}", "--arch", "gemmini", "--dtype", "int4"], "--dtype"),
])
def test_cli_bad_inputs(args, message, model_file):
    result = CliRunner().invoke(main, [a.format(model=model_file) for a in args])
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output


def test_cli_not_an_onnx_file(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00 not a protobuf \xff" * 10)
    result = CliRunner().invoke(main, ["compile", str(bad), "--arch", "simba"])
    assert result.exit_code != 0 and "not a readable ONNX model" in result.output


# ---- the exit status says whether the compile did what was asked ------------------------------
def test_cli_missing_solver_exits_non_zero_before_any_work(model_file, monkeypatch):
    import tvm_cosa.solvers as solvers

    monkeypatch.setattr(solvers, "available_solvers", lambda: ["highs"])
    result = CliRunner().invoke(main, ["compile", str(model_file), "--arch", "simba",
                                       "--solver", "gurobi", "--no-cache"])
    assert result.exit_code == 1
    assert "--solver gurobi" in result.output and "use --solver highs" in result.output
    assert "solver=" not in result.output and "Traceback" not in result.output


def test_cli_timeloop_check_without_timeloop_names_the_option(model_file, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("TIMELOOP_DIR", raising=False)
    result = CliRunner().invoke(main, ["compile", str(model_file), "--arch", "simba",
                                       "--check", "timeloop", "--no-cache"])
    assert result.exit_code == 1
    assert "use --check builtin" in result.output and "backend=" not in result.output


def test_cli_no_layer_scheduled_exits_non_zero_with_one_summary(model_file, monkeypatch):
    import tvm_cosa.scheduler
    from tvm_cosa.errors import InfeasibleError

    def refuse(problem, arch, **kw):
        raise InfeasibleError("buffer too small (test)")

    monkeypatch.setattr(tvm_cosa.scheduler, "schedule", refuse)
    result = CliRunner().invoke(main, ["compile", str(model_file), "--arch", "simba",
                                       "--no-cache", "--jobs", "1", "--no-build"])
    assert result.exit_code == 1
    records = [line for line in result.output.splitlines() if "buffer too small" in line]
    # the summary: one line for the reason, listing every layer; no Python warning text
    assert any("keep TVM's default schedule" in line for line in result.output.splitlines())
    assert any(line.lstrip().startswith("#") and "infeasible: buffer too small" in line
               for line in records)
    assert "FallbackWarning" not in result.output and "warnings.warn" not in result.output
    assert "none of the model's" in result.output


def test_cli_some_layers_falling_back_still_succeeds(model_file, monkeypatch):
    import tvm_cosa.scheduler
    from tvm_cosa.errors import InfeasibleError

    real = tvm_cosa.scheduler.schedule

    def refuse_matmul(problem, arch, **kw):
        if problem.kind == "matmul":
            raise InfeasibleError("no room (test)")
        return real(problem, arch, **kw)

    monkeypatch.setattr(tvm_cosa.scheduler, "schedule", refuse_matmul)
    result = CliRunner().invoke(main, ["compile", str(model_file), "--arch", "simba",
                                       "--no-cache", "--jobs", "1", "--no-build"])
    assert result.exit_code == 0, result.output
    assert "keep TVM's default schedule" in result.output and "no room (test)" in result.output


def test_cli_cosa_arch_without_its_mapspace_says_so(model_file):
    from pathlib import Path

    arch = Path(__file__).parent / "data" / "arch" / "simba.yaml"
    result = CliRunner().invoke(main, ["compile", str(model_file), "--arch", str(arch),
                                       "--no-cache", "--jobs", "1", "--no-build"])
    assert result.exit_code == 1
    assert "give its bypass file with --mapspace FILE" in result.output
    assert "Traceback" not in result.output
