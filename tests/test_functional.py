"""Functional API (fastso3.functional): values vs the modules and e3nn, torch.func transforms,
known-zero skipping, plan builders, and torch.compile / torch.export."""

import math

import pytest
import torch
from torch.func import grad, jacrev, vmap

from fastso3 import o3
from fastso3.core.tensor_product import linear_plan, tensor_product_plan
from fastso3.functional import (
    elementwise_tensor_product_plan,
    full_tensor_product_plan,
    fully_connected_tensor_product_plan,
    linear,
    reduced_plan,
    tensor_product,
    tensor_square_plan,
)
from fastso3.irreps_tensor import IrrepsTensor

D = torch.float64
TOL = 1e-10

IN1, IN2, OUT = "3x0e+2x1o+1x2e", "2x0e+1x1o+1x1e", "2x0e+3x1o+2x1e+1x2e"


def fctp(shared_weights=True, in1=IN1, in2=IN2, out=OUT, backend="reference", **kw):
    """The module on the reference backend, which the functional API matches bit for bit."""
    m = o3.FullyConnectedTensorProduct(
        in1, in2, out, shared_weights=shared_weights, internal_weights=False, backend=backend, **kw
    )
    return m.to(D)


def rand(plan, *batch):
    return torch.randn(*batch, plan.irreps_in1.dim, dtype=D), torch.randn(*batch, plan.irreps_in2.dim, dtype=D)


def maxdiff(a, b):
    return (a - b).abs().max().item() if a.numel() else 0.0


# --------------------------------------------------------------------------------------------------
# Builders and values
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "builder, module",
    [
        (lambda: fully_connected_tensor_product_plan(IN1, IN2, OUT), lambda: o3.FullyConnectedTensorProduct(IN1, IN2, OUT)),
        (
            lambda: fully_connected_tensor_product_plan(IN1, IN2, OUT, irrep_normalization="norm", path_normalization="path"),
            lambda: o3.FullyConnectedTensorProduct(IN1, IN2, OUT, irrep_normalization="norm", path_normalization="path"),
        ),
        (lambda: full_tensor_product_plan("0e+1o+1o", "0e+1o"), lambda: o3.FullTensorProduct("0e+1o+1o", "0e+1o")),
        (lambda: full_tensor_product_plan(IN1, IN2, filter_ir_out=["1o", "2e"]), lambda: o3.FullTensorProduct(IN1, IN2, filter_ir_out=["1o", "2e"])),
        (lambda: elementwise_tensor_product_plan("3x0e+2x1o", "2x1e+3x0o"), lambda: o3.ElementwiseTensorProduct("3x0e+2x1o", "2x1e+3x0o")),
        (lambda: tensor_square_plan("2x0e+3x1o+1x1o"), lambda: o3.TensorSquare("2x0e+3x1o+1x1o")),
        (lambda: tensor_square_plan("2x0e+3x1o", "2x0e+1x1e+2x2e", irrep_normalization="norm"), lambda: o3.TensorSquare("2x0e+3x1o", "2x0e+1x1e+2x2e", irrep_normalization="norm")),
    ],
)
def test_builders_equal_module_plans(builder, module):
    plan, m = builder(), module()
    assert plan == m.plan
    assert plan.instructions == m.plan.instructions  # coefficients included, bit for bit


def test_builders_reject_bad_input():
    with pytest.raises(ValueError):
        elementwise_tensor_product_plan("2x0e", "3x0e")
    with pytest.raises(ValueError):
        tensor_square_plan("1o", "0e", filter_ir_out=["0e"])
    with pytest.raises(ValueError):
        full_tensor_product_plan("1o", "1o", filter_ir_out=[object()])


@pytest.mark.parametrize("shared", [True, False])
def test_matches_module(shared):
    m = fctp(shared)
    x1, x2 = rand(m.plan, 5)
    w = torch.randn(m.weight_numel, dtype=D) if shared else torch.randn(5, m.weight_numel, dtype=D)
    out = tensor_product(m.plan, x1, x2, w)
    assert out.shape == (5, m.irreps_out.dim)
    assert torch.equal(out, m(x1, x2, w))
    m.backend = None  # the compiled uvw kernel: same numbers up to rounding
    torch.testing.assert_close(out, m(x1, x2, w), rtol=0, atol=1e-13)


