"""``fastso3::uvw_factored``: fully connected products with per-sample weights ``hidden @ matrix`` (a radial
MLP's last layer applied inside the kernel), against the reference twin, the materialised weights and e3nn."""

import pytest
import torch

from fastso3 import o3
from fastso3.kernels import registry
from fastso3.kernels.uvw import uvw_factored_op, uvw_factored_tensor_product
from fastso3.nn import FullyConnectedNet

e3nn_o3 = pytest.importorskip("e3nn.o3")

IRREPS = ("3x0e+2x1o+2x2e", "1x0e+1x1o+1x2e", "2x0e+3x1o+2x2e+1x1e")
HIDDEN = 5


def module(dtype=torch.float64, irreps=IRREPS, **kwargs):
    return o3.FullyConnectedTensorProduct(*irreps, shared_weights=False, **kwargs).to(dtype)


def factors(tp, batch, dtype=torch.float64):
    gen = torch.Generator().manual_seed(batch)
    x = torch.randn(batch, tp.irreps_in1.dim, generator=gen, dtype=dtype)
    y = torch.randn(batch, tp.irreps_in2.dim, generator=gen, dtype=dtype)
    hidden = torch.randn(batch, HIDDEN, generator=gen, dtype=dtype)
    matrix = torch.randn(HIDDEN, tp.weight_numel, generator=gen, dtype=dtype)
    return x, y, hidden, matrix


def table(tp) -> str:
    return f"uvw:{hash(tp.plan.key)}"


@pytest.mark.parametrize("outputs", [[0], [1], [2], [3], [4], [1, 2], [3, 4], [1, 2, 3, 4], [0, 2, 4]])
def test_every_output_subset_matches_the_reference_twin(outputs):
    # 150 samples: two full chunks of 64 and a partial one
    tp = module()
    x, y, hidden, matrix = factors(tp, 150)
    g = torch.randn(150, tp.irreps_out.dim, dtype=torch.float64)
    ref = uvw_factored_op(g, x, y, hidden, matrix, table(tp), outputs, "reference")
    ours = uvw_factored_op(g, x, y, hidden, matrix, table(tp), outputs, "cpu")
    assert registry.last_backend("uvw_tensor_product") == "cpu"
    for s, a, b in zip(outputs, ours, ref, strict=True):
        assert a.shape == b.shape, s
        torch.testing.assert_close(a, b, rtol=0, atol=1e-11)


def test_reference_twin_is_the_product_with_materialised_weights():
    tp = module()
    x, y, hidden, matrix = factors(tp, 9)
    g = torch.randn(9, tp.irreps_out.dim, dtype=torch.float64)
    leaves = [t.clone().requires_grad_() for t in (x, y, hidden, matrix)]
    direct = tp(leaves[0], leaves[1], leaves[2] @ leaves[3])
    expected = torch.autograd.grad(direct, leaves, g)
    out, *grads = uvw_factored_op(g, x, y, hidden, matrix, table(tp), [0, 1, 2, 3, 4], "reference")
    torch.testing.assert_close(out, direct, rtol=0, atol=1e-12)
    for ours, theirs in zip(grads, expected, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-11)


def test_module_matches_materialised_weights_and_e3nn(f64):
    tp = module()
    x, y, hidden, matrix = factors(tp, 70)
    out = tp(x, y, o3.FactoredWeight(hidden, matrix))
    assert registry.last_backend("uvw_tensor_product") == "cpu"
    torch.testing.assert_close(out, tp(x, y, hidden @ matrix), rtol=0, atol=1e-12)
    theirs = e3nn_o3.FullyConnectedTensorProduct(*IRREPS, shared_weights=False).double()
    assert (out - theirs(x, y, hidden @ matrix)).abs().max() <= 1e-10


