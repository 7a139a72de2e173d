"""The e3nn drop-in switch (fastso3.compat.alias_e3nn, python -m fastso3.as_e3nn): e3nn names resolve to the
fastso3 module objects, missing names fail loudly, the real e3nn is refused once imported, scripts run with
their arguments, and programs written for e3nn (its convolution tutorial, mace-torch 0.3.16 MACE models)
give the numbers they give on e3nn 0.6.0. Each case runs in a subprocess: the hook changes its process."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

SCRIPTS = Path(__file__).parent / "e3nn_scripts"


def run(*args: str, cwd: Path, code: int = 0) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=600)
    assert done.returncode == code, f"exit {done.returncode}, expected {code}\n{done.stdout}\n{done.stderr}"
    return done


def run_code(code: str, tmp_path: Path) -> str:
    return run("-c", textwrap.dedent(code), cwd=tmp_path).stdout


def test_e3nn_names_are_the_fastso3_modules_and_missing_names_fail_loudly(tmp_path):
    out = run_code(
        """
        import sys, pytest
        from fastso3.compat import alias_e3nn
        alias_e3nn()
        alias_e3nn()  # idempotent
        import e3nn
        from e3nn import o3, nn, math
        from e3nn.util.test import assert_equivariant
        from e3nn.util import jit, prod
        import e3nn.o3._linear
        import fastso3, fastso3.o3, fastso3.nn, fastso3.math, fastso3.testing, fastso3.util.jit
        assert e3nn.__version__ == "0.6.0"
        assert e3nn.get_optimization_defaults() == fastso3.util.get_optimization_defaults()
        assert (o3, nn, math, jit) == (fastso3.o3, fastso3.nn, fastso3.math, fastso3.util.jit)
        assert sys.modules["e3nn.util.test"] is fastso3.testing and assert_equivariant is fastso3.testing.assert_equivariant
        assert e3nn.o3._linear is sys.modules["fastso3.o3._linear"] and e3nn.o3 is e3nn.o3  # attribute access too
        assert prod([2, 3]) == 6 and e3nn.util.test is fastso3.testing
        assert isinstance(fastso3.o3.Linear("1x0e", "1x0e"), o3.Linear)
        assert o3.__spec__.name == "fastso3.o3" and o3.__name__ == "fastso3.o3"  # its own spec, not the alias's
        for name in ["e3nn.no_such_module", "e3nn.o3._no_such_module", "e3nn.util.no_such_module"]:
            with pytest.raises(ModuleNotFoundError, match="fastso3 does not provide " + name.replace(".", "\\\\.")):
                __import__(name)
        with pytest.raises(ImportError, match="NoSuchName"):
            from e3nn.o3 import NoSuchName
        for module, name in [(o3, "NoSuchName"), (e3nn, "no_such_name"), (e3nn.util, "no_such_name")]:
            with pytest.raises(AttributeError, match=name):
                getattr(module, name)
        print("ok")
        """,
        tmp_path,
    )
    assert out.strip().endswith("ok")


def test_refuses_once_the_real_e3nn_is_imported(tmp_path):
    out = run_code(
        """
        import e3nn
        from fastso3.compat import alias_e3nn
        from fastso3.compat_e3nn import E3nnAlreadyImported
        try:
            alias_e3nn()
        except E3nnAlreadyImported as err:
            assert isinstance(err, RuntimeError)
            print(err)
        """,
        tmp_path,
    )
    assert "the real e3nn is already imported (e3nn" in out and "before anything imports e3nn" in out


def test_as_e3nn_runs_a_script_and_a_module_with_their_arguments(tmp_path):
    program = """
        import sys, e3nn  # (not e3nn.o3: no torch import, to keep these three runs short)
        assert e3nn.__doc__.startswith("fastso3's stand-in")
        print(__name__, sys.argv, sys.path[0])
        sys.exit(3)
        """
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "prog.py").write_text(textwrap.dedent(program))
    out = run("-m", "fastso3.as_e3nn", "sub/prog.py", "a", "--b", cwd=tmp_path, code=3).stdout
    assert out.split() == ["__main__", "['sub/prog.py',", "'a',", "'--b']", str(tmp_path / "sub")]
    out = run("-m", "fastso3.as_e3nn", "-m", "sub.prog", "c", cwd=tmp_path, code=3).stdout
    assert out.split()[:3] == ["__main__", f"['{tmp_path / 'sub' / 'prog.py'}',", "'c']"]
    assert "usage" in run("-m", "fastso3.as_e3nn", cwd=tmp_path, code=2).stderr


@pytest.mark.e3nn
def test_the_convolution_tutorial_gives_e3nns_numbers(tmp_path):
    script = str(SCRIPTS / "tutorial_convolution.py")
    real = run(script, str(tmp_path / "real.pt"), cwd=tmp_path).stdout
    ours = run("-m", "fastso3.as_e3nn", script, str(tmp_path / "ours.pt"), cwd=tmp_path).stdout
    assert ours.splitlines()[-1] == "True"  # the tutorial's own equivariance check
    assert len(ours.splitlines()) == len(real.splitlines())
    theirs, mine = torch.load(tmp_path / "real.pt", weights_only=True), torch.load(tmp_path / "ours.pt", weights_only=True)
    assert mine["printed_irreps"] == theirs["printed_irreps"]
    for key in ("f_in", "sh", "weight", "summand", "f_out", "rot", "f_before", "f_after"):
        assert mine[key].dtype == torch.float64
        torch.testing.assert_close(mine[key], theirs[key], rtol=0, atol=1e-10 * theirs[key].abs().max().item())
    for key, value in theirs["fc"].items():  # FullyConnectedNet drew e3nn's initial weights
        assert torch.equal(mine["fc"][key], value), key


@pytest.mark.e3nn
@pytest.mark.slow
def test_mace_torch_models_give_e3nns_energies_and_forces(tmp_path):
    pytest.importorskip("mace")
    script, state = str(SCRIPTS / "mace_energies.py"), str(tmp_path / "state.pt")
    run(script, str(tmp_path / "real.pt"), state, cwd=tmp_path)
    run("-m", "fastso3.as_e3nn", script, str(tmp_path / "ours.pt"), state, cwd=tmp_path)
    theirs, mine = torch.load(tmp_path / "real.pt", weights_only=True), torch.load(tmp_path / "ours.pt", weights_only=True)
    assert mine.keys() == theirs.keys()
    for name, outputs in theirs.items():
        for run_kind in ("fresh", "loaded"):  # the same seed draws e3nn's parameters; e3nn's state dicts load
            for key in ("energy", "forces"):
                reference = outputs["fresh"][key]
                assert reference.dtype == torch.float64 and reference.abs().max() > 1e-3, (name, key)
                torch.testing.assert_close(mine[name][run_kind][key], reference, rtol=0, atol=1e-10 * reference.abs().max().item())
