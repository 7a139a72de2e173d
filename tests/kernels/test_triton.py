"""The Triton backend against the reference, on CPU under the Triton interpreter (tiny shapes: it is slow).

``TRITON_INTERPRET=1`` must be in the environment before triton is first imported (triton's own
``tl.zeros`` & co. are defined at import), and other test modules may import triton earlier (torch.compile
does). So, unless the environment already has it, this module re-runs itself in a subprocess that has it,
and the kernel tests are skipped in the parent process.
"""

import os
import subprocess
import sys

import pytest
import torch

from fastso3 import o3
from fastso3.core.cg import wigner_3j_sparse
from fastso3.core.tensor_product_builders import channelwise_tensor_product_spec
from fastso3.kernels import registry
from fastso3.kernels.channelwise import channelwise_tensor_product
from fastso3.kernels.ops import sparse_accumulate_table_op
from fastso3.ops import sparse_accumulate

triton = pytest.importorskip("triton")  # fastso3 itself imports triton only for a 'triton' call

INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
pytestmark = pytest.mark.triton
interpreted = pytest.mark.skipif(not INTERPRETED, reason="runs in the TRITON_INTERPRET=1 subprocess")


def run_under_interpreter(path: str) -> None:
    """Run the ``triton``-marked tests of the module at ``path`` in a subprocess with ``TRITON_INTERPRET=1``."""
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    cmd = [sys.executable, "-m", "pytest", path, "-q", "-p", "no:cacheprovider", "-m", "triton"]
    run = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and " passed" in run.stdout, run.stdout[-6000:] + run.stderr[-2000:]


@pytest.mark.skipif(INTERPRETED, reason="already in the interpreter")
def test_kernels_in_interpreter_subprocess():
    run_under_interpreter(__file__)


@pytest.mark.skipif(INTERPRETED, reason="the interpreter replaces the compiler")
@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_kernels_pass_the_gpu_compiler_without_a_gpu(dtype):
    # The interpreter accepts code the compiler rejects; compile ahead of time for an H100 (sm_90) target.
    pytest.importorskip("triton.backends.nvidia.compiler")
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from fastso3.kernels.triton import kernels

    consts = {"ACC": triton.language.float32, "BLOCK_Z": 8, "BLOCK_C": 32}
    index_args = ("ptr", "ia", "ib", "i_s", "i_d", "idx1", "idx2")
    for fn in (kernels._sparse_accumulate_kernel, kernels._cw_channeled_kernel, kernels._cw_scalar_kernel):
        names = fn.arg_names
        sig = {n: "constexpr" if n in consts else "i32" for n in names}
        sig.update({n: "*i64" for n in names if n in index_args or n.endswith(("_base", "_step"))})
        sig.update({n: f"*{dtype}" for n in ("x1", "x2", "a", "b", "s", "d", "out", "mult", "coef") if n in names})
        src = ASTSource(fn, sig, {k: v for k, v in consts.items() if k in names})
        compiled = triton.compile(src, target=GPUTarget("cuda", 90, 32), options=kernels._COMPILE_OPTIONS)
        assert compiled.asm["cubin"]


def tol(dtype):
    eps = torch.finfo(dtype).eps
    return dict(rtol=64 * eps, atol=64 * eps)


def cg_problem(l1, l2, l3, lead, dtype):
    """A CG path with its entries shuffled (the launcher sorts them by output)."""
    c = wigner_3j_sparse(l1, l2, l3)
    perm = torch.randperm(len(c.values))
    io, i1, i2 = (torch.as_tensor(a.copy())[perm] for a in (c.i3, c.i1, c.i2))
    x1 = torch.randn(*lead, 2 * l1 + 1, dtype=dtype)
    x2 = torch.randn(*lead, 2 * l2 + 1, dtype=dtype)
    return x1, x2, io, 2 * l3 + 1, i1, i2, torch.as_tensor(c.values.copy())[perm]