def first_and_second_derivatives(fn, inputs, g) -> tuple:
    """Gradients of ``<fn(*inputs), g>`` in every input, then of the sum of their sines (second derivatives)."""
    leaves = [t.clone().requires_grad_() for t in inputs]
    first = torch.autograd.grad((fn(*leaves) * g).sum(), leaves, create_graph=True)
    return first + torch.autograd.grad(sum(f.sin().sum() for f in first), leaves)


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_first_and_second_derivatives_match_materialised_weights(backend):
    tp = module(backend=backend)
    ref = module(backend="reference")
    x, y, hidden, matrix = factors(tp, 70)
    g = torch.randn(70, tp.irreps_out.dim, dtype=torch.float64)

    ours = first_and_second_derivatives(lambda a, b, h, m: tp(a, b, o3.FactoredWeight(h, m)), (x, y, hidden, matrix), g)
    theirs = first_and_second_derivatives(lambda a, b, h, m: ref(a, b, h @ m), (x, y, hidden, matrix), g)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_gradcheck_gradgradcheck_of_the_op(backend):
    tp = module(irreps=("2x0e+1x1o", "1x0e+1x1o", "1x0e+2x1o"))
    leaves = [t.requires_grad_() for t in factors(tp, 3)]
    fn = lambda a, b, h, m: uvw_factored_tensor_product(tp.plan, a, b, h, m, backend)  # noqa: E731
    assert torch.autograd.gradcheck(fn, leaves)
    assert torch.autograd.gradgradcheck(fn, leaves)


def test_float32_within_reference_precision():
    irreps = ("8x0e+8x1o+8x2e", "1x0e+1x1o+1x2e", "8x0e+8x1o+8x2e")
    tp32, tp64 = module(torch.float32, irreps), module(torch.float64, irreps, backend="reference")
    x, y, hidden, matrix = factors(tp64, 100)
    exact = tp64(x, y, hidden @ matrix)
    x32, y32, h32, m32 = (t.float() for t in (x, y, hidden, matrix))
    budget = (tp32.to(torch.float32)(x32, y32, h32 @ m32).double() - exact).abs().max()
    err = (tp32(x32, y32, o3.FactoredWeight(h32, m32)).double() - exact).abs().max()
    assert err <= 4 * budget


def test_matrix_gradient_is_deterministic_and_thread_count_independent():
    tp = module()
    x, y, hidden, matrix = factors(tp, 300)
    matrix.requires_grad_()

    def grad():
        return torch.autograd.grad(tp(x, y, o3.FactoredWeight(hidden, matrix)).pow(2).sum(), matrix)[0]

    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = grad()
    finally:
        torch.set_num_threads(threads)
    grads = [grad() for _ in range(3)]
    assert all(torch.equal(grads[0], g) for g in grads[1:])  # bitwise, for a thread count
    torch.testing.assert_close(grads[0], single, rtol=1e-13, atol=1e-12)  # partial sums in another order


def test_the_op_checks_what_its_kernel_reads():
    tp = module()
    x, y, hidden, matrix = factors(tp, 5)
    with pytest.raises(ValueError, match="g may be None only"):
        uvw_factored_op(None, x, y, hidden, matrix, table(tp), [1], "cpu")
    with pytest.raises(ValueError, match="x2 must have shape"):
        uvw_factored_op(None, x, y[:, 1:], hidden, matrix, table(tp), [0], "cpu")
    with pytest.raises(TypeError, match="m is torch.float32"):
        uvw_factored_op(None, x, y, hidden, matrix.float(), table(tp), [0], "cpu")
    with pytest.raises(ValueError, match="distinct slots"):
        uvw_factored_op(None, x, y, hidden, matrix, table(tp), [5], "cpu")


def test_right_and_weight_views_take_factored_weights():
    tp = module()
    x, y, hidden, matrix = factors(tp, 4)
    w = o3.FactoredWeight(hidden, matrix)
    torch.testing.assert_close(tp.right(y, w), tp.right(y, hidden @ matrix), rtol=0, atol=0)