def test_broadcasting_and_weight_list():
    m = fctp(False)
    x1 = torch.randn(3, 1, m.irreps_in1.dim, dtype=D)
    x2 = torch.randn(1, 4, m.irreps_in2.dim, dtype=D)
    w = torch.randn(4, m.weight_numel, dtype=D)
    out = tensor_product(m.plan, x1, x2, w)
    assert out.shape == (3, 4, m.irreps_out.dim)
    assert maxdiff(out, m(x1, x2, w)) == 0
    views = list(m.weight_views(w))
    assert maxdiff(tensor_product(m.plan, x1, x2, views), out) == 0
    ws = torch.randn(m.weight_numel, dtype=D)
    shared_views = [v[0] for v in m.weight_views(ws[None])]
    assert maxdiff(tensor_product(m.plan, x1, x2, shared_views), tensor_product(m.plan, x1, x2, ws)) == 0


def test_unweighted_plans_and_modes():
    # uvu<v, uuu, uvuv (no weights) and u<vw, uuw, uvw (weights)
    for plan, module in [
        (tensor_square_plan("3x0e+2x1o"), o3.TensorSquare("3x0e+2x1o")),
        (tensor_square_plan("3x0e+2x1o", "2x0e+2x1e+1x2e"), o3.TensorSquare("3x0e+2x1o", "2x0e+2x1e+1x2e", internal_weights=False)),
        (full_tensor_product_plan("2x0e+1o", "1o+2e"), o3.FullTensorProduct("2x0e+1o", "1o+2e")),
    ]:
        module = module.to(D)
        x = torch.randn(4, plan.irreps_in1.dim, dtype=D)
        y = x if plan.irreps_in1 == plan.irreps_in2 else torch.randn(4, plan.irreps_in2.dim, dtype=D)
        if plan.weight_numel:
            w = torch.randn(plan.weight_numel, dtype=D)
            ref = module(x, w) if isinstance(module, o3.TensorSquare) else module(x, y, w)
        else:
            w = None
            ref = module(x) if isinstance(module, o3.TensorSquare) else module(x, y)
        assert maxdiff(tensor_product(plan, x, y, w), ref) == 0


@pytest.mark.e3nn
def test_matches_e3nn():
    e3nn_o3 = pytest.importorskip("e3nn.o3")
    old = torch.get_default_dtype()
    torch.set_default_dtype(D)
    try:
        ref = e3nn_o3.FullyConnectedTensorProduct(IN1, IN2, OUT, shared_weights=False, _optimize_einsums=False)
        sq = e3nn_o3.TensorSquare("3x0e+2x1o", "2x0e+2x1e+1x2e", internal_weights=False, _optimize_einsums=False)
    finally:
        torch.set_default_dtype(old)
    plan = fully_connected_tensor_product_plan(IN1, IN2, OUT)
    x1, x2 = rand(plan, 6)
    w = torch.randn(6, plan.weight_numel, dtype=D)
    assert maxdiff(tensor_product(plan, x1, x2, w), ref(x1, x2, w)) <= TOL
    plan = tensor_square_plan("3x0e+2x1o", "2x0e+2x1e+1x2e")
    x = torch.randn(6, plan.irreps_in1.dim, dtype=D)
    w = torch.randn(plan.weight_numel, dtype=D)
    assert maxdiff(tensor_product(plan, x, x, w), sq(x, w)) <= TOL


def test_errors():
    m = fctp()
    plan = m.plan
    x1, x2 = rand(plan, 2)
    w = torch.randn(plan.weight_numel, dtype=D)
    with pytest.raises(ValueError, match="weights"):
        tensor_product(plan, x1, x2)
    with pytest.raises(ValueError):
        tensor_product(plan, x1[:, :-1], x2, w)
    with pytest.raises(ValueError):
        tensor_product(plan, x1, x2, w[:-1])
    with pytest.raises(TypeError):
        tensor_product(plan, x1, x2.float(), w)
    with pytest.raises(TypeError):
        tensor_product(plan, x1, x2, w.float())
    with pytest.raises(TypeError):
        tensor_product("not a plan", x1, x2, w)
    with pytest.raises(ValueError):
        tensor_product(plan, x1, x2, [w])
    with pytest.raises(ValueError):  # IrrepsTensor with other irreps
        tensor_product(plan, IrrepsTensor(plan.irreps_in1.simplify() + "0e", torch.randn(2, plan.irreps_in1.dim + 1, dtype=D)), x2, w)


