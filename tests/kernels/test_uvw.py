import pytest
import torch

from fastso3 import o3
from fastso3.core.uvw import is_uvw, uvw_table
from fastso3.kernels import registry
from fastso3.kernels.uvw import uvw_input_grads_op, uvw_op, uvw_tensor_product

e3nn_o3 = pytest.importorskip("e3nn.o3")

IRREPS = ("3x0e+2x1o+2x2e", "2x0e+3x1o+1x2e", "2x0e+3x1o+2x2e+1x1e")
SLOT_DIMS = lambda tp: (tp.irreps_out.dim, tp.irreps_in1.dim, tp.irreps_in2.dim, tp.weight_numel)  # noqa: E731


def modules(shared, dtype=torch.float64, irreps=IRREPS):
    fast = o3.FullyConnectedTensorProduct(*irreps, shared_weights=shared, internal_weights=False).to(dtype)
    ref = o3.FullyConnectedTensorProduct(*irreps, shared_weights=shared, internal_weights=False, backend="reference")
    return fast, ref.to(dtype)


def inputs(tp, batch=7, dtype=torch.float64):
    w = torch.randn(tp.weight_numel, dtype=dtype) if tp.shared_weights else torch.randn(batch, tp.weight_numel, dtype=dtype)
    return torch.randn(batch, tp.irreps_in1.dim, dtype=dtype), torch.randn(batch, tp.irreps_in2.dim, dtype=dtype), w


def test_table_rejects_other_modes():
    tp = o3.FullTensorProduct("2x1o", "1x1o")
    assert not is_uvw(tp.plan)
    with pytest.raises(ValueError, match="uvw"):
        uvw_table(tp.plan)


@pytest.mark.parametrize("shared", [True, False])
def test_default_runs_the_kernel_and_matches_reference_and_e3nn(shared, f64):
    fast, ref = modules(shared)
    assert fast._kernel == "uvw"
    x, y, w = inputs(fast)
    out = fast(x, y, w)
    assert registry.last_backend("uvw_tensor_product") == "cpu"
    torch.testing.assert_close(out, ref(x, y, w), rtol=0, atol=1e-12)
    theirs = e3nn_o3.FullyConnectedTensorProduct(*IRREPS, shared_weights=shared, internal_weights=False).double()
    assert (out - theirs(x, y, w)).abs().max() <= 1e-10


@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize("slot", [0, 1, 2, 3])
def test_every_slot_matches_the_reference_twin(shared, slot):
    # 37 samples: two full blocks of 16 and a partial one; with shared weights, partial sample groups
    fast, _ = modules(shared)
    x, y, w = inputs(fast, batch=37)
    g = torch.randn(37, fast.irreps_out.dim, dtype=torch.float64)
    by_slot = [g, x, y, w]
    others = [s for s in range(4) if s != slot]
    table = f"uvw:{hash(fast.plan.key)}"
    outs = [uvw_op(*(by_slot[s] for s in others), table, [slot, *others], shared, be) for be in ("reference", "cpu")]
    assert outs[0].shape == (outs[1].shape if not (shared and slot == 3) else (fast.weight_numel,))
    torch.testing.assert_close(outs[1], outs[0], rtol=0, atol=1e-12)


@pytest.mark.parametrize("backend", ["reference", "cpu"])
@pytest.mark.parametrize("shared", [True, False])
def test_both_input_gradients_in_one_pass_match_the_single_slots(shared, backend):
    # relabeled paths (shared weights) take the two-call route inside the pass, the others share t
    fast, _ = modules(shared)
    x, y, w = inputs(fast, batch=37)
    g = torch.randn(37, fast.irreps_out.dim, dtype=torch.float64)
    table = f"uvw:{hash(fast.plan.key)}"
    d1, d2 = uvw_input_grads_op(g, x, y, w, table, shared, backend)
    torch.testing.assert_close(d1, uvw_op(g, y, w, table, [1, 0, 2, 3], shared, "reference"), rtol=0, atol=1e-12)
    torch.testing.assert_close(d2, uvw_op(g, x, w, table, [2, 0, 1, 3], shared, "reference"), rtol=0, atol=1e-12)


