"""The Triton conv kernels (``kernels/triton/conv.py``) against the reference, on CPU under the Triton interpreter.

As ``test_triton.py``: ``TRITON_INTERPRET=1`` must be set before triton is imported, so unless the environment
has it this module re-runs itself in a subprocess that does, and the kernel tests are skipped in the parent.
Shapes are tiny (the interpreter is slow) but span several sample blocks, masked channel lanes and a receiver
without edges. The interpreter runs programs one after another, so atomics cannot race here: the atomic mode
is checked for values, not for its (absent) reproducibility.
"""

import importlib.util
import os
from pathlib import Path

import pytest
import torch

from fastso3.kernels import registry
from fastso3.kernels.conv import ATOMIC_BACKEND, conv_channeled_op, csr, plan_table
from fastso3.ops import tensor_product_conv

triton = pytest.importorskip("triton")

INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
pytestmark = pytest.mark.triton
interpreted = pytest.mark.skipif(not INTERPRETED, reason="runs in the TRITON_INTERPRET=1 subprocess")
modes = pytest.mark.parametrize("deterministic", [True, False], ids=["segments", "atomic"])


def sibling(name: str):
    """A sibling test module, for its helpers (tests are no package under ``--import-mode=importlib``)."""
    spec = importlib.util.spec_from_file_location(f"_fastso3_{name}", Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


conv_tests, triton_tests = sibling("test_conv"), sibling("test_triton")
tol, first_and_second_grads, half_close = triton_tests.tol, triton_tests.first_and_second_grads, triton_tests.half_close


@pytest.mark.skipif(INTERPRETED, reason="already in the interpreter")
def test_kernels_in_interpreter_subprocess():
    triton_tests.run_under_interpreter(__file__)


@pytest.mark.skipif(INTERPRETED, reason="the interpreter replaces the compiler")
@pytest.mark.parametrize("dtype", ["fp32", "fp64", "bf16"])
def test_kernel_passes_the_gpu_compiler_without_a_gpu(dtype):
    # The interpreter accepts code the compiler rejects; compile ahead of time for an H100 (sm_90) target,
    # in each output mode, with gathered and per-edge operands.
    pytest.importorskip("triton.backends.nvidia.compiler")
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from fastso3.kernels.triton import conv, kernels

    fn = conv._conv_kernel
    acc = "fp64" if dtype == "fp64" else "fp32"
    acc_tl = triton.language.float64 if dtype == "fp64" else triton.language.float32
    pointers = {"a": dtype, "b": dtype, "c": dtype, "coef": dtype}
    for scalar, segments, atomic in ((False, True, False), (True, True, False), (False, False, True), (True, False, True),
                                     (False, False, False)):  # fmt: skip
        consts = {"GA": True, "GB": False, "GC": scalar, "SCALAR": scalar, "SEGMENTS": segments, "ATOMIC": atomic,
                  "ACC": acc_tl, "BLOCK_Z": 8, "BLOCK_C": 32}  # fmt: skip
        sig = {n: "constexpr" if n in consts else f"*{pointers[n]}" if n in pointers else "*i64" for n in fn.arg_names}
        sig.update({n: "i32" for n in fn.arg_names if n.endswith("_dim") or n in ("nz", "n_rows", "nc")})
        sig["out"] = f"*{acc if atomic else dtype}"  # atomics add into an accumulator-dtype buffer
        compiled = triton.compile(ASTSource(fn, sig, consts), target=GPUTarget("cuda", 90, 32), options=kernels._COMPILE_OPTIONS)
        assert compiled.asm["cubin"]


def problem(dtype, channels=40, nodes=20, edges=40):
    """40 channels: BLOCK_C 64 (masked lanes), BLOCK_Z 16, so 2 receiver blocks and 3 edge blocks (one partial)."""
    tp = conv_tests.uvu(channels, 1, dtype)
    return tp, conv_tests.graph(tp, nodes=nodes, edges=edges, dtype=dtype)


def tp_conv(tp, x, src, dst, sh, w, nodes, **kw):
    return tensor_product_conv(x, src, dst, sh, w, tp.plan, nodes, **kw)


@interpreted
@modes
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matches_reference_to_second_order(dtype, deterministic):
    # second order runs both ops with every role permutation: gathered, per-edge and atomic outputs
    tp, (x, src, dst, sh, w) = problem(dtype)

    def run(**kw):
        return first_and_second_grads(lambda a, b, c: tp_conv(tp, a, src, dst, b, c, 20, **kw), (x, sh, w), dtype)

    ours = run(backend="triton", deterministic=deterministic)
    assert registry.last_backend("tensor_product_conv") == "triton"
    for a, b in zip(ours, run(backend="reference"), strict=True):
        torch.testing.assert_close(a, b, **tol(dtype))
    assert ours[0][19].abs().max() == 0  # the receiver without edges


@interpreted
def test_segments_mode_is_bitwise_reproducible():
    tp, (x, src, dst, sh, w) = problem(torch.float32)

    def run():
        return first_and_second_grads(lambda a, b, c: tp_conv(tp, a, src, dst, b, c, 20, backend="triton"), (x, sh, w),
                                      torch.float32)  # fmt: skip

    for a, b in zip(run(), run(), strict=True):
        assert torch.equal(a, b)


@interpreted
@modes
def test_no_edges_and_more_receivers(deterministic):
    tp, (x, src, dst, sh, w) = problem(torch.float64, channels=2, nodes=3, edges=5)
    kw = {"backend": "triton", "deterministic": deterministic}
    empty = [t[:0] for t in (src, dst, sh, w)]
    assert torch.equal(tp_conv(tp, x, *empty, 4, **kw), torch.zeros(4, tp.irreps_out.dim, dtype=x.dtype))
    torch.testing.assert_close(tp_conv(tp, x, src, dst, sh, w, 7, **kw), tp_conv(tp, x, src, dst, sh, w, 7))


@interpreted
@modes
def test_bfloat16_accumulates_in_float32(deterministic):
    tp, (x, src, dst, sh, w) = problem(torch.float32, channels=5)
    half = [t.bfloat16() if t.is_floating_point() else t for t in (x, src, dst, sh, w)]
    ours = tp_conv(tp, *half, 20, backend="triton", deterministic=deterministic)
    half_close(ours, tp_conv(tp, x, src, dst, sh, w, 20, backend="reference"), torch.bfloat16)


def test_bad_requests_raise(monkeypatch):
    # no kernel runs here, so this also runs outside the interpreter
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    tp, (x, src, dst, sh, w) = problem(torch.float64, channels=2, nodes=3, edges=5)
    with pytest.raises(IndexError, match="edge_src"):  # inputs are validated before any backend runs
        tp_conv(tp, x, src + 3, dst, sh, w, 3, backend="triton", deterministic=False)
    with pytest.raises(TypeError, match="deterministic"):
        tp_conv(tp, x, src, dst, sh, w, 3, backend="triton", deterministic=None)
    bad = torch.ones_like(dst)  # row 1 of a one-row output
    (ptr_dst, perm_dst), (ptr_src, perm_src) = csr(bad, 1), csr(src, 3)
    with pytest.raises(IndexError, match=r"edge_dst contains 1, outside \[0, 1\)"):  # the op checks its index data itself
        conv_channeled_op(x, w, sh, [bad, src, None, None], [ptr_dst, ptr_src, None, None],
                          [perm_dst, perm_src, None, None], plan_table(tp.plan), [0, 1, 3, 2], ATOMIC_BACKEND)
    # the default for CUDA tensors is triton; CPU defaults do not change
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert registry.resolve_backend("tensor_product_conv", None, cuda, torch.float32) == "triton"
    assert registry.resolve_backend("tensor_product_conv", None, cpu, torch.float16) == "reference"
    monkeypatch.delenv("TRITON_INTERPRET")
    with pytest.raises(registry.BackendUnavailable, match="TRITON_INTERPRET"):
        tp_conv(tp, x, src, dst, sh, w, 3, backend="triton")


@interpreted
@pytest.mark.compile
def test_compile_fullgraph_atomic_mode():
    torch._dynamo.reset()
    tp, (x, src, dst, sh, w) = problem(torch.float64, channels=2, nodes=3, edges=5)

    def fn(a, b, c):
        return tp_conv(tp, a, src, dst, b, c, 3, backend="triton", deterministic=False).square().sum()

    results = []
    # aot_eager traces through the fake impls and autograd without paying for inductor codegen
    for f in (torch.compile(fn, fullgraph=True, backend="aot_eager"), fn):
        leaves = [t.clone().requires_grad_() for t in (x, sh, w)]
        value = f(*leaves)
        results.append((value, *torch.autograd.grad(value, leaves)))
    for compiled, eager in zip(*results, strict=True):
        torch.testing.assert_close(compiled, eager)
