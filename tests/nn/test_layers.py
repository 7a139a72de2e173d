"""fastso3.nn against e3nn.nn 0.6.0 (oracle, identical weights, float64) and equivariance checks."""


import pytest
import torch

from fastso3 import nn as fnn
from fastso3.core.irreps import Irreps
from fastso3.testing import assert_equivariant, default_dtype

enn = pytest.importorskip("e3nn.nn")

F64 = torch.float64
silu = torch.nn.functional.silu




def build_both(cls_name, *args, **kwargs):
    """(e3nn module, fastso3 module) built in float64, fastso3 loading e3nn's state dict (strict)."""
    with default_dtype(F64):
        theirs = getattr(enn, cls_name)(*args, **kwargs)
        ours = getattr(fnn, cls_name)(*args, **kwargs)
    ours.load_state_dict(theirs.state_dict())
    return theirs, ours


def randn(irreps, *batch):
    return Irreps(irreps).randn(*batch, -1, dtype=F64)


# --------------------------------------------------------------------------------------------------
# FullyConnectedNet
# --------------------------------------------------------------------------------------------------
@pytest.mark.e3nn
@pytest.mark.parametrize(
    "hs,act,kw",
    [
        ([4, 8, 8, 3], silu, {}),
        ([4, 8, 3], torch.tanh, {"variance_in": 2.0, "variance_out": 3.0}),
        ([5, 7, 2], torch.relu, {"out_act": True, "variance_out": 0.5}),
        ([3, 6], None, {"variance_in": 4.0}),
        ([3, 5, 4], torch.nn.SiLU(), {"out_act": True}),
    ],
)
def test_fc_matches_e3nn(hs, act, kw):
    with default_dtype(F64):
        torch.manual_seed(7)
        theirs = enn.FullyConnectedNet(hs, act, **kw)
        torch.manual_seed(7)
        ours = fnn.FullyConnectedNet(hs, act, **kw)
    # same names, shapes and (same seed) values: the state dict loads strictly both ways
    assert list(ours.state_dict()) == list(theirs.state_dict()) == [f"layer{i}.weight" for i in range(len(hs) - 1)]
    for k, v in theirs.state_dict().items():
        assert torch.equal(ours.state_dict()[k], v)
        assert v.shape == (hs[int(k[5])], hs[int(k[5]) + 1])
    with torch.no_grad():
        for p in theirs.parameters():
            p.normal_()
    ours.load_state_dict(theirs.state_dict())
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(6, hs[0], dtype=F64)
    torch.testing.assert_close(ours(x), theirs(x), atol=1e-12, rtol=0)


def test_fc_normalisation_formula():
    with default_dtype(F64):
        net = fnn.FullyConnectedNet([3, 4, 2], torch.tanh, variance_in=2.0, variance_out=5.0)
    cst = net.layer0.act.cst
    w0, w1 = net.layer0.weight, net.layer1.weight
    x = torch.randn(7, 3, dtype=F64)
    h = torch.tanh(x @ w0 / (3 * 2.0) ** 0.5) * cst
    torch.testing.assert_close(net(x), h @ w1 / (4 * 1.0 / 5.0) ** 0.5, atol=1e-13, rtol=0)


def test_fc_second_moment_about_one():
    torch.manual_seed(1)
    net = fnn.FullyConnectedNet([32, 64, 64, 16], silu)
    with torch.no_grad():
        y = net(torch.randn(4096, 32))
    assert 0.8 < y.pow(2).mean().item() < 1.25