# --------------------------------------------------------------------------------------------------
# torch.func
# --------------------------------------------------------------------------------------------------


def test_vmap_shared_and_batch_weights():
    plan = fully_connected_tensor_product_plan(IN1, IN2, OUT)
    x1, x2 = rand(plan, 7)
    w = torch.randn(plan.weight_numel, dtype=D)
    ws = torch.randn(7, plan.weight_numel, dtype=D)
    f = lambda w, a, b: tensor_product(plan, a, b, w)
    assert maxdiff(vmap(f, (None, 0, 0))(w, x1, x2), fctp(True)(x1, x2, w)) <= TOL
    assert maxdiff(vmap(f, (0, 0, 0))(ws, x1, x2), fctp(False)(x1, x2, ws)) <= TOL
    # the plan itself can be an unmapped argument
    assert maxdiff(vmap(tensor_product, (None, 0, 0, None))(plan, x1, x2, w), fctp(True)(x1, x2, w)) <= TOL
    # vmap over a non-leading axis, and one unmapped input
    out = vmap(f, (None, 1, None), out_dims=1)(w, x1.T.contiguous().T.unsqueeze(0).expand(2, 7, -1), x2[0])
    assert maxdiff(out[0], fctp(True)(x1, x2[0], w)) <= TOL


def test_vmap_extra_channels():
    plan = fully_connected_tensor_product_plan("2x0e+1o", "0e+1o", "1x0e+1x1o")
    f = lambda w, a, b: tensor_product(plan, a, b, w)
    f = vmap(f, (0, None, None))  # channel_out
    f = vmap(f, (0, None, 0))  # channel_in2
    f = vmap(f, (0, 0, None))  # channel_in1
    g = vmap(lambda w, a, b: f(w, a, b).sum((0, 1)) / math.sqrt(a.shape[0] * b.shape[0]), (None, 0, 0))
    n1, n2, no, batch = 2, 3, 4, 5
    w = torch.randn(n1, n2, no, plan.weight_numel, dtype=D)
    x1 = torch.randn(batch, n1, plan.irreps_in1.dim, dtype=D)
    x2 = torch.randn(batch, n2, plan.irreps_in2.dim, dtype=D)
    z = g(w, x1, x2)
    assert z.shape == (batch, no, plan.irreps_out.dim)
    m = fctp(True, "2x0e+1o", "0e+1o", "1x0e+1x1o")
    b, o = 3, 2
    ref = sum(m(x1[b, i], x2[b, j], w[i, j, o]) for i in range(n1) for j in range(n2)) / math.sqrt(n1 * n2)
    assert maxdiff(z[b, o], ref) <= TOL


def test_jacrev_is_right_operator():
    m = fctp(True)
    x1, x2 = rand(m.plan)
    w = torch.randn(m.weight_numel, dtype=D)
    jac = jacrev(lambda a: tensor_product(m.plan, a, x2, w))(x1)  # (out, in1)
    assert maxdiff(jac, m.right(x2, w).T) <= TOL
    # w.r.t. the weights: the output is linear in them
    jw = jacrev(lambda w: tensor_product(m.plan, x1, x2, w))(w)
    assert maxdiff(jw @ w, tensor_product(m.plan, x1, x2, w)) <= TOL


def test_grad_and_per_sample_grads():
    m = fctp(True)
    x1, x2 = rand(m.plan, 4)
    w = torch.randn(m.weight_numel, dtype=D, requires_grad=True)

    def loss(w, a, b):
        return tensor_product(m.plan, a, b, w).pow(2).sum()

    g = grad(loss)(w.detach(), x1, x2)
    (g_ref,) = torch.autograd.grad(loss(w, x1, x2), w)
    assert maxdiff(g, g_ref) <= TOL
    per_sample = vmap(grad(loss), (None, 0, 0))(w.detach(), x1, x2)
    assert per_sample.shape == (4, m.weight_numel)
    for i in range(4):
        (gi,) = torch.autograd.grad(loss(w, x1[i], x2[i]), w)
        assert maxdiff(per_sample[i], gi) <= TOL


