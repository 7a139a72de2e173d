"""o3.Linear vs e3nn 0.6.0: values, gradients, layout, biases, feature axes, state dicts."""

import pytest
import torch

from fastso3 import o3
from fastso3.compat import from_e3nn, to_e3nn
from fastso3.testing import assert_equivariant

e3nn_o3 = pytest.importorskip("e3nn.o3")

TOL = 1e-10
FAST = dict(_optimize_einsums=False)


def pair(irreps_in, irreps_out, **kw):
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        ref = e3nn_o3.Linear(irreps_in, irreps_out, **kw, **FAST)
        ours = o3.Linear(irreps_in, irreps_out, **kw)
    finally:
        torch.set_default_dtype(old)
    return ours, ref


def copy_params(ours, ref):
    with torch.no_grad():
        if ours.weight.numel():
            ours.weight.copy_(ref.weight)
        if ours.bias.numel():
            ref.bias.normal_()  # e3nn initializes biases to zero: make them visible
            ours.bias.copy_(ref.bias)


def _max(a, b):
    return (a - b).abs().max().item() if a.numel() else 0.0


def check(ours, ref, inputs):
    inputs = [t.detach().requires_grad_(True) for t in inputs]
    out_o, out_r = ours(*inputs), ref(*inputs)
    assert out_o.shape == out_r.shape
    assert _max(out_o, out_r) <= TOL
    v = torch.randn_like(out_r)
    params_o = [p for p in (ours.weight, ours.bias) if isinstance(p, torch.nn.Parameter)]
    params_r = [p for p in (ref.weight, ref.bias) if isinstance(p, torch.nn.Parameter)]
    g_o = torch.autograd.grad((out_o * v).sum(), inputs + params_o)
    g_r = torch.autograd.grad((out_r * v).sum(), inputs + params_r)
    for a, b in zip(g_o, g_r):
        assert _max(a, b) <= TOL


CASES = [
    ("5x0e+3x1o+2x2e+4x0e", "3x0e+2x1o+1x2e+2x1o", {}),
    ("5x0e+3x1o+2x2e+4x0e", "3x0e+2x1o+1x2e+2x1o", {"path_normalization": "path"}),
    ("5x0e+3x1o+2x1e", "3x0e+2x1o+2x0e+1x2e", {"biases": True}),
    ("5x0e+3x1o", "3x0e+2x1o+2x0e", {"biases": [False, False, True]}),
    ("3x0e+2x1o+1x0e", "2x0e+3x1o", {"instructions": [(0, 0), (1, 1), (2, 0), (1, 1)]}),
    ("2x0e+2x1o", "0x0e+3x1o+1x1e", {}),
]


@pytest.mark.parametrize("irreps_in, irreps_out, kw", CASES)
def test_matches_e3nn(irreps_in, irreps_out, kw):
    ours, ref = pair(irreps_in, irreps_out, **kw)
    assert [tuple(i) for i in ours.instructions] == [tuple(i) for i in ref.instructions]
    assert (ours.weight_numel, ours.bias_numel) == (ref.weight_numel, ref.bias_numel)
    assert repr(ours) == repr(ref)
    torch.testing.assert_close(ours.output_mask, ref.output_mask, rtol=0, atol=0)
    assert ours.weight.shape == ref.weight.shape and ours.bias.shape == ref.bias.shape
    assert torch.all(ours.bias == 0)
    copy_params(ours, ref)
    check(ours, ref, [ours.irreps_in.randn(4, -1, dtype=torch.float64)])
    check(ours, ref, [ours.irreps_in.randn(2, 3, -1, dtype=torch.float64)])


def test_feature_axes_f_in_f_out():
    ours, ref = pair("3x0e+2x1o", "2x0e+1x1o+1x0e", f_in=4, f_out=3, biases=True)
    assert ours.weight.shape == ref.weight.shape == (4, 3, ours.weight_numel)
    assert ours.bias.shape == ref.bias.shape == (3, ours.bias_numel)
    copy_params(ours, ref)
    x = torch.randn(5, 4, ours.irreps_in.dim, dtype=torch.float64)
    check(ours, ref, [x])
    assert ours(x).shape == (5, 3, ours.irreps_out.dim)
    with pytest.raises(ValueError, match=r"\(\.\.\., 4, 9\)"):
        ours(torch.randn(5, 3, ours.irreps_in.dim, dtype=torch.float64))


