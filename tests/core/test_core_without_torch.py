"""The framework-neutral core imports and works with torch made unimportable."""

import pkgutil
import subprocess
import sys
import textwrap
from pathlib import Path

import fastso3.core

BLOCK_TORCH = textwrap.dedent(
    """
    import importlib.abc
    import sys

    attempts = []

    class BlockTorch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                attempts.append(name)
                raise ImportError(f"{name} is blocked in this test")
            return None

    sys.meta_path.insert(0, BlockTorch())
    """
)

CHECK_NO_TORCH = textwrap.dedent(
    """
    assert not attempts, f"torch was imported: {attempts}"
    loaded = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
    assert not loaded, loaded
    try:  # the blocker itself works
        import torch  # noqa: F401
    except ImportError:
        pass
    else:
        raise AssertionError("torch import was not blocked")
    print("CORE-OK")
    """
)


def _run(body: str) -> subprocess.CompletedProcess:
    code = BLOCK_TORCH + textwrap.dedent(body) + CHECK_NO_TORCH
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_irreps_and_cg_without_torch():
    result = _run(
        """
        import numpy as np

        from fastso3.core import cg
        from fastso3.core.irreps import Irrep, Irreps, MulIr

        x = Irreps("16x0e + 8x1o + 4x2e") + Irrep("1e")
        assert x.dim == 16 + 24 + 20 + 3 and x.num_irreps == 29 and x.lmax == 2
        assert repr(x.regroup()) == "16x0e+8x1o+1x1e+4x2e"
        assert x.sort().inv == (0, 1, 3, 2)
        assert list(Irrep("1o") * Irrep("1o")) == [(0, 1), (1, 1), (2, 1)]
        assert x.filter(keep="1o + 1e") == "8x1o+1x1e"
        assert x.slice_by_mul[10:20] == "6x0e+4x1o"
        assert MulIr(3, "2e").dim == 15
        assert Irreps.spherical_harmonics(2) == "0e+1o+2e"

        C = cg.wigner_3j(1, 1, 2)
        assert C.shape == (3, 3, 5) and abs(np.linalg.norm(C) - 1) < 1e-14
        """
    )
    assert result.returncode == 0 and "CORE-OK" in result.stdout, result.stdout + result.stderr


def test_every_core_module_imports_without_torch():
    names = sorted(m.name for m in pkgutil.iter_modules([str(Path(fastso3.core.__file__).parent)]))
    assert "irreps" in names and "cg" in names
    imports = "\n".join(f"import fastso3.core.{name}" for name in names)
    result = _run(imports)
    assert result.returncode == 0 and "CORE-OK" in result.stdout, (names, result.stdout + result.stderr)


def test_blocker_detects_a_torch_import():
    # The harness can fail: even an attempt whose ImportError is swallowed is reported.
    result = _run(
        """
        try:
            import torch.linalg  # noqa: F401
        except ImportError:
            pass
        """
    )
    assert result.returncode != 0 and "torch was imported" in result.stderr, result.stdout + result.stderr
