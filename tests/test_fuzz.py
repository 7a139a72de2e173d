"""The fuzz suite: each target of ``fuzz_targets.py`` in its own subprocess (a crash fails the test, not the run)."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

HERE = Path(__file__).parent
TARGETS = ["sparse_accumulate", "spherical_harmonics", "tensor_product_conv", "uvw_op", "modules", "graph", "so2_convolution"]


def run(args, examples=None, timeout=600):
    env = dict(os.environ)
    if examples is not None:
        env["FASTSO3_FUZZ_EXAMPLES"] = str(examples)
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=timeout, cwd=HERE.parent)
    assert proc.returncode == 0, f"exit code {proc.returncode} (negative: killed by a signal)\n{proc.stdout}\n{proc.stderr[-4000:]}"
    return proc.stdout


@pytest.mark.parametrize("target", TARGETS)
def test_fuzz(target):
    assert f"fuzz {target}: 40 examples passed" in run([str(HERE / "fuzz_targets.py"), target])


@pytest.mark.slow
@pytest.mark.parametrize("target", TARGETS)
def test_fuzz_large_profile(target):
    assert f"fuzz {target}: 400 examples passed" in run([str(HERE / "fuzz_targets.py"), target], examples=400)


@pytest.mark.compile
def test_compiled_ops_check_their_indices():
    # Under torch.compile the public functions' Python checks are traced away; the ops' own checks remain.
    script = textwrap.dedent(
        """
        import torch
        from fastso3 import o3
        from fastso3.ops import sparse_accumulate, tensor_product_conv

        acc = torch.compile(sparse_accumulate, fullgraph=True)
        x = torch.randn(4, 3)
        ok = torch.tensor([0, 1])
        acc(x, x, ok, 2, ok, ok, torch.ones(2))
        try:
            acc(x, x, ok, 2, torch.tensor([0, 10**9]), ok, torch.ones(2))
        except IndexError as err:
            assert "idx_1 contains 1000000000" in str(err), err
        else:
            raise SystemExit("out-of-range idx_1 was accepted")

        tp = o3.TensorProduct("2x0e", "0e", "2x0e", [(0, 0, 0, "uvu", True)], shared_weights=False, internal_weights=False)
        conv = torch.compile(lambda s, d: tensor_product_conv(torch.randn(3, 2), s, d, torch.randn(2, 1),
                                                              torch.randn(2, 2), tp, 3), fullgraph=True)
        conv(torch.tensor([0, 1]), torch.tensor([1, 2]))
        for s, d, name in (([0, -1], [1, 2], "edge_src contains -1"), ([0, 1], [1, 3], "edge_dst contains 3")):
            try:
                conv(torch.tensor(s), torch.tensor(d))
            except IndexError as err:
                assert name in str(err), err
            else:
                raise SystemExit(f"{name}: accepted")
        print("checked")
        """
    )
    assert "checked" in run(["-c", script])