def test_broadcasting_and_empty_batch():
    tp = module()
    x, y, hidden, matrix = factors(tp, 4)
    out = tp(x[:, None], y[:3], o3.FactoredWeight(hidden[:, None], matrix))  # (4, 1) x (3,) x (4, 1) -> (4, 3)
    assert out.shape == (4, 3, tp.irreps_out.dim)
    torch.testing.assert_close(out, tp(x[:, None], y[:3], hidden[:, None] @ matrix), rtol=0, atol=1e-12)
    assert tp(x[:0], y[:0], o3.FactoredWeight(hidden[:0], matrix)).shape == (0, tp.irreps_out.dim)


def test_other_products_multiply_the_factors_first():
    tp = o3.FullTensorProduct("2x1o", "1x1o")  # no weights: FactoredWeight is rejected like any per-sample weight
    with pytest.raises(ValueError, match="shared_weights=False"):
        tp(torch.randn(3, 6), torch.randn(3, 3), o3.FactoredWeight(torch.randn(3, 2), torch.randn(2, 0)))
    instr = [(0, 0, 0, "uvu", True)]
    cw = o3.TensorProduct("4x1o", "1x0e", "4x1o", instr, shared_weights=False, internal_weights=False).double()
    assert cw._kernel == "channelwise"
    x, y, h, m = torch.randn(5, 12).double(), torch.randn(5, 1).double(), torch.randn(5, 3).double(), torch.randn(3, 4).double()
    torch.testing.assert_close(cw(x, y, o3.FactoredWeight(h, m)), cw(x, y, h @ m), rtol=0, atol=0)


def test_bad_factors_raise():
    tp = module()
    x, y, hidden, matrix = factors(tp, 4)
    with pytest.raises(ValueError, match=r"matrix must have shape \(H, "):
        tp(x, y, o3.FactoredWeight(hidden, matrix[:, 1:]))
    with pytest.raises(ValueError, match="hidden must have shape"):
        tp(x, y, o3.FactoredWeight(hidden[:, 1:], matrix))
    with pytest.raises(ValueError, match="hidden must have shape"):
        tp(x, y, o3.FactoredWeight(hidden[0], matrix))
    with pytest.raises(TypeError, match="FactoredWeight.matrix is torch.float32"):
        tp(x, y, o3.FactoredWeight(hidden, matrix.float()))
    with pytest.raises(TypeError, match="must be a torch.Tensor"):
        tp(x, y, o3.FactoredWeight(hidden, None))
    shared = o3.FullyConnectedTensorProduct(*IRREPS).double()
    with pytest.raises(ValueError, match="shared_weights=False"):
        shared(x, y, o3.FactoredWeight(hidden, matrix))


def test_fully_connected_net_factored_is_its_output():
    torch.manual_seed(0)
    net = FullyConnectedNet([4, 8, 6, 10], torch.relu).double()
    x = torch.randn(7, 4, dtype=torch.float64)
    w = net.factored(x)
    assert w.hidden.shape == (7, 6) and w.matrix.shape == (6, 10)
    assert torch.equal(w.materialize(), net(x))
    with pytest.raises(ValueError, match="linear last layer"):
        FullyConnectedNet([4, 8], torch.relu, out_act=True).factored(x[:, :4].float())
    with pytest.raises(ValueError, match="linear last layer"):
        FullyConnectedNet([4]).factored(x.float())


@pytest.mark.compile
def test_compile_fullgraph_dynamic_matches_eager():
    torch._dynamo.reset()
    tp = module(torch.float32)
    net = FullyConnectedNet([3, 5, tp.weight_numel], torch.relu)

    def fn(x, y, emb):
        return tp(x, y, net.factored(emb))

    compiled = torch.compile(fn, fullgraph=True, dynamic=True)
    for n in (5, 9):
        x, y = (t.float().requires_grad_() for t in factors(tp, n)[:2])
        emb = torch.randn(n, 3)
        eager = fn(x, y, emb)
        ge = torch.autograd.grad(eager.pow(2).sum(), (x, y, *net.parameters()))
        out = compiled(x, y, emb)
        gc = torch.autograd.grad(out.pow(2).sum(), (x, y, *net.parameters()))
        torch.testing.assert_close(out, eager)
        torch.testing.assert_close(gc, ge)