@pytest.mark.parametrize("shared", [True, False])
def test_gradients_and_double_gradients_match_reference(shared):
    fast, ref = modules(shared)
    x, y, w = inputs(fast)
    g = torch.randn(7, fast.irreps_out.dim, dtype=torch.float64)

    def grads(module):
        leaves = [t.clone().requires_grad_() for t in (x, y, w)]
        first = torch.autograd.grad((module(*leaves) * g).sum(), leaves, create_graph=True)
        second = torch.autograd.grad(sum(f.sin().sum() for f in first), leaves)
        return first + second

    for ours, theirs in zip(grads(fast), grads(ref)):
        torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("backend", ["reference", "cpu"])
@pytest.mark.parametrize("shared", [True, False])
def test_gradcheck_gradgradcheck_of_the_op(backend, shared):
    fast, _ = modules(shared, irreps=("2x0e+1x1o", "1x0e+1x1o", "1x0e+2x1o"))
    leaves = [t.requires_grad_() for t in inputs(fast, batch=3)]
    fn = lambda a, b, c: uvw_tensor_product(fast.plan, a, b, c, shared, backend)  # noqa: E731
    assert torch.autograd.gradcheck(fn, leaves)
    assert torch.autograd.gradgradcheck(fn, leaves)


@pytest.mark.parametrize("shared", [True, False])
def test_float32_within_reference_precision(shared):
    irreps = ("8x0e+8x1o+8x2e", "1x0e+1x1o+1x2e", "8x0e+8x1o+8x2e")
    fast32, ref32 = modules(shared, torch.float32, irreps)
    _, ref64 = modules(shared, torch.float64, irreps)
    x, y, w = inputs(ref64, batch=50)
    exact = ref64(x, y, w)
    budget = (ref32(x.float(), y.float(), w.float()).double() - exact).abs().max()
    err = (fast32(x.float(), y.float(), w.float()).double() - exact).abs().max()
    assert err <= 4 * budget


def test_batch_broadcasting_and_empty_batch():
    fast, ref = modules(False)
    x = torch.randn(2, 1, fast.irreps_in1.dim, dtype=torch.float64)
    y = torch.randn(3, 1, fast.irreps_in2.dim, dtype=torch.float64)
    w = torch.randn(4, fast.weight_numel, dtype=torch.float64)
    out = fast(x, y[:, None], w)  # (2, 1) x (3, 1, 1) x (4,) -> (3, 2, 4)
    assert out.shape == (3, 2, 4, fast.irreps_out.dim)
    torch.testing.assert_close(out, ref(x, y[:, None], w), rtol=0, atol=1e-12)
    assert fast(x[:0, 0], y[:0, 0], w[:0]).shape == (0, fast.irreps_out.dim)


def test_shared_weight_gradient_is_deterministic():
    fast, _ = modules(True)
    x, y, w = inputs(fast, batch=200)
    w.requires_grad_()
    grads = [torch.autograd.grad(fast(x, y, w).pow(2).sum(), w)[0] for _ in range(3)]
    assert all(torch.equal(grads[0], gr) for gr in grads[1:])


@pytest.mark.compile
def test_compile_fullgraph_dynamic_matches_eager():
    torch._dynamo.reset()
    fast, _ = modules(False, torch.float32)
    compiled = torch.compile(fast, fullgraph=True, dynamic=True)
    for n in (5, 9):
        x, y, w = (t.requires_grad_() for t in inputs(fast, batch=n, dtype=torch.float32))
        eager = fast(x, y, w)
        ge = torch.autograd.grad(eager.pow(2).sum(), (x, w))
        out = compiled(x, y, w)
        gc = torch.autograd.grad(out.pow(2).sum(), (x, w))
        torch.testing.assert_close(out, eager)
        torch.testing.assert_close(gc, ge)