def test_unshared_weights():
    ours, ref = pair("3x0e+2x1o", "2x0e+3x1o", shared_weights=False)
    assert not ours.internal_weights and ours.weight.numel() == 0
    x = ours.irreps_in.randn(6, -1, dtype=torch.float64)
    w = torch.randn(6, ours.weight_numel, dtype=torch.float64)
    check(ours, ref, [x, w])
    # batch dimensions broadcast (e3nn needs equal flattened batches)
    xb = ours.irreps_in.randn(2, 1, -1, dtype=torch.float64)
    wb = torch.randn(1, 3, ours.weight_numel, dtype=torch.float64)
    expected = torch.stack([torch.stack([ref(xb[i, 0], wb[0, j]) for j in range(3)]) for i in range(2)])
    assert _max(ours(xb, wb), expected) <= TOL
    # per-sample weights and biases
    ob = o3.Linear("3x0e+2x1o", "2x0e+3x1o", shared_weights=False, biases=True).double()
    b = torch.randn(6, ob.bias_numel, dtype=torch.float64)
    out = ob(x, w, b)
    assert _max(out[:, :2], ours(x, w)[:, :2] + b) <= TOL and _max(out[:, 2:], ours(x, w)[:, 2:]) <= TOL


def test_split_scalars_equal_merged_scalars():
    a = o3.Linear("3x0e+7x0e", "0e")
    b = o3.Linear("10x0e", "0e")
    with torch.no_grad():
        a.weight.fill_(1.0)
        b.weight.fill_(1.0)
    x = torch.arange(10.0)
    torch.testing.assert_close(a(x), b(x))
    assert [ins.path_weight for ins in a.instructions] == [10**-0.5] * 2


def test_coefficients_by_hand():
    lin = o3.Linear("4x0e+2x0e", "5x0e").double()
    x = torch.randn(3, 6, dtype=torch.float64)
    w = lin.weight.detach()
    expected = (x[:, :4] @ w[:20].view(4, 5) + x[:, 4:] @ w[20:].view(2, 5)) / 6**0.5
    assert _max(lin(x), expected) <= 1e-12
    vec = o3.Linear("2x1o", "1x1o").double()
    v = torch.randn(2, 6, dtype=torch.float64)
    expected = torch.einsum("zui,uw->zwi", v.view(2, 2, 3), vec.weight.view(2, 1)).reshape(2, 3) / 2**0.5
    assert _max(vec(v), expected) <= 1e-12


def test_equivariance():
    lin = o3.Linear("3x0e+2x1o+1x2e+2x1e", "2x0e+2x1o+3x2e+1x0o", biases=True).double()
    with torch.no_grad():
        lin.bias.normal_()
    assert_equivariant(lin, args_in=[lin.irreps_in.randn(3, -1, dtype=torch.float64)], irreps_in=[lin.irreps_in], irreps_out=lin.irreps_out)


def test_weight_views_and_slices_match_e3nn():
    ours, ref = pair("3x0e+2x1o+1x0e", "2x0e+3x1o", biases=True)
    copy_params(ours, ref)
    # e3nn 0.6.0's weight_views also walks the bias instructions and fails; compare per instruction
    with pytest.raises(RuntimeError):
        list(ref.weight_views())
    views = list(ours.weight_views(yield_instruction=True))
    assert len(views) == len(ours.instructions) - 1  # one biased output (0e)
    for i, ins, view in views:
        assert view.shape == ins.path_shape
        assert torch.equal(view, ref.weight_view_for_instruction(i))
        assert torch.equal(ours.weight_view_for_instruction(i), view)
    assert [tuple(s) for s in ours.weight_index_slices] == [tuple(s) for s in ref.weight_index_slices]
    with pytest.raises(ValueError, match="bias"):
        ours.weight_view_for_instruction(len(ours.instructions) - 1)
    unshared = o3.Linear("2x0e", "3x0e", shared_weights=False)
    views = list(unshared.weight_views(torch.randn(4, 6)))
    assert views[0].shape == (4, 2, 3)