def first_and_second_grads(fn, leaves, dtype):
    leaves = [t.detach().clone().requires_grad_() for t in leaves]
    out = fn(*leaves)
    g = torch.linspace(-1, 1, out.numel(), dtype=dtype).reshape(out.shape)
    first = torch.autograd.grad((out * g).sum(), leaves, create_graph=True)
    second = torch.autograd.grad(sum(f.sin().sum() for f in first), leaves)
    return (out, *first, *second)


@interpreted
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sparse_accumulate_matches_reference_to_second_order(dtype):
    x1, x2, io, size, i1, i2, mult = cg_problem(2, 2, 3, lead=(2, 35), dtype=dtype)  # 70 rows: 64 + partial block

    def run(backend):
        fn = lambda a, b: sparse_accumulate(a, b, io, size, i1, i2, mult, backend=backend)  # noqa: E731
        return first_and_second_grads(fn, (x1, x2), dtype)

    ours = run("triton")
    assert registry.last_backend("sparse_accumulate") == "triton"
    for a, b in zip(ours, run("reference"), strict=True):
        torch.testing.assert_close(a, b, **tol(dtype))


@interpreted
def test_sparse_accumulate_gradcheck_and_table_op():
    x1, x2, io, size, i1, i2, mult = cg_problem(1, 1, 2, lead=(2,), dtype=torch.float64)
    fn = lambda a, b: sparse_accumulate(a, b, io, size, i1, i2, mult, backend="triton")  # noqa: E731
    leaves = (x1.requires_grad_(), x2.requires_grad_())
    assert torch.autograd.gradcheck(fn, leaves)  # second order: compared with the reference above
    sizes = (3, 9, 9)  # slots of the table: gradient component, cotangent, harmonics
    for roles in ([0, 1, 2], [1, 0, 2], [2, 1, 0]):
        a, b = (torch.randn(5, sizes[r], dtype=torch.float64) for r in roles[1:])
        ours = sparse_accumulate_table_op(a, b, "sh_grad:2:component", roles, "triton")
        torch.testing.assert_close(ours, sparse_accumulate_table_op(a, b, "sh_grad:2:component", roles, "reference"))


def half_close(ours, ref32, dtype):
    """Output rounding plus coefficients in ``dtype``: a few units of its rounding, at the result's scale."""
    assert ours.dtype == dtype
    eps = torch.finfo(dtype).eps
    torch.testing.assert_close(ours.float(), ref32, rtol=2 * eps, atol=2 * eps * ref32.abs().max().item())


@interpreted
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_sparse_accumulate_half_precision_accumulates_in_float32(dtype):
    x1, x2, io, size, i1, i2, mult = cg_problem(3, 3, 4, lead=(9,), dtype=dtype)
    ours = sparse_accumulate(x1, x2, io, size, i1, i2, mult, backend="triton")
    half_close(ours, sparse_accumulate(x1.float(), x2.float(), io, size, i1, i2, mult, backend="reference"), dtype)


def uvu_module(channels=3, lmax=1):
    irreps_in1 = o3.Irreps([(channels, (deg, (-1) ** deg)) for deg in range(lmax + 1)])
    spec = channelwise_tensor_product_spec(irreps_in1, o3.Irreps.spherical_harmonics(lmax))
    return o3.TensorProduct(str(irreps_in1), str(spec["irreps_in2"]), str(spec["irreps_out"]),
                            spec["instructions"], shared_weights=False)  # fmt: skip


def uvu_inputs(tp, batch, dtype):
    return [torch.randn(batch, d, dtype=dtype) for d in (tp.irreps_in1.dim, tp.irreps_in2.dim, tp.weight_numel)]


