"""Tensor-product modules vs e3nn 0.6.0: values, gradients, double gradients, layout, state dicts."""

import math

import matplotlib

matplotlib.use("Agg")

import pytest
import torch

from fastso3 import o3
from fastso3.compat import from_e3nn, to_e3nn
from fastso3.testing import assert_equivariant, random_irreps

e3nn_o3 = pytest.importorskip("e3nn.o3")

TOL = 1e-10  # float64 agreement with e3nn
FAST = dict(_optimize_einsums=False)  # e3nn construction without opt_einsum's search (faster tests)

T, F = True, False
# One small case per connection mode: several paths, shared outputs, weighted and unweighted paths.
MODE_CASES = {
    "uvw": ("2x0e+2x1o", "1x0e+2x1o", "3x0e+2x1o+1x1e", [(0, 0, 0, "uvw", T), (1, 1, 0, "uvw", T), (0, 1, 1, "uvw", T), (1, 0, 1, "uvw", T, 0.5), (1, 1, 2, "uvw", T)]),
    "uvu": ("2x0e+2x1o", "1x0e+2x1o", "2x0e+2x1o+2x1e", [(0, 0, 0, "uvu", T), (1, 1, 0, "uvu", F), (0, 1, 1, "uvu", T), (1, 0, 1, "uvu", F), (1, 1, 2, "uvu", T)]),
    "uvv": ("1x0e+2x1o", "2x0e+2x1o", "2x0e+2x1o+2x1e", [(0, 0, 0, "uvv", T), (1, 1, 0, "uvv", F), (0, 1, 1, "uvv", T), (1, 0, 1, "uvv", F), (1, 1, 2, "uvv", T)]),
    "uuw": ("2x0e+2x1o", "2x0e+2x1o", "3x0e+1x1o+1x1e", [(0, 0, 0, "uuw", T), (1, 1, 0, "uuw", T), (0, 1, 1, "uuw", F), (1, 0, 1, "uuw", T), (1, 1, 2, "uuw", F)]),
    "uuu": ("2x0e+2x1o", "2x0e+2x1o", "2x0e+2x1o+2x1e", [(0, 0, 0, "uuu", T), (1, 1, 0, "uuu", F), (0, 1, 1, "uuu", T), (1, 0, 1, "uuu", F), (1, 1, 2, "uuu", T, 3.0)]),
    "uvuv": ("2x0e+1x1o", "1x0e+2x1o", "2x0e+4x1o+2x0e+2x1e", [(0, 0, 0, "uvuv", T), (1, 1, 0, "uvuv", F), (0, 1, 1, "uvuv", F), (1, 1, 2, "uvuv", T), (1, 1, 3, "uvuv", F)]),
    "uvu<v": ("3x0e+3x1o", "3x0e+3x1o", "3x0e+3x1o+3x1e", [(0, 0, 0, "uvu<v", T), (1, 1, 0, "uvu<v", F), (0, 1, 1, "uvu<v", T), (1, 0, 1, "uvu<v", F), (1, 1, 2, "uvu<v", T)]),
    "u<vw": ("3x0e+3x1o", "3x0e+3x1o", "2x0e+1x1o+2x1e", [(0, 0, 0, "u<vw", T), (1, 1, 0, "u<vw", T), (0, 1, 1, "u<vw", T), (1, 0, 1, "u<vw", T), (1, 1, 2, "u<vw", T)]),
    "mixed": ("2x0e+2x1o+1x2e", "2x0e+1x1o", "2x0e+2x1o+2x1e+1x2e", [(0, 0, 0, "uvu", T), (1, 1, 0, "uvw", T), (0, 0, 0, "uuu", F), (1, 0, 1, "uuw", T), (1, 1, 2, "uvuv", F), (2, 1, 1, "uvw", T), (2, 0, 3, "uvw", T, 2.0)]),
}
RIGHT_MODES = ["uvw", "uvu", "uvv", "uuw", "uuu", "uvuv", "mixed"]