def test_state_dicts_and_conversion():
    ours, ref = pair("3x0e+2x1o", "2x0e+1x1o", biases=True)
    with torch.no_grad():
        ref.bias.normal_()
    assert sorted(ref.state_dict()) == sorted(ours.state_dict()) == ["bias", "output_mask", "weight"]
    ours.load_state_dict(ref.state_dict())
    x = ours.irreps_in.randn(3, -1, dtype=torch.float64)
    assert _max(ours(x), ref(x)) <= TOL
    for module in [ref, pair("3x0e", "2x0e", f_in=2, f_out=3, biases=True)[1], pair("1x1o", "2x1o", path_normalization="path")[1]]:
        twin = from_e3nn(module)
        inp = torch.randn(2, *((module.weight.shape[0],) if module.weight.dim() == 3 else ()), module.irreps_in.dim, dtype=torch.float64)
        assert _max(twin(inp), module(inp)) <= TOL
        back = to_e3nn(twin)
        assert [tuple(i) for i in back.instructions] == [tuple(i) for i in module.instructions]
        assert _max(back(inp), module(inp)) <= TOL
    unshared = pair("2x0e", "2x0e", shared_weights=False)[1]
    twin = from_e3nn(unshared)
    assert not twin.internal_weights and not twin.shared_weights
    with pytest.raises(RuntimeError, match="Missing key"):
        ours.load_state_dict({k: v for k, v in ref.state_dict().items() if k != "bias"})
    with pytest.raises(RuntimeError, match="Unexpected key"):
        ours.load_state_dict({**ref.state_dict(), "extra": torch.zeros(1)})


def test_bad_inputs_raise():
    lin = o3.Linear("2x0e+1x1o", "1x0e")
    with pytest.raises(ValueError, match=r"\(\.\.\., 5\)"):
        lin(torch.randn(3, 4))
    with pytest.raises(TypeError, match="module.to"):
        lin(torch.randn(3, 5, dtype=torch.float64))
    w = torch.randn(lin.weight_numel)
    explicit = o3.Linear("2x0e+1x1o", "1x0e", internal_weights=False, biases=False)
    assert torch.equal(lin(x := torch.randn(3, 5), w), explicit(x, w))  # an explicit weight replaces .weight (e3nn)
    with pytest.raises(TypeError, match="torch.Tensor"):
        lin([1.0] * 5)
    ext = o3.Linear("2x0e+1x1o", "1x0e", internal_weights=False, biases=True)
    with pytest.raises(ValueError, match="no internal weights") as missing:
        ext(torch.randn(3, 5))
    assert isinstance(missing.value, RuntimeError)  # e3nn's type too
    with pytest.raises(ValueError, match=r"\(2,\)"):
        ext(torch.randn(3, 5), torch.randn(3), torch.randn(1))
    with pytest.raises(ValueError, match="bias must have shape"):
        ext(torch.randn(3, 5), torch.randn(2), torch.randn(2))
    with pytest.raises(TypeError, match="weight is torch.float64"):
        ext(torch.randn(3, 5), torch.randn(2, dtype=torch.float64), torch.randn(1))
    with pytest.raises(ValueError, match="shared_weights"):
        o3.Linear("1x0e", "1x0e", internal_weights=True, shared_weights=False)
    with pytest.raises(ValueError, match="same irrep"):
        o3.Linear("1x0e", "1x1o", instructions=[(0, 0)])
    with pytest.raises(ValueError, match="0e"):
        o3.Linear("1x1o", "1x1o", biases=[True])


def test_pickle():
    import pickle

    lin = o3.Linear("2x0e+1x1o", "3x0e+1x1o", biases=True)
    x = torch.randn(4, 5)
    assert torch.equal(pickle.loads(pickle.dumps(lin))(x), lin(x))