def test_fc_gradgradcheck_and_equivariance():
    with default_dtype(F64):
        net = fnn.FullyConnectedNet([3, 4, 2], silu, out_act=True)
    x = torch.randn(2, 3, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(net, (x,))
    assert torch.autograd.gradgradcheck(net, (x,))
    assert_equivariant(net, [torch.randn(3, 3, dtype=F64)], irreps_in="3x0e", irreps_out="2x0e")


def test_fc_bad_inputs():
    for hs in ([], [3, 0, 2], [3, -1], [3.5, 2]):
        with pytest.raises(ValueError):
            fnn.FullyConnectedNet(hs)
    with pytest.raises(ValueError):
        fnn.FullyConnectedNet([2, 3], variance_in=0)


# --------------------------------------------------------------------------------------------------
# Activation
# --------------------------------------------------------------------------------------------------
@pytest.mark.e3nn
@pytest.mark.parametrize(
    "irreps,acts,expected_out",
    [
        ("4x0e+3x0o+2x1o", [silu, torch.tanh, None], "4x0e+3x0o+2x1o"),
        ("3x0o+1x0e+2x2e", [torch.abs, torch.sigmoid, None], "3x0e+1x0e+2x2e"),
        ("2x0e+1x1e+2x0o", [None, None, None], "2x0e+1x1e+2x0o"),
    ],
)
def test_activation_matches_e3nn(irreps, acts, expected_out):
    theirs, ours = build_both("Activation", irreps, acts)
    assert ours.irreps_in == theirs.irreps_in and ours.irreps_out == theirs.irreps_out == Irreps(expected_out)
    x = randn(irreps, 5)
    torch.testing.assert_close(ours(x), theirs(x), atol=1e-12, rtol=0)
    # the `dim` argument
    xt = x.T.contiguous()
    torch.testing.assert_close(ours(xt, dim=0), theirs(xt, dim=0), atol=1e-12, rtol=0)
    assert_equivariant(ours, [x])


def test_activation_errors():
    with pytest.raises(ValueError, match="parity"):
        fnn.Activation("2x0o", [torch.sigmoid])
    with pytest.raises(ValueError, match="non-scalar"):
        fnn.Activation("1x1o", [torch.tanh])
    with pytest.raises(ValueError):
        fnn.Activation("0e+0e", [torch.tanh])


# --------------------------------------------------------------------------------------------------
# Gate
# --------------------------------------------------------------------------------------------------
GATE_CASES = [
    ("3x0e", [silu], "2x0e", [torch.sigmoid], "1x1o+1x2e"),
    ("16x0o", [torch.tanh], "8x0o", [torch.tanh], "4x1e+4x1o"),
    ("0e", [torch.tanh], "1x0e+1x0o", [torch.sigmoid, torch.tanh], "2x1o"),
    ("0e+0e", [torch.tanh, torch.relu], "2x0e", [torch.sigmoid], "1x1o+1x1o"),
    ("2x0e", [silu], "", [], ""),
    ("", [], "2x0o", [torch.tanh], "1o+1e"),
    ("4x0e+2x0o", [silu, torch.tanh], "3x0e", [torch.sigmoid], "1x2e+1x1o+1x1e"),
]


@pytest.mark.e3nn
@pytest.mark.parametrize("case", GATE_CASES, ids=lambda c: f"{c[0]}|{c[2]}|{c[4]}")
def test_gate_matches_e3nn(case):
    theirs, ours = build_both("Gate", *case)
    assert ours.irreps_in == theirs.irreps_in
    assert ours.irreps_out == theirs.irreps_out
    assert (ours.irreps_scalars, ours.irreps_gates, ours.irreps_gated) == (theirs.irreps_scalars, theirs.irreps_gates, theirs.irreps_gated)
    x = randn(ours.irreps_in, 2, 3)
    torch.testing.assert_close(ours(x), theirs(x), atol=1e-12, rtol=0)
    assert_equivariant(ours, [x[0]])


def test_gate_layout_documented_example():
    g = fnn.Gate("3x0e", [torch.tanh], "2x0e", [torch.sigmoid], "1x1o+1x2e")
    assert g.irreps_in == "5x0e+1x1o+1x2e" and g.irreps_out == "3x0e+1x1o+1x2e"
    x = torch.randn(4, g.irreps_in.dim, dtype=torch.float64)
    s, gates, v, t = x[:, :3], x[:, 3:5], x[:, 5:8], x[:, 8:13]
    ct = g.act_scalars.acts[0].cst
    cs = g.act_gates.acts[0].cst
    act_g = torch.sigmoid(gates) * cs
    expected = torch.cat([torch.tanh(s) * ct, v * act_g[:, :1], t * act_g[:, 1:]], -1)
    assert torch.equal(g.to(torch.float64)(x), expected)  # the product is exact
    # odd gates come before even scalars
    g2 = fnn.Gate("2x0e", [torch.tanh], "1x0o", [torch.tanh], "1x1o")
    assert g2.irreps_in == "1x0o+2x0e+1x1o" and g2.irreps_out == "2x0e+1x1e"


def test_gate_errors():
    with pytest.raises(ValueError, match="scalars"):
        fnn.Gate("1x1o", [None], "", [], "")
    with pytest.raises(ValueError, match="scalars"):
        fnn.Gate("", [], "1x1o", [None], "1x1o")
    with pytest.raises(ValueError, match="irreps_gated"):
        fnn.Gate("", [], "2x0e", [torch.tanh], "1x1o")
    g = fnn.Gate("0e", [torch.tanh], "0e", [torch.tanh], "1o")
    with pytest.raises(ValueError):
        g(torch.randn(3, 6))


# --------------------------------------------------------------------------------------------------
# NormActivation
# --------------------------------------------------------------------------------------------------
@pytest.mark.e3nn
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("epsilon", [None, 0.3])
def test_norm_activation_matches_e3nn(bias, epsilon):
    irreps = Irreps("2x0e+3x1o+1x2e+1x0o")
    theirs, _ = build_both("NormActivation", irreps, torch.sigmoid, epsilon=epsilon, bias=bias)
    if bias:
        with torch.no_grad():
            theirs.biases.normal_()
    with default_dtype(F64):
        ours = fnn.NormActivation(irreps, torch.sigmoid, epsilon=epsilon, bias=bias)
    ours.load_state_dict(theirs.state_dict())
    x = randn(irreps, 6)
    x[0, 2:5] = 0.0  # a zero vector: the epsilon clamp
    x[1, 5:8] *= 1e-3
    torch.testing.assert_close(ours(x), theirs(x), atol=1e-12, rtol=0)
    assert_equivariant(ours, [x])


def test_norm_activation_normalize_false_fixed():
    irreps = Irreps("2x0e+1x1o+1x2e")
    with default_dtype(F64):
        # e3nn 0.6.0 cannot even build this module (its bug, fixed in fastso3)
        with pytest.raises(TypeError):
            enn.NormActivation(irreps, torch.tanh, normalize=False)
        act = fnn.NormActivation(irreps, torch.tanh, normalize=False, bias=True)
    with torch.no_grad():
        act.biases.copy_(torch.tensor([0.1, -0.2, 0.3, 0.4], dtype=F64))
    x = randn(irreps, 5)
    x[0, 2:5] = 0.0
    # the formula: tanh(||x_u|| + b_u) x_u per copy
    n = torch.cat([x[:, 0:1].abs(), x[:, 1:2].abs(), x[:, 2:5].norm(dim=-1, keepdim=True), x[:, 5:10].norm(dim=-1, keepdim=True)], -1)
    s = torch.tanh(n + act.biases)
    expected = torch.cat([x[:, 0:1] * s[:, 0:1], x[:, 1:2] * s[:, 1:2], x[:, 2:5] * s[:, 2:3], x[:, 5:10] * s[:, 3:4]], -1)
    torch.testing.assert_close(act(x), expected, atol=1e-14, rtol=0)
    # finite gradients, also at the zero vector
    xg = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(act(xg).sum(), xg)
    assert torch.isfinite(g).all()
    assert_equivariant(act, [x])
    with pytest.raises(ValueError):
        fnn.NormActivation(irreps, torch.tanh, normalize=False, epsilon=1e-3)
    with pytest.raises(ValueError):
        fnn.NormActivation(irreps, torch.tanh, epsilon=0.0)


# --------------------------------------------------------------------------------------------------
# BatchNorm
# --------------------------------------------------------------------------------------------------
BN_CASES = [
    {},
    {"reduce": "max"},
    {"normalization": "norm"},
    {"affine": False},
    {"include_bias": False, "momentum": 0.3},
    {"instance": True},
    {"instance": True, "reduce": "max", "normalization": "norm"},
]


@pytest.mark.e3nn
@pytest.mark.parametrize("kw", BN_CASES, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()) or "default")
def test_batchnorm_matches_e3nn_train_and_eval(kw):
    irreps = Irreps("3x0e+2x1o+1x0o+1x2e+2x0e")
    theirs, ours = build_both("BatchNorm", irreps, **kw)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    if ours.weight is not None:
        with torch.no_grad():
            theirs.weight.uniform_(0.5, 1.5)
            if getattr(theirs, "bias", None) is not None:
                theirs.bias.normal_()
        ours.load_state_dict(theirs.state_dict())
    for step in range(3):
        x = randn(irreps, 4, 5, 2) * (1 + step) + 0.7  # (batch, sample..., dim), non-zero scalar means
        torch.testing.assert_close(ours(x), theirs(x), atol=1e-12, rtol=0)
        for name in ("running_mean", "running_var"):
            a, b = getattr(ours, name), getattr(theirs, name)
            assert (a is None) == (b is None)
            if a is not None:
                torch.testing.assert_close(a, b, atol=1e-13, rtol=0)
    ours.eval()
    theirs.eval()
    x = randn(irreps, 3, 2)
    torch.testing.assert_close(ours(x), theirs(x), atol=1e-12, rtol=0)
    if not kw.get("instance"):
        assert not torch.equal(ours.running_var, torch.ones_like(ours.running_var))


