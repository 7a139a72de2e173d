"""``fastso3::cw_factored``: channel-wise (``uvu``) products with per-sample weights ``hidden @ matrix`` (a radial
MLP's last layer), formed a block of samples at a time, against the reference twin and the materialised weights."""

import pytest
import torch

from fastso3 import o3
from fastso3.core.tensor_product_builders import channelwise_tensor_product_spec
from fastso3.kernels import channelwise, registry
from fastso3.kernels.channelwise import channelwise_factored_tensor_product, cw_factored_op
from tests.kernels.test_uvw_factored import first_and_second_derivatives

HIDDEN = 5


def module(dtype=torch.float64, backend=None, channels=3, lmax=2):
    """``channels x (0e + 1o + ...)`` (degrees <= lmax) times sh(lmax), a uvu path into each output of degree <= lmax."""
    irreps_in1 = o3.Irreps([(channels, (l, (-1) ** l)) for l in range(lmax + 1)])
    keep = [(l, p) for l in range(lmax + 1) for p in (1, -1)]
    spec = channelwise_tensor_product_spec(irreps_in1, o3.Irreps.spherical_harmonics(lmax), keep)
    args = (irreps_in1, spec["irreps_in2"], spec["irreps_out"], spec["instructions"])
    return o3.TensorProduct(*args, shared_weights=False, backend=backend).to(dtype)


def factors(tp, batch, dtype=torch.float64):
    gen = torch.Generator().manual_seed(batch)
    x = torch.randn(batch, tp.irreps_in1.dim, generator=gen, dtype=dtype)
    y = torch.randn(batch, tp.irreps_in2.dim, generator=gen, dtype=dtype)
    hidden = torch.randn(batch, HIDDEN, generator=gen, dtype=dtype)
    matrix = torch.randn(HIDDEN, tp.weight_numel, generator=gen, dtype=dtype)
    return x, y, hidden, matrix


