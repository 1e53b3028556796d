"""The examples run as scripts and write only into the folder they are given."""

import runpy
import sys
from pathlib import Path

import pytest

pytest.importorskip("tvm")

ROOT = Path(__file__).resolve().parent.parent


def test_bert_example_writes_its_report_into_its_folder(tmp_path, monkeypatch, capsys):
    work, out = tmp_path / "cwd", tmp_path / "reports"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("TVM_COSA_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(sys, "argv", ["compile_bert_encoder.py", "--layers", "1", "--seq-len",
                                      "8", "--out-dir", str(out)])
    with pytest.raises(SystemExit) as done:
        runpy.run_path(str(ROOT / "examples" / "compile_bert_encoder.py"), run_name="__main__")
    printed = capsys.readouterr().out
    assert done.value.code == 0, printed
    assert (out / "report.json").is_file() and (out / "report.csv").is_file()
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "tvm_cosa[plot]" in printed
    else:
        assert (out / "cycles.png").stat().st_size > 0
    assert list(work.iterdir()) == []  # nothing in the working directory