def test_batchnorm_gradients_and_equivariance():
    irreps = Irreps("2x0e+1x1o+1x2e")
    with default_dtype(F64):
        bn = fnn.BatchNorm(irreps)
    x = randn(irreps, 4, 3).requires_grad_(True)
    bn.train()
    assert torch.autograd.gradcheck(lambda t: bn(t), (x,))
    for mode in (True, False):
        bn.train(mode)
        assert_equivariant(bn, [x.detach()], irreps_in=irreps, irreps_out=irreps)
    with pytest.raises(ValueError):
        bn(torch.randn(4, 3, dtype=F64))
    for kw in ({"reduce": "sum"}, {"normalization": "integral"}, {"momentum": 1.5}):
        with pytest.raises(ValueError):
            fnn.BatchNorm(irreps, **kw)


# --------------------------------------------------------------------------------------------------
# Dropout
# --------------------------------------------------------------------------------------------------
def test_dropout_statistics_and_masks():
    irreps = Irreps("3x0e+2x1o+1x2e")
    drop = fnn.Dropout(irreps, p=0.3)
    torch.manual_seed(3)
    x = torch.ones(2000, 4, irreps.dim, dtype=F64)
    y = drop(x)
    ratio = y / x
    # each value is 0 or 1/(1-p); one mask per (batch, copy), shared by components and middle axes
    assert torch.all((ratio == 0) | ((ratio - 1 / 0.7).abs() < 1e-14))
    assert torch.equal(ratio, ratio[:, :1].expand_as(ratio))
    copies = [ratio[:, 0, i] for i in range(3)]
    copies += [ratio[:, 0, 3 + 3 * k : 6 + 3 * k] for k in range(2)] + [ratio[:, 0, 9:14]]
    for c in copies[3:]:
        assert torch.equal(c, c[:, :1].expand_as(c))
    kept = torch.stack([c if c.dim() == 1 else c[:, 0] for c in copies], -1) != 0  # (batch, copies)
    # the masks are independent draws: kept fraction 0.7 (sd ~ 0.0042 over 12000 draws), mean preserved
    assert abs(kept.double().mean().item() - 0.7) < 0.02
    assert abs(y.mean().item() - 1.0) < 0.03
    assert 0.6 < kept[:, 0].double().mean().item() < 0.8 and kept.any(0).all() and (~kept).any(0).all()