def test_gradgradcheck():
    plan = fully_connected_tensor_product_plan("2x0e+1o", "0e+1o", "0e+1o+1e")
    x1 = torch.randn(2, plan.irreps_in1.dim, dtype=D, requires_grad=True)
    x2 = torch.randn(2, plan.irreps_in2.dim, dtype=D, requires_grad=True)
    w = torch.randn(plan.weight_numel, dtype=D, requires_grad=True)
    f = lambda a, b, w: tensor_product(plan, a, b, w)
    assert torch.autograd.gradcheck(f, (x1, x2, w))
    assert torch.autograd.gradgradcheck(f, (x1, x2, w))
    # per-sample weights, a square with u<v pairs
    sq = tensor_square_plan("2x1o", "1x0e+1x1e")
    x = torch.randn(2, sq.irreps_in1.dim, dtype=D, requires_grad=True)
    ws = torch.randn(2, sq.weight_numel, dtype=D, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda x, w: tensor_product(sq, x, x, w), (x, ws))


def test_double_backward_matches_finite_differences():
    # d/dx1 of <grad_x1 (v . f), u> by central differences vs create_graph autograd
    plan = fully_connected_tensor_product_plan("2x0e+1o", "1o+2e", "0e+1o+2e")
    x1, x2 = rand(plan, 3)
    w = torch.randn(plan.weight_numel, dtype=D)
    v = torch.randn(3, plan.irreps_out.dim, dtype=D)
    u = torch.randn_like(x1)

    def first(a, b):
        a = a.detach().requires_grad_(True)
        (g,) = torch.autograd.grad((tensor_product(plan, a, b, w) * v).sum(), a, create_graph=True)
        return g

    a = x1.clone().requires_grad_(True)
    b = x2.clone().requires_grad_(True)
    (g,) = torch.autograd.grad((tensor_product(plan, a, b, w) * v).sum(), a, create_graph=True)
    (gg,) = torch.autograd.grad((g * u).sum(), b)
    eps = 1e-6
    e = torch.randn_like(x2)
    fd = ((first(x1, x2 + eps * e) * u).sum() - (first(x1, x2 - eps * e) * u).sum()) / (2 * eps)
    assert abs(fd.item() - (gg * e).sum().item()) <= 1e-7


# --------------------------------------------------------------------------------------------------
# Linear
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kw",
    [dict(), dict(biases=True), dict(f_in=2, f_out=3), dict(f_in=2, f_out=3, biases=True)],
)
def test_linear_matches_module(kw):
    irreps_in, irreps_out = "3x0e+2x1o+1x2e", "2x0e+3x1o"
    shared = o3.Linear(irreps_in, irreps_out, **kw).to(D)
    with torch.no_grad():
        if shared.bias.numel():
            shared.bias.normal_()
    plan = shared.plan
    lead = (4, kw["f_in"]) if "f_in" in kw else (4,)
    x = torch.randn(*lead, plan.irreps_in.dim, dtype=D)
    b = shared.bias if plan.bias_numel else None
    assert torch.equal(linear(plan, x, shared.weight, b), shared(x))
    per = o3.Linear(irreps_in, irreps_out, shared_weights=False, **kw).to(D)
    ws = torch.randn(4, *shared.weight.shape, dtype=D)
    bs = torch.randn(4, *shared.bias.shape, dtype=D) if plan.bias_numel else None
    ref = per(x, ws, bs) if plan.bias_numel else per(x, ws)
    assert maxdiff(linear(plan, x, ws, bs), ref) <= TOL
    # vmap with per-sample weights equals the per-sample module
    if plan.bias_numel:
        out = vmap(lambda x, w, b: linear(plan, x, w, b))(x, ws, bs)
    else:
        out = vmap(lambda x, w: linear(plan, x, w))(x, ws)
    assert maxdiff(out, ref) <= TOL
    if plan.bias_numel:  # shared weight, per-sample bias
        mixed = linear(plan, x, shared.weight, bs)
        assert maxdiff(mixed, per(x, shared.weight.expand_as(ws), bs)) <= TOL


def test_linear_errors_and_zero_bias_default():
    plan = linear_plan("2x0e+1o", "3x0e+1o", biases=True)
    x = torch.randn(3, plan.irreps_in.dim, dtype=D)
    w = torch.randn(plan.weight_numel, dtype=D)
    assert maxdiff(linear(plan, x, w), linear(plan, x, w, torch.zeros(plan.bias_numel, dtype=D))) == 0
    with pytest.raises(ValueError):
        linear(plan, x)
    with pytest.raises(ValueError):
        linear(plan, x, w[:-1])
    with pytest.raises(TypeError):
        linear(plan, x, w.float())
    with pytest.raises(TypeError):
        linear(tensor_product_plan("0e", "0e", "0e", [(0, 0, 0, "uuu", False)]), x, w)


