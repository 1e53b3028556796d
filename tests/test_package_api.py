"""The package's top level: `from tvm_cosa import CoSAPass` works, and TVM stays optional."""

import subprocess
import sys

import pytest


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)


def test_importing_the_package_does_not_import_tvm():
    out = run_python("import sys, tvm_cosa; print('tvm' in sys.modules)")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_cosa_pass_from_the_top_level():
    pytest.importorskip("tvm")
    from tvm_cosa import CoSAPass
    from tvm_cosa.relax import CoSAPass as relax_cosa_pass

    assert CoSAPass is relax_cosa_pass
    assert CoSAPass("simba").arch.name == relax_cosa_pass("simba").arch.name


def test_cosa_pass_without_tvm_says_how_to_install_it():
    # sys.modules[name] = None makes `import name` fail as if it were not installed
    out = run_python("import sys; sys.modules['tvm'] = None\n"
                     "import tvm_cosa\n"
                     "try:\n"
                     "    tvm_cosa.CoSAPass\n"
                     "except ImportError as err:\n"
                     "    print(err)\n")
    assert out.returncode == 0, out.stderr
    assert "pip install 'tvm_cosa[tvm]'" in out.stdout


def test_unknown_attribute_is_an_attribute_error():
    import tvm_cosa

    with pytest.raises(AttributeError, match="no attribute 'Nonexistent'"):
        tvm_cosa.Nonexistent  # noqa: B018