@interpreted
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_channelwise_matches_reference_to_second_order(dtype):
    # second order runs both table ops (cw_channeled and cw_scalar) with several role permutations
    tp = uvu_module()
    leaves = uvu_inputs(tp, 5, dtype)

    def run(backend):
        fn = lambda x, y, w: channelwise_tensor_product(tp.plan, x, y, w, backend)  # noqa: E731
        return first_and_second_grads(fn, leaves, dtype)

    ours = run("triton")
    assert registry.last_backend("channelwise_tensor_product") == "triton"
    for a, b in zip(ours, run("reference"), strict=True):
        torch.testing.assert_close(a, b, **tol(dtype))
    tp = tp.to(dtype)
    expected = tp(*leaves)
    tp.backend = "triton"  # the module routes its channel-wise product to the same kernel
    torch.testing.assert_close(tp(*leaves), expected, **tol(dtype))
    assert registry.last_backend("channelwise_tensor_product") == "triton"


@interpreted
def test_channelwise_bf16_and_odd_channel_count():
    tp = uvu_module(channels=5)  # 5 channels: a masked tile of 8 lanes
    x, y, w = uvu_inputs(tp, 4, torch.bfloat16)
    ours = channelwise_tensor_product(tp.plan, x, y, w, "triton")
    half_close(ours, channelwise_tensor_product(tp.plan, x.float(), y.float(), w.float(), "reference"), torch.bfloat16)


@interpreted
@pytest.mark.compile
def test_compile_fullgraph_with_triton_backend():
    torch._dynamo.reset()
    x1, x2, io, size, i1, i2, mult = cg_problem(1, 1, 1, lead=(4,), dtype=torch.float32)
    x1.requires_grad_()

    def fn(a, b):
        return sparse_accumulate(a, b, io, size, i1, i2, mult, backend="triton").pow(2).sum()

    # aot_eager traces through the fake impls and autograd without paying for inductor codegen
    out = torch.compile(fn, fullgraph=True, backend="aot_eager")(x1, x2)
    torch.testing.assert_close(out, fn(x1, x2))
    torch.testing.assert_close(torch.autograd.grad(out, x1)[0], torch.autograd.grad(fn(x1, x2), x1)[0])


def test_unavailable_or_uncovered_requests_raise(monkeypatch):
    # no kernel runs here, so this also runs outside the interpreter
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    x1, x2, io, size, i1, i2, mult = cg_problem(1, 1, 1, lead=(4,), dtype=torch.float64)
    with pytest.raises(IndexError, match="idx_1"):  # inputs are validated before any backend runs
        sparse_accumulate(x1, x2, io, size, i1 + 3, i2, mult, backend="triton")
    with pytest.raises(registry.BackendUnavailable, match="supports float16"):
        registry.resolve_backend("sparse_accumulate", "triton", torch.device("cpu"), torch.int32)
    with pytest.raises(registry.BackendUnavailable, match="covers"):
        o3.spherical_harmonics(1, torch.randn(4, 3), True, backend="triton")
    full = o3.FullTensorProduct("2x0e+1x1o", "1x0e+1x1o", backend="triton")  # unweighted 'uvuv': no kernel
    with pytest.raises(registry.BackendUnavailable, match="covers"):
        full(torch.randn(2, 5), torch.randn(2, 4))
    # defaults (resolving needs no device): CUDA gets triton for the ops it covers; CPU does not change
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert registry.resolve_backend("sparse_accumulate", None, cuda, torch.bfloat16) == "triton"
    assert registry.resolve_backend("spherical_harmonics", None, cuda, torch.float32) == "reference"
    assert registry.resolve_backend("sparse_accumulate", None, cpu, torch.float16) == "reference"
    with monkeypatch.context() as m:
        m.setattr(registry, "_triton_import_error", lambda: "triton does not import (blocked)")
        assert registry.resolve_backend("sparse_accumulate", None, cuda, torch.float32) == "reference"
        with pytest.raises(registry.BackendUnavailable, match="blocked"):
            registry.resolve_backend("sparse_accumulate", "triton", cuda, torch.float32)
    assert "triton" in registry.available_backends("cpu")
    monkeypatch.delenv("TRITON_INTERPRET")
    assert "triton" not in registry.available_backends("cpu")
    with pytest.raises(registry.BackendUnavailable, match="TRITON_INTERPRET"):
        sparse_accumulate(x1, x2, io, size, i1, i2, mult, backend="triton")