# --------------------------------------------------------------------------------------------------
# IrrepsTensor inputs and known-zero skipping
# --------------------------------------------------------------------------------------------------


def test_irreps_tensor_inputs_skip_zero_paths():
    plan = fully_connected_tensor_product_plan("2x0e+2x1o", "0e+1o", "2x0e+1o+1e")
    x1, x2 = rand(plan, 3)
    w = torch.randn(plan.weight_numel, dtype=D)
    a = IrrepsTensor.from_chunks(plan.irreps_in1, [x1[:, :2].reshape(3, 2, 1), None], (3,))
    out = tensor_product(plan, a, x2, w)
    assert isinstance(out, IrrepsTensor) and out.irreps == plan.irreps_out
    assert out.zero_flags == (False, False, True)  # 1e only comes from 1o x 1o
    assert maxdiff(out.array, tensor_product(plan, a.array, x2, w)) == 0
    # the skipped paths are really not computed: poison the flagged block
    poisoned = IrrepsTensor(plan.irreps_in1, torch.cat([a.array[:, :2], torch.full((3, 6), float("nan"), dtype=D)], -1), a.zero_flags)
    out2 = tensor_product(plan, poisoned, x2, w)
    assert torch.isfinite(out2.array).all() and maxdiff(out2.array, out.array) == 0
    # with no flag set, nothing is skipped (and the plan is the same object)
    assert reduced_plan(plan, (False, False), (False, False)) is plan
    r = reduced_plan(plan, (False, True), (False, False))
    assert r is reduced_plan(plan, (False, True), (False, False))  # cached
    assert r != plan and r.weight_numel == plan.weight_numel
    assert sum(not p.empty for p in r.paths) == sum(1 for p in plan.paths if p.i_in1 == 0)
    # both inputs IrrepsTensor, all zero -> all outputs flagged, zeros
    z = tensor_product(plan, IrrepsTensor.zeros(plan.irreps_in1, (3,), dtype=D), IrrepsTensor(plan.irreps_in2, x2), w)
    assert z.zero_flags == (True, True, True) and not z.array.any()


def test_irreps_tensor_through_vmap_and_linear():
    plan = fully_connected_tensor_product_plan("2x0e+1o", "0e+1o", "0e+1o+1e")
    x1, x2 = rand(plan, 4)
    w = torch.randn(plan.weight_numel, dtype=D)
    a = IrrepsTensor.from_chunks(plan.irreps_in1, [None, x1[:, 2:].reshape(4, 1, 3)], (4,))
    out = vmap(lambda a, b: tensor_product(plan, a, b, w))(a, IrrepsTensor(plan.irreps_in2, x2))
    assert isinstance(out, IrrepsTensor) and out.shape == (4, plan.irreps_out.dim)
    assert maxdiff(out.array, tensor_product(plan, a.array, x2, w)) == 0
    assert out.zero_flags == tensor_product(plan, a, x2, w).zero_flags
    lp = linear_plan("2x0e+1o", "3x0e+2x1o")
    y = linear(lp, a, torch.randn(lp.weight_numel, dtype=D))
    assert isinstance(y, IrrepsTensor) and y.zero_flags == (True, False)
    lpb = linear_plan("2x0e+1o", "3x0e+2x1o", biases=True)
    yb = linear(lpb, a, torch.randn(lpb.weight_numel, dtype=D))
    assert yb.zero_flags == (False, False)


# --------------------------------------------------------------------------------------------------
# torch.compile / torch.export
# --------------------------------------------------------------------------------------------------


@pytest.mark.compile
def test_compile_fullgraph_vmap_and_irreps_tensor():
    torch._dynamo.reset()
    plan = fully_connected_tensor_product_plan("2x0e+1o", "0e+1o", "0e+1o+1e", path_normalization="path")
    x1, x2 = rand(plan, 5)
    w = torch.randn(plan.weight_numel, dtype=D)

    def f(w, a, b, c):
        y = vmap(lambda a, b: tensor_product(plan, a, b, w))(a, b)
        z = tensor_product(plan, c, b, w)  # an IrrepsTensor with a known-zero entry
        return y, z

    c = IrrepsTensor.from_chunks(plan.irreps_in1, [None, x1[:, 2:].reshape(5, 1, 3)], (5,))
    y, z = torch.compile(f, fullgraph=True)(w, x1, x2, c)
    assert maxdiff(y, fctp(True, "2x0e+1o", "0e+1o", "0e+1o+1e", path_normalization="path")(x1, x2, w)) <= 1e-12
    assert isinstance(z, IrrepsTensor) and z.zero_flags == tensor_product(plan, c, x2, w).zero_flags
    assert maxdiff(z.array, tensor_product(plan, c.array, x2, w)) <= 1e-12