def e64(cls, *args, **kwargs):
    """An e3nn module built with float64 as the default dtype, so that its CG tables are exact in float64
    (e3nn computes them in the default dtype; converting a float32 module keeps float32-rounded tables)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        return cls(*args, **kwargs)
    finally:
        torch.set_default_dtype(old)


def make_pair(case, shared_weights=True, internal_weights=False, **kwargs):
    in1, in2, out, ins = MODE_CASES[case]
    kw = dict(shared_weights=shared_weights, internal_weights=internal_weights, **kwargs)
    compile_right = case in RIGHT_MODES
    ref = e64(e3nn_o3.TensorProduct, in1, in2, out, ins, compile_right=compile_right, **kw, **FAST)
    ours = o3.TensorProduct(in1, in2, out, ins, **kw).double()
    return ours, ref


def _max(a, b):
    return (a - b).abs().max().item() if a.numel() else 0.0


def check_values_and_derivatives(ours, ref, inputs, call=None):
    """Outputs, first derivatives and second derivatives of ``call(module, *inputs)`` agree."""
    call = call or (lambda m, *args: m(*args))
    inputs = [t.detach().requires_grad_(True) for t in inputs]
    out_o, out_r = call(ours, *inputs), call(ref, *inputs)
    assert out_o.shape == out_r.shape
    assert _max(out_o, out_r) <= TOL
    if not out_r.requires_grad:  # no path at all: a constant zero output
        assert not out_o.requires_grad or out_o.abs().max() == 0
        return
    v = torch.randn_like(out_r)
    g_o = torch.autograd.grad((out_o * v).sum(), inputs, create_graph=True)
    g_r = torch.autograd.grad((out_r * v).sum(), inputs, create_graph=True)
    for a, b in zip(g_o, g_r):
        assert _max(a, b) <= TOL
    r = [torch.randn_like(t) for t in inputs]
    s_o = sum((a * b).sum() for a, b in zip(g_o, r))
    s_r = sum((a * b).sum() for a, b in zip(g_r, r))
    gg_o = torch.autograd.grad(s_o, inputs, allow_unused=True)
    gg_r = torch.autograd.grad(s_r, inputs, allow_unused=True)
    for a, b in zip(gg_o, gg_r):
        if a is None or b is None:
            assert (a is None or a.abs().max() == 0) and (b is None or b.abs().max() == 0)
        else:
            assert _max(a, b) <= TOL


@pytest.mark.parametrize("case", list(MODE_CASES))
@pytest.mark.parametrize("shared", [True, False])
def test_modes_match_e3nn(case, shared):
    ours, ref = make_pair(case, shared_weights=shared)
    assert [tuple(i) for i in ours.instructions] == [tuple(i) for i in ref.instructions]
    assert ours.weight_numel == ref.weight_numel
    torch.testing.assert_close(ours.output_mask, ref.output_mask, rtol=0, atol=0)
    x = ours.irreps_in1.randn(3, -1, dtype=torch.float64)
    y = ours.irreps_in2.randn(3, -1, dtype=torch.float64)
    w = torch.randn(ours.weight_numel, dtype=torch.float64) if shared else torch.randn(3, ours.weight_numel, dtype=torch.float64)
    check_values_and_derivatives(ours, ref, [x, y, w])


@pytest.mark.parametrize("case", ["uvw", "uvu<v", "mixed"])
def test_internal_weights_match_e3nn(case):
    ours, ref = make_pair(case, internal_weights=True)
    assert isinstance(ours.weight, torch.nn.Parameter) and ours.weight.shape == (ours.weight_numel,)
    with torch.no_grad():
        ours.weight.copy_(ref.weight)
    x = ours.irreps_in1.randn(5, -1, dtype=torch.float64)
    y = ours.irreps_in2.randn(5, -1, dtype=torch.float64)
    assert _max(ours(x, y), ref(x, y)) <= TOL
    (ours(x, y) ** 2).sum().backward()
    (ref(x, y) ** 2).sum().backward()
    assert _max(ours.weight.grad, ref.weight.grad) <= TOL


@pytest.mark.parametrize("case", ["uvw", "uvu", "uvuv"])
def test_broadcasting_of_batch_dimensions(case):
    ours, ref = make_pair(case, shared_weights=False)
    x = ours.irreps_in1.randn(3, 1, -1, dtype=torch.float64)
    y = ours.irreps_in2.randn(1, 2, -1, dtype=torch.float64)
    w = torch.randn(3, 1, ours.weight_numel, dtype=torch.float64)
    out = ours(x, y, w)
    assert out.shape == (3, 2, ours.irreps_out.dim)
    assert _max(out, ref(x, y, w)) <= TOL
    # shared weights broadcast x and y only
    ours_s, ref_s = make_pair(case)
    ws = torch.randn(ours_s.weight_numel, dtype=torch.float64)
    assert _max(ours_s(x, y, ws), ref_s(x, y, ws)) <= TOL
    # no batch dimension at all
    assert _max(ours_s(x[0, 0], y[0, 0], ws), ref_s(x[0, 0], y[0, 0], ws)) <= TOL


@pytest.mark.parametrize("case", RIGHT_MODES)
@pytest.mark.parametrize("shared", [True, False])
def test_right_matches_e3nn(case, shared):
    ours, ref = make_pair(case, shared_weights=shared)
    x = ours.irreps_in1.randn(4, -1, dtype=torch.float64)
    y = ours.irreps_in2.randn(4, -1, dtype=torch.float64)
    w = torch.randn(ours.weight_numel, dtype=torch.float64) if shared else torch.randn(4, ours.weight_numel, dtype=torch.float64)
    check_values_and_derivatives(ours, ref, [y, w], call=lambda m, y_, w_: m.right(y_, w_))
    r = ours.right(y, w)
    assert r.shape == (4, ours.irreps_in1.dim, ours.irreps_out.dim)
    assert _max(torch.einsum("...i,...ij->...j", x, r), ours(x, y, w)) <= TOL


@pytest.mark.parametrize("case", ["uvu<v", "u<vw"])
def test_right_not_implemented(case):
    ours, _ = make_pair(case)
    y = ours.irreps_in2.randn(2, -1, dtype=torch.float64)
    with pytest.raises(NotImplementedError):
        ours.right(y, torch.randn(ours.weight_numel, dtype=torch.float64))


@pytest.mark.parametrize("irrep_normalization", ["component", "norm", "none"])
@pytest.mark.parametrize("path_normalization", ["element", "path", "none"])
def test_fully_connected_matches_e3nn(irrep_normalization, path_normalization):
    in1, in2, out = "2x0e+1x1o+1x2e", "1x0e+2x1o", "2x0e+2x1o+1x1e+1x2e"
    kw = dict(irrep_normalization=irrep_normalization, path_normalization=path_normalization)
    ref = e64(e3nn_o3.FullyConnectedTensorProduct, in1, in2, out, **kw, **FAST)
    ours = o3.FullyConnectedTensorProduct(in1, in2, out, **kw).double()
    assert repr(ours) == repr(ref)
    with torch.no_grad():
        ours.weight.copy_(ref.weight)
    x, y = ours.irreps_in1.randn(6, -1, dtype=torch.float64), ours.irreps_in2.randn(6, -1, dtype=torch.float64)
    assert _max(ours(x, y), ref(x, y)) <= TOL


def test_random_fully_connected_match_e3nn():
    for _ in range(4):
        in1, in2, out = random_irreps(3, lmax=2, mul_max=3, len_min=1, len_max=3, clean=True)
        ref = e64(e3nn_o3.FullyConnectedTensorProduct, str(in1), str(in2), str(out), shared_weights=False, **FAST)
        ours = o3.FullyConnectedTensorProduct(in1, in2, out, shared_weights=False).double()
        x, y = in1.randn(3, -1, dtype=torch.float64), in2.randn(3, -1, dtype=torch.float64)
        check_values_and_derivatives(ours, ref, [x, y, torch.randn(3, ours.weight_numel, dtype=torch.float64)])


def test_float32_matches_e3nn():
    in1, in2, out = "3x0e+2x1o+1x2e", "1x0e+1x1o+1x2e", "2x0e+2x1o+2x2e"
    ref = e3nn_o3.FullyConnectedTensorProduct(in1, in2, out, **FAST)
    ours = from_e3nn(ref)
    assert ours.weight.dtype == torch.float32
    x, y = torch.randn(10, ours.irreps_in1.dim), torch.randn(10, ours.irreps_in2.dim)
    torch.testing.assert_close(ours(x, y), ref(x, y), rtol=1e-5, atol=1e-5)


def test_list_of_weights_and_weight_views():
    ours, ref = make_pair("mixed")
    w = torch.randn(ours.weight_numel, dtype=torch.float64)
    views = list(ours.weight_views(w, yield_instruction=True))
    ref_views = list(ref.weight_views(w, yield_instruction=True))
    assert [i for i, _, _ in views] == [i for i, _, _ in ref_views]
    for (_, ins, a), (_, _, b) in zip(views, ref_views):
        assert a.shape == ins.path_shape and torch.equal(a, b)
    for i, ins, view in views:
        assert torch.equal(ours.weight_view_for_instruction(i, w), view)
    with pytest.raises(ValueError, match="no weights"):
        ours.weight_view_for_instruction(2, w)  # the unweighted uuu path
    x, y = ours.irreps_in1.randn(2, -1, dtype=torch.float64), ours.irreps_in2.randn(2, -1, dtype=torch.float64)
    listed = [v.clone() for _, _, v in views]
    assert torch.equal(ours(x, y, listed), ours(x, y, w))
    # per-sample lists
    ours_u, _ = make_pair("mixed", shared_weights=False)
    wb = torch.randn(2, ours.weight_numel, dtype=torch.float64)
    listed_b = [v.clone() for v in ours_u.weight_views(wb)]
    assert all(v.shape[0] == 2 for v in listed_b)
    assert torch.equal(ours_u(x, y, listed_b), ours_u(x, y, wb))


# ------------------------------------------------------------------------------------------------
# subclasses
# ------------------------------------------------------------------------------------------------


def test_full_tensor_product_matches_e3nn():
    ours = o3.FullTensorProduct("0e+1o", "0e+1o")
    assert str(ours.irreps_out) == "1x0e+1x0e+1x1o+1x1o+1x1e+1x2e"
    for _ in range(4):
        in1, in2 = random_irreps(2, lmax=2, mul_max=2, len_min=1, len_max=3, clean=True)
        for filt in [None, ["0e", "1o", "2e"]]:
            ref = e64(e3nn_o3.FullTensorProduct, str(in1), str(in2), filter_ir_out=filt, **FAST)
            ours = o3.FullTensorProduct(in1, in2, filter_ir_out=filt).double()
            assert str(ours.irreps_out) == str(ref.irreps_out)
            assert repr(ours) == repr(ref)
            x, y = ours.irreps_in1.randn(3, -1, dtype=torch.float64), ours.irreps_in2.randn(3, -1, dtype=torch.float64)
            check_values_and_derivatives(ours, ref, [x, y])


def test_full_tensor_product_vector_formulas():
    tp = o3.FullTensorProduct("1o", "1o", irrep_normalization="component").double()
    a, b = torch.randn(2, 3, dtype=torch.float64)
    out = tp(a, b)
    assert str(tp.irreps_out) == "1x0e+1x1e+1x2e"
    assert abs(out[0] - a.dot(b) / math.sqrt(3)) < 1e-14
    assert (out[1:4] - torch.linalg.cross(a, b) / math.sqrt(2)).abs().max() < 1e-14


def test_elementwise_tensor_product_matches_e3nn():
    ours = o3.ElementwiseTensorProduct("5x1o + 5x1e", "10x1e", ["0e", "0o"])
    assert repr(ours) == "ElementwiseTensorProduct(5x1o+5x1e x 10x1e -> 5x0o+5x0e | 10 paths | 0 weights)"
    for in1, in2, filt in [("2x0e+3x1o", "1x1o+4x0e", None), ("1x0e+2x1e+1x2o", "3x1o+1x2e", ["1e", "2o", "0o"])]:
        ref = e64(e3nn_o3.ElementwiseTensorProduct, in1, in2, filter_ir_out=filt, **FAST)
        ours = o3.ElementwiseTensorProduct(in1, in2, filter_ir_out=filt).double()
        assert str(ours.irreps_out) == str(ref.irreps_out) and str(ours.irreps_in1) == str(ref.irreps_in1)
        x, y = ours.irreps_in1.randn(4, -1, dtype=torch.float64), ours.irreps_in2.randn(4, -1, dtype=torch.float64)
        check_values_and_derivatives(ours, ref, [x, y])
    with pytest.raises(ValueError, match="number of irreps"):
        o3.ElementwiseTensorProduct("2x0e", "3x0e")


@pytest.mark.parametrize("irrep_normalization", ["component", "norm", "none"])
def test_tensor_square_matches_e3nn(irrep_normalization):
    irreps = "2x0e+3x1o+1x2e+1x1o"
    ref = e64(e3nn_o3.TensorSquare, irreps, irrep_normalization=irrep_normalization, **FAST)
    ours = o3.TensorSquare(irreps, irrep_normalization=irrep_normalization).double()
    assert str(ours.irreps_out) == str(ref.irreps_out) and repr(ours) == repr(ref)
    assert [tuple(i) for i in ours.instructions] == [tuple(i) for i in ref.instructions]
    x = ours.irreps_in.randn(3, -1, dtype=torch.float64)
    check_values_and_derivatives(ours, ref, [x])

    out = "2x0e+2x1o+1x1e+1x2e"
    ref = e64(e3nn_o3.TensorSquare, irreps, out, irrep_normalization=irrep_normalization, **FAST)
    ours = o3.TensorSquare(irreps, out, irrep_normalization=irrep_normalization).double()
    assert [tuple(i) for i in ours.instructions] == [tuple(i) for i in ref.instructions]
    with torch.no_grad():
        ours.weight.copy_(ref.weight)
    assert _max(ours(x), ref(x)) <= TOL
    ours_u = o3.TensorSquare(irreps, out, shared_weights=False, irrep_normalization=irrep_normalization).double()
    ref_u = e64(e3nn_o3.TensorSquare, irreps, out, shared_weights=False, irrep_normalization=irrep_normalization, **FAST)
    check_values_and_derivatives(ours_u, ref_u, [x, torch.randn(3, ours_u.weight_numel, dtype=torch.float64)])
    with pytest.raises(ValueError, match="not both"):
        o3.TensorSquare(irreps, out, filter_ir_out=["0e"])


def test_norm():
    norm = o3.Norm("1x1o+2x0e")
    assert repr(norm) == "Norm(1x1o+2x0e)" and str(norm.irreps_out) == "3x0e"
    x = torch.tensor([[3.0, 4.0, 0.0, -2.0, 0.5]])
    torch.testing.assert_close(norm(x), torch.tensor([[5.0, 2.0, 0.5]]))
    assert o3.Norm("2x1e")(torch.tensor([3.0, 0.0, 4.0, 0.0, 0.0, 0.0]))[0].item() == pytest.approx(5.0)
    for squared in [False, True]:
        irreps = "2x0e+1x1o+3x2e+1x1o"
        ref = e64(e3nn_o3.Norm, irreps, squared=squared)
        ours = o3.Norm(irreps, squared=squared).double()
        x = ours.irreps_in.randn(4, -1, dtype=torch.float64)
        assert _max(ours(x), ref(x)) <= TOL
        assert str(ours.irreps_out) == str(ref.irreps_out)


# ------------------------------------------------------------------------------------------------
# properties
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", list(MODE_CASES))
def test_equivariance(case):
    ours, _ = make_pair(case, internal_weights=True)
    x = ours.irreps_in1.randn(3, -1, dtype=torch.float64)
    y = ours.irreps_in2.randn(3, -1, dtype=torch.float64)
    assert_equivariant(ours, args_in=[x, y], irreps_in=[ours.irreps_in1, ours.irreps_in2], irreps_out=ours.irreps_out)


def test_equivariance_of_subclasses():
    sq = o3.TensorSquare("2x0e+2x1o+1x2e", "1x0e+2x1e+1x2e").double()
    assert_equivariant(sq, args_in=[sq.irreps_in.randn(2, -1, dtype=torch.float64)], irreps_in=[sq.irreps_in], irreps_out=sq.irreps_out)
    fc = o3.FullyConnectedTensorProduct("2x0e+1x1o+1x2o", "1x0o+1x1e", "2x0o+2x1o+1x1e+1x2e").double()
    assert_equivariant(fc, args_in=[fc.irreps_in1.randn(2, -1, dtype=torch.float64), fc.irreps_in2.randn(2, -1, dtype=torch.float64)])


def test_normalization_second_moment():
    # Unit-variance inputs and per-sample N(0,1) weights: with 'component' normalization every output
    # component has E[z^2] = 1. z is a sum of products of three Gaussians (fourth moment <= 27 for
    # one term), so var(z^2) <= 26; averaged over n = 20000 samples (and over the components of an
    # entry) the standard error is <= sqrt(26 / 20000) = 0.036: the tolerance 0.1 is > 2.7 sigma in
    # the worst case (one term), > 5 sigma for typical fan-ins; the seed makes it deterministic.
    n = 20000
    torch.manual_seed(1)
    tp = o3.FullyConnectedTensorProduct("2x0e+1x1o+1x2e", "1x0e+1x1o+1x2e", "3x0e+2x1o+1x1e+2x2e", shared_weights=False).double()
    x = torch.randn(n, tp.irreps_in1.dim, dtype=torch.float64)
    y = torch.randn(n, tp.irreps_in2.dim, dtype=torch.float64)
    w = torch.randn(n, tp.weight_numel, dtype=torch.float64)
    z2 = tp(x, y, w).pow(2).mean(0)
    for s in tp.irreps_out.slices():
        assert abs(z2[s].mean().item() - 1) < 0.1
    sq = o3.TensorSquare("2x0e+2x1o+1x2e").double()
    z2 = sq(torch.randn(n, sq.irreps_in.dim, dtype=torch.float64)).pow(2).mean(0)
    for s in sq.irreps_out.slices():
        assert abs(z2[s].mean().item() - 1) < 0.1
    # and a wrong coefficient would be caught: doubling a path weight moves the moment to ~4
    tp2 = o3.TensorProduct("1x0e", "1x0e", "1x0e", [(0, 0, 0, "uvw", True, 4.0)], shared_weights=False).double()
    z2 = tp2(x[:, :1], y[:, :1], w[:, :1]).pow(2).mean().item()
    assert abs(z2 - 4) < 0.5


def test_gradcheck_and_gradgradcheck():
    tp = o3.FullyConnectedTensorProduct("1x0e+1x1o", "1x1o+1x0e", "1x0e+1x1e+1x1o", shared_weights=False).double()
    x = torch.randn(2, tp.irreps_in1.dim, dtype=torch.float64, requires_grad=True)
    y = torch.randn(2, tp.irreps_in2.dim, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, tp.weight_numel, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(tp, (x, y, w))
    assert torch.autograd.gradgradcheck(tp, (x, y, w))


# ------------------------------------------------------------------------------------------------
# state dicts and conversion
# ------------------------------------------------------------------------------------------------


def _e3nn_modules():
    return [
        e64(e3nn_o3.FullyConnectedTensorProduct, "2x0e+1x1o", "1x0e+1x1o", "2x0e+1x1o+1x1e", **FAST),
        e64(e3nn_o3.FullTensorProduct, "2x0e+1x1o", "1x1o+1x2e", **FAST),
        e64(e3nn_o3.ElementwiseTensorProduct, "2x0e+1x1o", "2x1o+1x0e", **FAST),
        e64(e3nn_o3.TensorSquare, "2x0e+2x1o", **FAST),
        e64(e3nn_o3.TensorSquare, "2x0e+2x1o", "1x0e+1x1e+1x2e", **FAST),
        e64(e3nn_o3.TensorProduct, *MODE_CASES["mixed"], in1_var=[1, 2, 3], out_var=[0.5, 1, 1, 2], **FAST),
        e64(e3nn_o3.TensorProduct, *MODE_CASES["uvw"], shared_weights=False, **FAST),
    ]


def _inputs(module, batch=3):
    if hasattr(module, "irreps_in1") and type(module).__name__ != "TensorSquare":
        args = [torch.randn(batch, module.irreps_in1.dim), torch.randn(batch, module.irreps_in2.dim)]
    else:
        args = [torch.randn(batch, module.irreps_in.dim)]
    if not module.shared_weights:
        args.append(torch.randn(batch, module.weight_numel))
    return [a.double() for a in args]


def test_from_e3nn_and_to_e3nn_round_trip():
    for ref in _e3nn_modules():
        ours = from_e3nn(ref)
        assert type(ours).__name__ == type(ref).__name__
        assert ours.output_mask.dtype == torch.float64
        args = _inputs(ref)
        assert _max(ours(*args), ref(*args)) <= TOL
        assert [tuple(i) for i in ours.instructions] == [tuple(i) for i in ref.instructions]
        codegen = ("_compiled_main_left_right.", "_compiled_main_right.")
        assert sorted(ours.state_dict()) == sorted(k for k in ref.state_dict() if not k.startswith(codegen))
        back = to_e3nn(ours)
        assert type(back) is type(ref)
        assert [tuple(i) for i in back.instructions] == [tuple(i) for i in ref.instructions]  # bit-exact c
        assert _max(back(*args), ref(*args)) <= TOL
        if ref.weight_numel and ref.internal_weights:
            assert torch.equal(back.weight, ref.weight)


def test_to_e3nn_of_native_modules():
    for ours in [
        o3.FullyConnectedTensorProduct("2x0e+1x1o", "1x0e+1x1o", "2x0e+1x1o", path_normalization="path").double(),
        o3.TensorSquare("3x0e+2x1o", irrep_normalization="norm").double(),
        o3.TensorProduct(*MODE_CASES["uvu<v"], shared_weights=False).double(),
    ]:
        ref = to_e3nn(ours)
        args = _inputs(ours)
        assert _max(ours(*args), ref(*args)) <= TOL
    norm = o3.Norm("2x1o+1x0e", squared=True)
    x = torch.randn(2, 7)
    torch.testing.assert_close(from_e3nn(to_e3nn(norm))(x), norm(x))


def test_norm_conversion():
    ref = e3nn_o3.Norm("2x1o+1x0e", squared=True)
    ours = from_e3nn(ref)
    x = torch.randn(3, 7)
    torch.testing.assert_close(ours(x), ref(x))
    torch.testing.assert_close(to_e3nn(ours)(x), ref(x))
    fresh = o3.Norm("2x1o+1x0e", squared=True)
    fresh.load_state_dict(ref.state_dict())


def test_load_e3nn_state_dict_directly():
    ref = e64(e3nn_o3.FullyConnectedTensorProduct, "2x0e+1x1o", "1x0e+1x1o", "2x0e+1x1o+1x1e", **FAST)
    ours = o3.FullyConnectedTensorProduct("2x0e+1x1o", "1x0e+1x1o", "2x0e+1x1o+1x1e").double()
    state = ref.state_dict()
    assert any(k.startswith("_compiled_main_left_right._w3j_") for k in state)
    ours.load_state_dict(state)
    args = _inputs(ref)
    assert _max(ours(*args), ref(*args)) <= TOL
    # also inside a parent module (prefixed keys)
    parent_ref = torch.nn.Sequential(ref)
    parent = torch.nn.Sequential(o3.FullyConnectedTensorProduct("2x0e+1x1o", "1x0e+1x1o", "2x0e+1x1o+1x1e").double())
    parent.load_state_dict(parent_ref.state_dict())
    assert torch.equal(parent[0].weight, ref.weight)
    # genuinely missing / unexpected keys still raise
    missing = {k: v for k, v in state.items() if k != "weight"}
    with pytest.raises(RuntimeError, match="Missing key"):
        ours.load_state_dict(missing)
    with pytest.raises(RuntimeError, match="Unexpected key"):
        ours.load_state_dict({**state, "extra": torch.zeros(1)})
    # our own state dict round trips, without CG buffers
    other = o3.FullyConnectedTensorProduct("2x0e+1x1o", "1x0e+1x1o", "2x0e+1x1o+1x1e").double()
    other.load_state_dict(ours.state_dict())
    assert sorted(ours.state_dict()) == ["output_mask", "weight"]
    assert torch.equal(other.weight, ref.weight)


# ------------------------------------------------------------------------------------------------
# errors, repr, drawing
# ------------------------------------------------------------------------------------------------


def test_bad_inputs_raise():
    tp = o3.FullyConnectedTensorProduct("2x0e+1x1o", "1x1o", "1x1o")
    x, y = torch.randn(2, 5), torch.randn(2, 3)
    with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., 5\)"):
        tp(torch.randn(2, 4), y)
    with pytest.raises(ValueError, match=r"y must have shape \(\.\.\., 3\)"):
        tp(x, torch.randn(2, 2))
    with pytest.raises(TypeError, match="same dtype"):
        tp(x, y.double())
    with pytest.raises(TypeError, match="module.to"):
        tp(x.double(), y.double())
    with pytest.raises(TypeError, match="torch.Tensor"):
        tp(x.numpy(), y)
    ext = o3.FullyConnectedTensorProduct("2x0e+1x1o", "1x1o", "1x1o", internal_weights=False)
    w = torch.randn(tp.weight_numel)
    assert torch.equal(tp(x, y, w), ext(x, y, w))  # an explicit weight replaces the internal one (e3nn's rule)
    with pytest.raises(ValueError, match="no internal weights") as missing:
        ext(x, y)
    assert isinstance(missing.value, RuntimeError)  # e3nn's type too
    with pytest.raises(ValueError, match=rf"\({ext.weight_numel},\)"):
        ext(x, y, torch.randn(2, ext.weight_numel))
    with pytest.raises(TypeError, match="weight is torch.float64"):
        ext(x, y, torch.randn(ext.weight_numel, dtype=torch.float64))
    with pytest.raises(ValueError, match="weight tensors"):
        ext(x, y, [torch.randn(2, 1, 1), torch.randn(2, 1, 1)])
    per = o3.FullyConnectedTensorProduct("2x0e+1x1o", "1x1o", "1x1o", shared_weights=False)
    assert not per.internal_weights
    with pytest.raises(ValueError, match="batch"):
        per(x, y, torch.randn(per.weight_numel))
    with pytest.raises(ValueError, match=rf"\(\.\.\., {per.weight_numel}\)"):
        per(x, y, torch.randn(2, per.weight_numel + 1))
    with pytest.raises(ValueError, match="shared_weights"):
        o3.FullyConnectedTensorProduct("1x0e", "1x0e", "1x0e", internal_weights=True, shared_weights=False)
    with pytest.raises(ValueError, match="parity") as bad:
        o3.TensorProduct("1x0e", "1x0e", "1x0o", [(0, 0, 0, "uvw", True)])
    assert isinstance(bad.value, AssertionError)  # e3nn's type too (its asserts)
    with pytest.raises(ValueError, match="out of range") as bad:
        o3.TensorProduct("1x0e", "1x0e", "1x0e", [(0, 1, 0, "uvw", True)])
    assert isinstance(bad.value, IndexError)
    with pytest.raises(ValueError, match="filter_ir_out"):
        o3.FullTensorProduct("1x0e", "1x0e", filter_ir_out=[object()])
    with pytest.warns(DeprecationWarning):
        o3.TensorProduct("1x0e", "1x0e", "1x0e", [(0, 0, 0, "uvw", True)], normalization="norm")


def test_repr_attributes_and_buffers():
    ref = e3nn_o3.TensorProduct(*MODE_CASES["mixed"], **FAST)
    ours = o3.TensorProduct(*MODE_CASES["mixed"])
    assert repr(ours) == repr(ref)
    assert ours.shared_weights and ours.internal_weights
    assert ours.plan.weight_numel == ours.weight_numel == ref.weight_numel
    assert str(ours.irreps_in1) == str(ref.irreps_in1) and str(ours.irreps_out) == str(ref.irreps_out)
    assert ours.weight.dtype == torch.get_default_dtype() and ours.output_mask.dtype == torch.get_default_dtype()
    full = o3.FullTensorProduct("1x1o", "1x1o")
    assert not full.internal_weights and full.weight.numel() == 0 and "weight" in full.state_dict()
    # CG buffers follow .to() and stay out of the state dict
    ours64 = ours.double()
    assert all(b.dtype == torch.float64 for n, b in ours64.named_buffers() if n.startswith("_cg_"))


def test_visualize_returns_figure_and_axes():
    tp = o3.TensorProduct(*MODE_CASES["mixed"])
    fig, ax = tp.visualize()
    assert fig is ax.get_figure() and len(ax.lines) > 0
    fig2, ax2 = o3.FullTensorProduct("1x0e+1x1o", "1x1o").visualize(aspect_ratio="auto")
    assert ax2 is not None
    ext = o3.TensorProduct(*MODE_CASES["uvw"], internal_weights=False)
    fig3, ax3 = ext.visualize(weight=torch.randn(ext.weight_numel), ax=ax)
    assert ax3 is ax
    fig4, _ = ext.visualize(plot_weight=False)
    with pytest.raises(ValueError, match="aspect_ratio"):
        tp.visualize(aspect_ratio="square")


# ------------------------------------------------------------------------------------------------
# torch.compile
# ------------------------------------------------------------------------------------------------


@pytest.mark.compile
def test_compile_fullgraph_dynamic_matches_eager():
    torch._dynamo.reset()
    tp = o3.FullyConnectedTensorProduct("2x0e+1x1o", "1x0e+1x1o", "1x0e+1x1o", shared_weights=False).double()
    compiled = torch.compile(tp, fullgraph=True, dynamic=True)
    for batch in (3, 7):
        x = torch.randn(batch, tp.irreps_in1.dim, dtype=torch.float64, requires_grad=True)
        y = torch.randn(batch, tp.irreps_in2.dim, dtype=torch.float64, requires_grad=True)
        w = torch.randn(batch, tp.weight_numel, dtype=torch.float64, requires_grad=True)
        out_c, out_e = compiled(x, y, w), tp(x, y, w)
        torch.testing.assert_close(out_c, out_e, rtol=1e-12, atol=1e-12)
        v = torch.randn_like(out_e)
        g_c = torch.autograd.grad((out_c * v).sum(), (x, y, w))
        g_e = torch.autograd.grad((out_e * v).sum(), (x, y, w))
        for a, b in zip(g_c, g_e):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_deepcopy_pickle_and_dtype_conversion():
    import copy
    import pickle

    tp = o3.TensorProduct(*MODE_CASES["uvu<v"])
    x = tp.irreps_in1.randn(2, -1)
    for clone in (copy.deepcopy(tp), pickle.loads(pickle.dumps(tp))):
        assert torch.equal(clone(x, x), tp(x, x))
    # a float32 module converted to float64 gets exact float64 CG blocks (not float32-rounded ones)
    ref = e64(e3nn_o3.TensorProduct, *MODE_CASES["mixed"], **FAST)
    ours = o3.TensorProduct(*MODE_CASES["mixed"])  # float32
    ours = ours.double()
    with torch.no_grad():
        ours.weight.copy_(ref.weight)
    x, y = ours.irreps_in1.randn(3, -1, dtype=torch.float64), ours.irreps_in2.randn(3, -1, dtype=torch.float64)
    assert _max(ours(x, y), ref(x, y)) <= TOL
