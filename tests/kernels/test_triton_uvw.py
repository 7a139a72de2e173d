"""The Triton uvw kernels (``kernels/triton/uvw.py``) against the reference, on CPU under the Triton interpreter.

As ``test_triton.py``: ``TRITON_INTERPRET=1`` must be set before triton is imported, so unless the environment
has it this module re-runs itself in a subprocess that does, and the kernel tests are skipped in the parent.
Shapes are tiny (the interpreter is slow) but span two sample blocks (one partial), masked channel lanes
(multiplicities 1 to 3 in tiles of 4), several paths per output irrep and an output irrep without a path.
"""

import importlib.util
import os
from pathlib import Path

import pytest
import torch

from fastso3.kernels import registry
from fastso3.kernels.uvw import uvw_factored_op, uvw_input_grads_op, uvw_op, uvw_tensor_product

triton = pytest.importorskip("triton")

INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
pytestmark = pytest.mark.triton
interpreted = pytest.mark.skipif(not INTERPRETED, reason="runs in the TRITON_INTERPRET=1 subprocess")
shared_or_not = pytest.mark.parametrize("shared", [True, False], ids=["shared", "per_sample"])


def sibling(name: str):
    """A sibling test module, for its helpers (tests are no package under ``--import-mode=importlib``)."""
    spec = importlib.util.spec_from_file_location(f"_fastso3_{name}", Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


uvw_tests, triton_tests = sibling("test_uvw"), sibling("test_triton")
tol, first_and_second_grads, half_close = triton_tests.tol, triton_tests.first_and_second_grads, triton_tests.half_close
modules, inputs = uvw_tests.modules, uvw_tests.inputs
# no path reaches the output's 1x4o (l = 4 only from 2e x 2e, even): its entries must come out zero
IRREPS = (*uvw_tests.IRREPS[:2], uvw_tests.IRREPS[2] + "+1x4o")


def table_name(tp) -> str:
    return f"uvw:{hash(tp.plan.key)}"


@pytest.mark.skipif(INTERPRETED, reason="already in the interpreter")
def test_kernels_in_interpreter_subprocess():
    triton_tests.run_under_interpreter(__file__)


@pytest.mark.skipif(INTERPRETED, reason="the interpreter replaces the compiler")
@pytest.mark.parametrize("dtype", ["fp32", "fp64", "bf16"])
def test_kernels_pass_the_gpu_compiler_without_a_gpu(dtype):
    # The interpreter accepts code the compiler rejects; compile ahead of time for an H100 (sm_90) target.
    pytest.importorskip("triton.backends.nvidia.compiler")
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from fastso3.kernels.triton import kernels, uvw

    acc, acc_ptr = (triton.language.float64, "*fp64") if dtype == "fp64" else (triton.language.float32, "*fp32")
    data = {"out", "a", "b", "w", "g", "x1", "x2"}
    for fn, consts in ((uvw._vector_slot_kernel, {"BLOCK_Z": 8, "BLOCK_B": 4, "BLOCK_O": 32}),
                       (uvw._weight_slot_kernel, {"SHARED": True, "BLOCK_Z": 8, "BLOCK_V": 4, "BLOCK_W": 32}),
                       (uvw._weight_slot_kernel, {"SHARED": False, "BLOCK_Z": 8, "BLOCK_V": 4, "BLOCK_W": 32})):  # fmt: skip
        consts = {**consts, "ACC": acc}
        sig = {n: "constexpr" if n in consts else f"*{dtype}" if n in data else "*i64" for n in fn.arg_names}
        sig.update({n: "i32" for n in fn.arg_names if n.endswith(("_dim", "_stride")) or n in ("nz", "n_rows", "d_max")})
        sig["val"] = acc_ptr  # CG values in the accumulator dtype
        if consts.get("SHARED"):
            sig["out"] = acc_ptr  # partial sums in the accumulator dtype
        compiled = triton.compile(ASTSource(fn, sig, consts), target=GPUTarget("cuda", 90, 32), options=kernels._COMPILE_OPTIONS)
        assert compiled.asm["cubin"]


def slots(tp, batch, dtype):
    x, y, w = inputs(tp, batch=batch, dtype=dtype)
    return [torch.randn(batch, tp.irreps_out.dim, dtype=dtype), x, y, w]


@interpreted
@shared_or_not
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_every_slot_matches_the_reference(shared, dtype):
    # 37 samples: a full block of 32 and a partial one (shared weights: two rows of partial sums)
    tp, _ = modules(shared, dtype, IRREPS)
    by_slot = slots(tp, 37, dtype)
    for slot in range(4):
        others = [s for s in range(4) if s != slot]
        args = (*(by_slot[s] for s in others), table_name(tp), [slot, *others], shared)
        ours = uvw_op(*args, "triton")
        assert registry.last_backend("uvw_tensor_product") == "triton"
        ref = uvw_op(*args, "reference")
        assert ours.shape == ref.shape and ours.dtype == dtype
        torch.testing.assert_close(ours, ref, **tol(dtype))
    d1, d2 = uvw_input_grads_op(*by_slot, table_name(tp), shared, "triton")
    for ours, ref in zip((d1, d2), uvw_input_grads_op(*by_slot, table_name(tp), shared, "reference"), strict=True):
        torch.testing.assert_close(ours, ref, **tol(dtype))


@interpreted
@shared_or_not
def test_module_first_and_second_derivatives_match_reference(shared):
    # second order runs every slot with permuted roles, and the pair op
    tp, ref = modules(shared, irreps=IRREPS)
    tp.backend = "triton"
    leaves = inputs(tp, batch=5)
    ours = first_and_second_grads(tp, leaves, torch.float64)
    assert registry.last_backend("uvw_tensor_product") == "triton"
    for a, b in zip(ours, first_and_second_grads(ref, leaves, torch.float64), strict=True):
        torch.testing.assert_close(a, b, **tol(torch.float64))


@interpreted
@shared_or_not
def test_bf16_accumulates_in_float32(shared):
    tp, _ = modules(shared, torch.float32)
    g, x, y, w = (t.bfloat16() for t in slots(tp, 6, torch.float32))
    ours = uvw_tensor_product(tp.plan, x, y, w, shared, "triton")
    half_close(ours, uvw_tensor_product(tp.plan, x.float(), y.float(), w.float(), shared, "reference"), torch.bfloat16)
    args = (g, x, y, table_name(tp), [3, 0, 1, 2], shared)  # the weights' gradient: a sum over samples if shared
    half_close(uvw_op(*args, "triton"), uvw_op(*(a.float() if torch.is_tensor(a) else a for a in args), "reference"),
               torch.bfloat16)  # fmt: skip


@interpreted
def test_factored_weights_every_output_matches_the_reference():
    # the Triton backend of fastso3::uvw_factored: the uvw kernels on materialised weights h M
    tp, _ = modules(False, irreps=IRREPS)
    g, x, y, _ = slots(tp, 37, torch.float64)
    h, m = torch.randn(37, 3, dtype=torch.float64), torch.randn(3, tp.weight_numel, dtype=torch.float64)
    outputs = [0, 1, 2, 3, 4]
    ours = uvw_factored_op(g, x, y, h, m, table_name(tp), outputs, "triton")
    assert registry.last_backend("uvw_tensor_product") == "triton"
    for a, b in zip(ours, uvw_factored_op(g, x, y, h, m, table_name(tp), outputs, "reference"), strict=True):
        torch.testing.assert_close(a, b, **tol(torch.float64))


@interpreted
def test_shared_weight_gradient_is_deterministic_and_empty_batch():
    tp, _ = modules(True)
    g, x, y, _ = slots(tp, 40, torch.float64)
    args = (g, x, y, table_name(tp), [3, 0, 1, 2], True, "triton")
    assert torch.equal(uvw_op(*args), uvw_op(*args))
    empty = uvw_op(g[:0], x[:0], y[:0], *args[3:])
    assert torch.equal(empty, torch.zeros(tp.weight_numel, dtype=torch.float64))
    assert uvw_tensor_product(tp.plan, x[:0], y[:0], torch.randn(tp.weight_numel, dtype=torch.float64), True,
                              "triton").shape == (0, tp.irreps_out.dim)  # fmt: skip


def test_unavailable_requests_raise_and_cuda_defaults_to_triton(monkeypatch):
    # no kernel runs here, so this also runs outside the interpreter
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert registry.resolve_backend("uvw_tensor_product", None, cuda, torch.bfloat16) == "triton"
    assert registry.resolve_backend("uvw_tensor_product", None, cpu, torch.float32) in ("cpu", "reference")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    with pytest.raises(registry.BackendUnavailable, match="supports float16"):
        registry.resolve_backend("uvw_tensor_product", "triton", cpu, torch.int32)
    monkeypatch.delenv("TRITON_INTERPRET")
    tp, _ = modules(False)
    tp.backend = "triton"
    with pytest.raises(registry.BackendUnavailable, match="TRITON_INTERPRET"):
        tp(*inputs(tp, batch=2))