def test_dropout_eval_extremes_and_equivariance():
    irreps = Irreps("2x0e+1x1o")
    x = randn(irreps, 3, 2)
    drop = fnn.Dropout(irreps, p=0.5)
    drop.eval()
    assert drop(x) is x
    drop.train()
    assert torch.equal(fnn.Dropout(irreps, 0.0)(x), x)
    assert torch.equal(fnn.Dropout(irreps, 1.0)(x), torch.zeros_like(x))

    def seeded(t):  # the same mask for both calls of the equivariance test
        torch.manual_seed(11)
        return drop(t)

    out = seeded(x)
    assert (out == 0).any() and (out != 0).any()
    assert_equivariant(seeded, [x], irreps_in=irreps, irreps_out=irreps)
    with pytest.raises(ValueError):
        fnn.Dropout(irreps, 1.5)
    with pytest.raises(ValueError):
        drop(torch.randn(irreps.dim))


# --------------------------------------------------------------------------------------------------
# Extract, ExtractIr, Identity
# --------------------------------------------------------------------------------------------------
@pytest.mark.e3nn
def test_extract_matches_e3nn():
    irreps = Irreps("1e+0e+2x1o+0e+2e")
    outs = ["0e+0e", "2x1o+1e", "2e", "1e+0e+2x1o+0e+2e"]
    ins = [(1, 3), (2, 0), (4,), (0, 1, 2, 3, 4)]
    theirs, ours = build_both("Extract", irreps, outs, ins)
    x = randn(irreps, 3)
    got, expected = ours(x), theirs(x)
    assert len(got) == len(expected) == 4
    for a, b in zip(got, expected):
        assert torch.equal(a, b)
    assert_equivariant(ours, [x], irreps_in=irreps, irreps_out=outs)
    for ir in ("0e", "1o", "2o"):
        theirs, ours = build_both("ExtractIr", irreps, ir)
        assert ours.irreps_out == theirs.irreps_out
        assert torch.equal(ours(x), theirs(x))
    single = fnn.Extract(irreps, ["2x1o"], [(2,)], squeeze_out=True)
    assert torch.equal(single(x), x[:, 4:10])
    with pytest.raises(ValueError):
        fnn.Extract(irreps, ["0e"], [(1, 3)])
    with pytest.raises(ValueError):
        fnn.Extract(irreps, ["0e"], [(9,)])
    with pytest.raises(ValueError):
        fnn.Extract(irreps, ["0e"], [(0,)])


@pytest.mark.e3nn
def test_identity_matches_e3nn():
    theirs, ours = build_both("Identity", "1o+1o+0e", "2x1o+0e")
    assert list(ours.state_dict()) == ["output_mask"]
    x = randn("2x1o+0e", 2)
    assert ours(x) is x
    assert_equivariant(ours, [x])
    with pytest.raises(ValueError):
        fnn.Identity("1o", "1e")


# --------------------------------------------------------------------------------------------------
# torch.compile
# --------------------------------------------------------------------------------------------------
@pytest.mark.compile
def test_compile_fullgraph_gate_and_fc():
    torch._dynamo.reset()
    gate = fnn.Gate("4x0e", [silu], "2x0o", [torch.tanh], "1x1o+1x2e")
    net = fnn.FullyConnectedNet([5, 8, 3], silu)
    x = gate.irreps_in.randn(6, -1)
    r = torch.randn(6, 5)
    for module, inp in ((gate, x), (net, r)):
        compiled = torch.compile(module, fullgraph=True)
        torch.testing.assert_close(compiled(inp), module(inp), atol=1e-6, rtol=1e-6)
