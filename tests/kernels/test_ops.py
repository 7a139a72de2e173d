import pytest
import torch

from fastso3.core.cg import wigner_3j_sparse
from fastso3.kernels import registry
from fastso3.kernels.ops import sparse_accumulate_table_op
from fastso3.ops import sparse_accumulate


def cg_problem(l1, l2, l3, rows, dtype=torch.float64, lead=()):
    c = wigner_3j_sparse(l1, l2, l3)
    x1 = torch.randn(*lead, rows, 2 * l1 + 1, dtype=dtype)
    x2 = torch.randn(*lead, rows, 2 * l2 + 1, dtype=dtype)
    idx = [torch.as_tensor(a.copy()) for a in (c.i3, c.i1, c.i2)]
    return x1, x2, idx[0], 2 * l3 + 1, idx[1], idx[2], torch.as_tensor(c.values.copy())


def python_loop(x1, x2, idx_out, size, idx1, idx2, mult):
    out = torch.zeros(*x1.shape[:-1], size, dtype=x1.dtype)
    for k in range(len(mult)):
        out[..., idx_out[k]] += x1[..., idx1[k]] * x2[..., idx2[k]] * mult[k]
    return out


@pytest.mark.parametrize("backend", ["reference", "cpu"])
@pytest.mark.parametrize("lead", [(), (2, 3)])
def test_matches_python_loop(backend, lead):
    args = cg_problem(3, 2, 4, rows=70, lead=lead)  # 70 rows: one full block of 64 and a partial one
    out = sparse_accumulate(*args, backend=backend)
    torch.testing.assert_close(out, python_loop(*args), rtol=1e-13, atol=1e-13)
    assert registry.last_backend("sparse_accumulate") == backend


def test_entry_order_does_not_matter():
    # sorted-by-output tables take the kernels' register path, shuffled ones the general path
    x1, x2, io, size, i1, i2, mult = cg_problem(4, 4, 4, rows=130)
    perm = torch.randperm(len(mult))
    assert not bool((io[perm][1:] >= io[perm][:-1]).all())
    shuffled = sparse_accumulate(x1, x2, io[perm], size, i1[perm], i2[perm], mult[perm], backend="cpu")
    ordered = sparse_accumulate(x1, x2, io, size, i1, i2, mult, backend="cpu")
    torch.testing.assert_close(shuffled, ordered, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(ordered, python_loop(x1, x2, io, size, i1, i2, mult), rtol=1e-13, atol=1e-13)


def float32_error_budget(fn, args64):
    """The reference's own float32 error against float64: the yardstick for the fast backend."""
    exact = fn(*args64, backend="reference")
    args32 = [a.float() if torch.is_tensor(a) and a.is_floating_point() else a for a in args64]
    ref32 = fn(*args32, backend="reference").double()
    return exact, args32, (ref32 - exact).abs().max().item()


def test_cpu_float32_within_reference_precision():
    args64 = cg_problem(5, 5, 6, rows=1000)
    exact, args32, budget = float32_error_budget(sparse_accumulate, args64)
    err = (sparse_accumulate(*args32, backend="cpu").double() - exact).abs().max().item()
    assert err <= 4 * budget + 1e-7


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_gradcheck_gradgradcheck(backend):
    x1, x2, io, size, i1, i2, mult = cg_problem(2, 1, 2, rows=5)
    x1.requires_grad_()
    x2.requires_grad_()
    fn = lambda a, b: sparse_accumulate(a, b, io, size, i1, i2, mult, backend=backend)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (x1, x2))
    assert torch.autograd.gradgradcheck(fn, (x1, x2))


def test_cpu_backward_and_double_backward_match_reference():
    x1, x2, io, size, i1, i2, mult = cg_problem(4, 3, 5, rows=100)
    g = torch.randn(100, size, dtype=torch.float64)

    def grads(backend):
        a, b = x1.clone().requires_grad_(), x2.clone().requires_grad_()
        out = sparse_accumulate(a, b, io, size, i1, i2, mult, backend=backend)
        ga, gb = torch.autograd.grad((out * g).sum(), (a, b), create_graph=True)
        hb = torch.autograd.grad((ga.pow(2)).sum() + gb.sum(), b)[0]
        return ga, gb, hb

    for ours, ref in zip(grads("cpu"), grads("reference")):
        torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)


