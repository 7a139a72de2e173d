"""The Triton symmetric-contraction kernels (``kernels/triton/symmetric_contraction.py``) against the fused CPU
kernel and the dense twin, on CPU under the Triton interpreter.

As ``test_triton.py``: ``TRITON_INTERPRET=1`` must be set before triton is imported, so unless the environment
has it this module re-runs itself in a subprocess that does, and the kernel tests are skipped in the parent.
Shapes are tiny (the interpreter is slow) but span two sample blocks (one partial), every correlation order, a
pseudo-tensor output, and an output component no column reaches.
"""

import importlib.util
import os
from pathlib import Path

import pytest
import torch

from fastso3.kernels import registry
from fastso3.nn import SymmetricContraction
from fastso3.testing import default_dtype

triton = pytest.importorskip("triton")

INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
pytestmark = pytest.mark.triton
interpreted = pytest.mark.skipif(not INTERPRETED, reason="runs in the TRITON_INTERPRET=1 subprocess")


def sibling(name: str):
    spec = importlib.util.spec_from_file_location(f"_fastso3_{name}", Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(INTERPRETED, reason="already in the interpreter")
def test_kernels_in_interpreter_subprocess():
    sibling("test_triton").run_under_interpreter(__file__)


@interpreted
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("irreps_out, correlation", [("3x0e", 1), ("3x0e+3x1o", 2), ("3x0e+3x1o", 3), ("3x0o+3x1e", 3)])
def test_triton_matches_cpu_kernel_and_twin(dtype, irreps_out, correlation):
    torch.manual_seed(correlation)
    with default_dtype(dtype):  # the plan's tables rounded once, to dtype
        module = SymmetricContraction("3x0e+3x1o+3x2e", irreps_out, correlation, num_elements=2)
    x = torch.randn(25, 3, 9, dtype=dtype, requires_grad=True)  # 75 samples: a full and a partial block of 64
    species = torch.randint(0, 2, (25,))
    results = {}
    for backend in ("triton", "cpu", "reference"):
        module.backend = backend
        out = module(x, species)
        assert registry.last_backend("symmetric_contraction") == backend
        results[backend] = (out, *torch.autograd.grad(out.square().sum(), (x, *module.parameters())))
    eps = torch.finfo(dtype).eps
    for ours, cpu, twin in zip(results["triton"], results["cpu"], results["reference"]):
        scale = twin.abs().max().item() + 1.0
        torch.testing.assert_close(ours, cpu, rtol=0, atol=64 * eps * scale)
        torch.testing.assert_close(ours, twin, rtol=0, atol=64 * eps * scale)


@interpreted
def test_triton_second_derivatives_match_cpu():
    # a force-like loss: the gradient in x (the Triton backward) differentiated again, in x and the weights
    with default_dtype(torch.float64):
        module = SymmetricContraction("2x0e+2x1o", "2x0e+2x1o", 3, num_elements=2)
    x = torch.randn(3, 2, 4, dtype=torch.float64, requires_grad=True)
    species = torch.tensor([0, 1, 1])
    results = []
    for backend in ("triton", "cpu"):
        module.backend = backend
        force = torch.autograd.grad(module(x, species).square().sum(), x, create_graph=True)[0]
        results.append(torch.autograd.grad(force.square().sum(), (x, *module.parameters())))
    for ours, cpu in zip(*results):
        torch.testing.assert_close(ours, cpu, rtol=1e-12, atol=1e-12)


@pytest.mark.skipif(INTERPRETED, reason="the interpreter replaces the compiler")
@pytest.mark.parametrize("dtype", ["fp32", "fp64"])
def test_kernels_pass_the_gpu_compiler_without_a_gpu(dtype):
    # The interpreter accepts code the compiler rejects; compile ahead of time for an H100 (sm_90) target.
    pytest.importorskip("triton.backends.nvidia.compiler")
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from fastso3.kernels.triton import kernels, symmetric_contraction

    acc = triton.language.float64 if dtype == "fp64" else triton.language.float32
    data = {"x", "w", "f", "g", "out", "gx", "by_column_value", "value"}
    for fn, consts in ((symmetric_contraction._grouped_columns_kernel, {"ORDER": 3}),
                       (symmetric_contraction._grouped_columns_kernel, {"ORDER": 1}),
                       (symmetric_contraction._input_grad_kernel, {})):  # fmt: skip
        consts = {**consts, "ACC": acc, "BLOCK_Z": 64}
        sig = {n: "constexpr" if n in consts else f"*{dtype}" if n in data else "*i64" for n in fn.arg_names}
        sig.update({n: "i32" for n in fn.arg_names if n in ("nz", "c", "d", "r", "s", "f_rows", "out_rows")})
        compiled = triton.compile(ASTSource(fn, sig, consts), target=GPUTarget("cuda", 90, 32), options=kernels._COMPILE_OPTIONS)
        assert compiled.asm["cubin"]