def table(tp) -> str:
    return channelwise.register_channelwise_plan(tp.plan)


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of 24 samples of the default float64 module: 40 samples cross a full block (above the kernels'
    16-sample threshold for threads) and a partial one (below it)."""
    monkeypatch.setattr(channelwise, "_BLOCK_BYTES", 24 * module().weight_numel * 8)


@pytest.mark.parametrize("outputs", [[0], [1], [2], [3], [4], [1, 2], [3, 4], [1, 2, 3, 4], [0, 2, 4]])
def test_every_output_subset_matches_the_reference_twin(outputs, small_blocks):
    tp = module()
    x, y, hidden, matrix = factors(tp, 40)
    g = torch.randn(40, tp.irreps_out.dim, dtype=torch.float64)
    ref = cw_factored_op(g, x, y, hidden, matrix, table(tp), outputs, "reference")
    ours = cw_factored_op(g, x, y, hidden, matrix, table(tp), outputs, "cpu")
    assert registry.last_backend("channelwise_tensor_product") == "cpu"
    for s, a, b in zip(outputs, ours, ref, strict=True):
        assert a.shape == b.shape, s
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_reference_twin_is_the_product_with_materialised_weights():
    tp = module(backend="reference")
    x, y, hidden, matrix = factors(tp, 9)
    g = torch.randn(9, tp.irreps_out.dim, dtype=torch.float64)
    leaves = [t.clone().requires_grad_() for t in (x, y, hidden, matrix)]
    direct = tp(leaves[0], leaves[1], leaves[2] @ leaves[3])
    expected = torch.autograd.grad(direct, leaves, g)
    out, *grads = cw_factored_op(g, x, y, hidden, matrix, table(tp), [0, 1, 2, 3, 4], "reference")
    torch.testing.assert_close(out, direct, rtol=0, atol=1e-12)
    for ours, theirs in zip(grads, expected, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-12)


def test_module_takes_factored_weights(f64, small_blocks):
    tp = module()
    x, y, hidden, matrix = factors(tp, 40)
    out = tp(x, y, o3.FactoredWeight(hidden, matrix))
    assert registry.last_backend("channelwise_tensor_product") == "cpu"
    torch.testing.assert_close(out, tp(x, y, hidden @ matrix), rtol=0, atol=1e-12)


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_first_and_second_derivatives_match_materialised_weights(backend, small_blocks):
    tp = module(backend=backend)
    ref = module(backend="reference")
    x, y, hidden, matrix = factors(tp, 40)
    g = torch.randn(40, tp.irreps_out.dim, dtype=torch.float64)

    ours = first_and_second_derivatives(lambda a, b, h, m: tp(a, b, o3.FactoredWeight(h, m)), (x, y, hidden, matrix), g)
    theirs = first_and_second_derivatives(lambda a, b, h, m: ref(a, b, h @ m), (x, y, hidden, matrix), g)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_gradcheck_gradgradcheck_of_the_op(backend, monkeypatch):
    tp = module(channels=2, lmax=1)
    monkeypatch.setattr(channelwise, "_BLOCK_BYTES", 2 * tp.weight_numel * 8)  # blocks of 2 of the 3 samples
    leaves = [t.requires_grad_() for t in factors(tp, 3)]
    fn = lambda a, b, h, m: channelwise_factored_tensor_product(tp.plan, a, b, h, m, backend)  # noqa: E731
    assert torch.autograd.gradcheck(fn, leaves)
    assert torch.autograd.gradgradcheck(fn, leaves)


def test_float32_within_reference_precision():
    tp32, tp64 = module(torch.float32, channels=8, lmax=2), module(torch.float64, "reference", channels=8, lmax=2)
    x, y, hidden, matrix = factors(tp64, 100)
    exact = tp64(x, y, hidden @ matrix)
    x32, y32, h32, m32 = (t.float() for t in (x, y, hidden, matrix))
    budget = (tp32(x32, y32, h32 @ m32).double() - exact).abs().max()
    err = (tp32(x32, y32, o3.FactoredWeight(h32, m32)).double() - exact).abs().max()
    assert err <= 4 * budget


def test_the_op_checks_what_its_kernels_read():
    tp = module()
    x, y, hidden, matrix = factors(tp, 5)
    with pytest.raises(ValueError, match="g may be None only"):
        cw_factored_op(None, x, y, hidden, matrix, table(tp), [1], "cpu")
    with pytest.raises(ValueError, match="x2 must have shape"):
        cw_factored_op(None, x, y[:, 1:], hidden, matrix, table(tp), [0], "cpu")
    with pytest.raises(ValueError, match="m must have shape"):
        cw_factored_op(None, x, y, hidden, matrix[:, 1:], table(tp), [0], "cpu")
    with pytest.raises(TypeError, match="m is torch.float32"):
        cw_factored_op(None, x, y, hidden, matrix.float(), table(tp), [0], "cpu")
    with pytest.raises(ValueError, match="distinct slots"):
        cw_factored_op(None, x, y, hidden, matrix, table(tp), [5], "cpu")
    with pytest.raises(ValueError, match="unknown table"):
        cw_factored_op(None, x, y, hidden, matrix, "uvu:none", [0], "cpu")


def test_empty_batch():
    tp = module()
    x, y, hidden, matrix = factors(tp, 0)
    assert tp(x, y, o3.FactoredWeight(hidden, matrix)).shape == (0, tp.irreps_out.dim)


@pytest.mark.compile
def test_compile_fullgraph_matches_eager():
    torch._dynamo.reset()
    tp = module(torch.float32)
    x, y, hidden, matrix = (t.requires_grad_() for t in factors(tp, 20, torch.float32))

    def fn(a, b, h, m):
        return tp(a, b, o3.FactoredWeight(h, m))

    compiled = torch.compile(fn, fullgraph=True)
    for f in (fn, compiled):
        out = f(x, y, hidden, matrix)
        grads = torch.autograd.grad(out.pow(2).sum(), (x, hidden, matrix))
        if f is fn:
            expected = (out, *grads)
    torch.testing.assert_close((out, *grads), expected)