@pytest.mark.compile
@pytest.mark.parametrize("kind", ["functional", "module"])
def test_compile_dynamic_no_recompile(kind):
    from torch._dynamo.testing import CompileCounter

    torch._dynamo.reset()
    plan = fully_connected_tensor_product_plan("2x0e+1o", "0e+1o", "0e+1o")
    w = torch.randn(plan.weight_numel, dtype=D)
    if kind == "functional":  # the plan is a local here: its ints must not become symbolic
        fn = lambda a, b: tensor_product(plan, a, b, w)
    else:
        fn = o3.FullyConnectedTensorProduct("2x0e+1o", "0e+1o", "0e+1o").to(D)  # internal weights
    counter = CompileCounter()
    f = torch.compile(fn, backend=counter, fullgraph=True, dynamic=True)
    # (the first size is not 3: a first trace whose batch equals a CG dimension (2l+1 = 3) is
    # specialised by einsum's size checks, a limitation of the reference executor)
    for n in (7, 11, 16, 3):
        x1, x2 = rand(plan, n)
        expected = tensor_product(plan, x1, x2, w) if kind == "functional" else fn(x1, x2)
        assert maxdiff(f(x1, x2), expected) <= 1e-12
    assert counter.frame_count == 1


class _Functional(torch.nn.Module):
    def __init__(self, plan):
        super().__init__()
        self.plan = plan
        self.weight = torch.nn.Parameter(torch.randn(plan.weight_numel, dtype=D))

    def forward(self, x1, x2):
        return tensor_product(self.plan, x1, x2, self.weight)


@pytest.mark.compile
@pytest.mark.parametrize("strict", [False, True])
def test_export(strict):
    from fastso3 import functional

    m = o3.FullyConnectedTensorProduct("2x0e+1o", "0e+1o", "0e+1o+1e").to(D)
    plan = fully_connected_tensor_product_plan("2x0e+1o", "1o", "0e+1o+1e", path_normalization="path")
    f = _Functional(plan)  # a plan the functional has not seen yet: its constants are made while exporting
    for module in (m, f):
        x1, x2 = rand(module.plan, 4)
        batch = torch.export.Dim("batch")
        ep = torch.export.export(module, (x1, x2), dynamic_shapes=({0: batch}, {0: batch}), strict=strict)
        y1, y2 = rand(module.plan, 9)
        assert maxdiff(ep.module()(y1, y2), module(y1, y2)) <= 1e-12
    # the cached constants are real tensors, not the fake ones of the export trace
    for _, (cgs, pairs) in vars(functional._CONSTANTS).values():
        assert all(type(t) is torch.Tensor for t in (*cgs, *pairs) if t is not None)


@pytest.mark.compile
def test_constants_first_built_under_export_are_real_tensors():
    # a cold tp_constants cache filled during torch.export must not keep fake tensors for later eager calls
    from fastso3.kernels.reference.tensor_product import tensor_product as run, tp_constants

    plan = fully_connected_tensor_product_plan("3x0e+1o", "0e+1o", "0e+2x1o+1e", irrep_normalization="norm")
    weight = torch.randn(plan.weight_numel, dtype=torch.float64)

    class Fn(torch.nn.Module):
        def forward(self, a, b):
            cg, pairs = tp_constants(plan, a.dtype, a.device)
            return run(plan, a, b, weight, cg, pairs, True)

    x1, x2 = torch.randn(4, 6, dtype=torch.float64), torch.randn(4, 4, dtype=torch.float64)
    batch = torch.export.Dim("batch")
    torch.export.export(Fn(), (x1, x2), dynamic_shapes=({0: batch}, {0: batch}))
    cgs, _ = tp_constants(plan, torch.float64, torch.device("cpu"))
    assert all(type(c) is torch.Tensor for c in cgs if c is not None)
    torch.testing.assert_close(Fn()(x1, x2), tensor_product(plan, x1, x2, weight))