def test_table_op_roles_and_derivatives():
    # the spherical-harmonics gradient table, used with permuted roles, against its explicit tensors
    from fastso3.core.sh import sh_plan

    plan = sh_plan(3, "component")
    g = torch.randn(7, 16, dtype=torch.float64, requires_grad=True)
    y = torch.randn(7, 16, dtype=torch.float64, requires_grad=True)
    out = sparse_accumulate_table_op(g, y, "sh_grad:3:component", [0, 1, 2], "cpu")
    idx = [torch.as_tensor(a.copy()) for a in (plan.bwd_dim, plan.bwd_g, plan.bwd_y)]
    ref = sparse_accumulate(g, y, idx[0], 3, idx[1], idx[2], torch.as_tensor(plan.bwd_coef.copy()), backend="reference")
    torch.testing.assert_close(out, ref)
    assert torch.autograd.gradcheck(
        lambda a, b: sparse_accumulate_table_op(a, b, "sh_grad:3:component", [0, 1, 2], "cpu"), (g, y)
    )
    with pytest.raises(ValueError, match="unknown"):
        sparse_accumulate_table_op(g, y, "nope:1", [0, 1, 2], "cpu")


def test_bad_inputs_raise():
    x1, x2, io, size, i1, i2, mult = cg_problem(1, 1, 1, rows=4)
    with pytest.raises(ValueError, match="leading"):
        sparse_accumulate(x1[:3], x2, io, size, i1, i2, mult)
    with pytest.raises(TypeError, match="dtype"):
        sparse_accumulate(x1.float(), x2, io, size, i1, i2, mult)
    with pytest.raises(IndexError, match="idx_1"):
        sparse_accumulate(x1, x2, io, size, i1 + 3, i2, mult)
    with pytest.raises(IndexError, match="idx_output"):
        sparse_accumulate(x1, x2, io, 2, i1, i2, mult)
    with pytest.raises(ValueError, match="entries"):
        sparse_accumulate(x1, x2, io[:-1], size, i1, i2, mult)
    with pytest.raises(TypeError, match="int64"):
        sparse_accumulate(x1, x2, io.int(), size, i1, i2, mult)
    with pytest.raises(ValueError, match="constants"):
        sparse_accumulate(x1, x2, io, size, i1, i2, mult.clone().requires_grad_())
    with pytest.raises(registry.BackendUnavailable):
        sparse_accumulate(x1.half(), x2.half(), io, size, i1, i2, mult, backend="cpu")


@pytest.mark.compile
def test_compile_fullgraph_matches_eager():
    torch._dynamo.reset()
    x1, x2, io, size, i1, i2, mult = cg_problem(2, 2, 2, rows=9, dtype=torch.float32)
    x1.requires_grad_()

    def fn(a, b):
        return sparse_accumulate(a, b, io, size, i1, i2, mult).pow(2).sum()

    compiled = torch.compile(fn, fullgraph=True)
    eager = fn(x1, x2)
    (ge,) = torch.autograd.grad(eager, x1)
    out = compiled(x1, x2)
    (gc,) = torch.autograd.grad(out, x1)
    torch.testing.assert_close(out, eager)
    torch.testing.assert_close(gc, ge)


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_normalize_vjp_matches_autograd_of_normalization(backend):
    from fastso3.kernels.ops import normalize_vjp_op

    x = torch.randn(70, 3, dtype=torch.float64)
    x[3] = 0.0
    g = torch.randn(70, 3, dtype=torch.float64)
    xr = x.clone().requires_grad_()
    u = xr / xr.norm(dim=-1, keepdim=True)
    (expected,) = torch.autograd.grad(u, xr, g)
    out = normalize_vjp_op(x, g, backend)
    torch.testing.assert_close(out[torch.arange(70) != 3], expected[torch.arange(70) != 3], rtol=1e-13, atol=1e-13)
    assert torch.equal(out[3], torch.zeros(3, dtype=torch.float64))
    x, g = x[4:10].clone().requires_grad_(), g[4:10].clone().requires_grad_()  # away from the zero row
    assert torch.autograd.gradcheck(lambda a, b: normalize_vjp_op(a, b, backend), (x, g))
    assert torch.autograd.gradgradcheck(lambda a, b: normalize_vjp_op(a, b, backend), (x, g))
