import pytest
import torch

from fastso3.o3 import Irreps
from fastso3.so2 import SO2Convolution
from fastso3.testing import assert_equivariant


def _graph(n=5, e=14):
    return torch.randint(0, n, (2, e)), torch.randn(e, 3) * 1.5


@pytest.mark.parametrize(
    "irreps_in,irreps_out,mmax",
    [
        ("3x0e+2x1o+2x2e", "2x0e+3x1o+3x2e+3x3o", None),
        ("2x1o+2x2e+2x3o", "4x0e+1x1o", 1),
        ("0o+2x1e+2x2o", "2x1e+2x2o", 2),
        ("4x0e", "2x0e+1x1o+1x2e", 0),
    ],
)
def test_equivariance_rotation_and_inversion(f64, irreps_in, irreps_out, mmax):
    conv = SO2Convolution(irreps_in, irreps_out, mmax=mmax, hidden=5, r_max=3.0)
    ei, v = _graph()
    x = conv.irreps_in.randn(5, -1)
    assert_equivariant(
        lambda x, ei, v: conv(x, ei, v),
        [x, ei, v],
        irreps_in=[conv.irreps_in, None, "cartesian_points"],
        irreps_out=[conv.irreps_out],
        do_translation=False,
    )


def test_equivariance_float32():
    conv = SO2Convolution("8x0e+8x1o+8x2e+8x3o", "8x0e+8x1o+8x2e+8x3o", mmax=2)
    ei, v = _graph()
    errors = assert_equivariant(
        lambda x, ei, v: conv(x, ei, v),
        [conv.irreps_in.randn(5, -1), ei, v],
        irreps_in=[conv.irreps_in, None, "cartesian_points"],
        irreps_out=[conv.irreps_out],
        do_translation=False,
    )
    assert max(float(e.max()) for e in errors.values()) < 1e-5


def test_unit_second_moment():
    """Averaged over parameter draws (as e3nn's assert_normalized), messages have second moment ~1 per irrep."""
    irreps = Irreps("16x0e+16x1o+16x2e+16x3o")
    e = 2000
    v = torch.randn(e, 3)
    v = v / v.norm(dim=-1, keepdim=True) * torch.empty(e, 1).uniform_(0.0, 4.0)  # |v| / r_max ~ U[0, 1]
    x = irreps.randn(e, -1)
    for mmax in (3, 1):
        moments = []
        for _ in range(6):
            conv = SO2Convolution(irreps, irreps, mmax=mmax, hidden=32, r_max=4.0)
            with torch.no_grad():
                y = conv.edge_messages(x, v)
            moments.append([y[:, sl].pow(2).mean().item() for sl in irreps.slices()])
        mean = torch.tensor(moments).mean(0)
        assert ((mean > 0.5) & (mean < 2.0)).all(), (mmax, mean)


def test_deterministic_and_zero_length_edges(f64):
    conv = SO2Convolution("2x0e+2x1o+2x2e", "2x0e+2x1o+2x2e", hidden=3)
    ei, v = _graph()
    v = v.clone()
    v[0] = 0
    v.requires_grad_()
    x = conv.irreps_in.randn(5, -1)
    y = conv(x, ei, v)
    assert torch.equal(y, conv(x, ei, v))
    (g,) = torch.autograd.grad(y.pow(2).sum(), v)
    assert torch.isfinite(y).all() and torch.isfinite(g).all()


def test_gradcheck(f64, single_thread):
    conv = SO2Convolution("1x0e+1x1o+1x2e", "1x0e+1x1o+1x2e", hidden=2, radial_hidden=(4,), num_basis=3, r_max=3.0)
    ei = torch.tensor([[0, 1, 2, 0, 1, 2], [1, 2, 0, 2, 0, 1]])
    v = (torch.cat([torch.eye(3), -torch.eye(3)]) * 1.2).requires_grad_()
    x = conv.irreps_in.randn(3, -1).requires_grad_()
    assert torch.autograd.gradcheck(lambda x, v: conv(x, ei, v), (x, v))
    assert torch.autograd.gradgradcheck(lambda x, v: conv(x, ei, v), (x, v))


def test_bad_arguments():
    with pytest.raises(ValueError, match="mixes parities"):
        SO2Convolution("1x0e+1x1e", "1x0e")
    with pytest.raises(ValueError, match="same parity class"):
        SO2Convolution("1x0e+1x1o", "1x0o+1x1e")
    with pytest.raises(ValueError, match="common multiplicity"):
        SO2Convolution("2x1o+1x2e", "1x0e")
    with pytest.raises(ValueError, match="mmax"):
        SO2Convolution("1x1o", "1x1o", mmax=2)
    conv = SO2Convolution("1x0e+1x1o", "1x0e+1x1o")
    with pytest.raises(ValueError, match="x must be"):
        conv(torch.zeros(3, 5), torch.zeros(2, 1, dtype=torch.long), torch.zeros(1, 3))
    with pytest.raises(ValueError, match="edge_index"):
        conv(torch.zeros(3, 4), torch.zeros(2, 2, dtype=torch.long), torch.zeros(1, 3))


@pytest.mark.parametrize("irreps,mmax", [("3x0e+2x1o+2x2e", None), ("2x1o+2x2e+2x3o", 1), ("2x0e+2x1o", None)])
def test_node_tables_equal_the_per_edge_path(f64, single_thread, irreps, mmax):
    """The node-table path (default for L <= 3) against the fused per-edge path: values, forces-style gradients
    and their derivatives w.r.t. the parameters (double backward)."""
    conv = SO2Convolution(irreps, "2x0e+3x1o+3x2e", mmax=mmax, hidden=4, r_max=3.0)
    assert conv.tables
    ei, v = _graph(6, 17)
    x = conv.irreps_in.randn(6, -1).requires_grad_()
    v.requires_grad_()
    results = []
    for tables in (True, False):
        conv.tables = tables
        y = conv(x, ei, v)
        gx, gv = torch.autograd.grad(y.pow(2).sum(), (x, v), create_graph=True)
        second = torch.autograd.grad(gv.pow(2).sum() + gx.pow(2).sum(), [x, v, *conv.parameters()])
        results.append([y, gx, gv, *second])
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-11 * b.abs().max().item())
