"""Force fields built on every fused kernel path, l up to 3: forces are -dE/dr and curl-free
(fastso3.testing.assert_conservative), the check that catches a kernel backward's 1-4% force errors."""

import pytest
import torch

from fastso3 import nn, o3
from fastso3.ops import tensor_product_conv
from fastso3.so2 import SO2Convolution
from fastso3.testing import assert_conservative
from tests.kernels.test_conv import uvu

LMAX = 3
NODES = 5
SH = o3.Irreps.spherical_harmonics(LMAX)


def all_pairs(n):
    src, dst = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
    keep = src != dst
    return src[keep], dst[keep]


def radial(vec):
    """(E, 3) -> (E, 4): smooth radial features of |vec|."""
    r = vec.norm(dim=-1, keepdim=True)
    return torch.cat([torch.exp(-r * r), r * torch.exp(-r), torch.cos(r), r.square()], dim=-1)


def positions(dtype=torch.float64, seed=0):
    return torch.randn(NODES, 3, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def energy_of(out):
    """A smooth non-linear read-out of node features (not invariant: conservation does not need it)."""
    return (out * torch.linspace(-1, 1, out.shape[-1], dtype=out.dtype)).sum() + 0.1 * out.square().sum()


@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_fused_convolution_l3(backend):
    tp = uvu(channels=3, lmax=LMAX)  # 3x(0e + 1o + 2e + 3o) x sh(l <= 3), every allowed output
    gen = torch.Generator().manual_seed(1)
    feats = torch.randn(NODES, tp.irreps_in1.dim, generator=gen, dtype=torch.float64)
    mix = torch.randn(4, tp.weight_numel, generator=gen, dtype=torch.float64)
    src, dst = all_pairs(NODES)

    def model(x):
        vec = x[dst] - x[src]
        sh = o3.spherical_harmonics(SH, vec, normalize=True, normalization="component", backend=backend)
        out = tensor_product_conv(feats, src, dst, sh, radial(vec) @ mix, tp.plan, NODES, backend=backend)
        return energy_of(out)

    errors = assert_conservative(model, positions())
    assert errors["force_error"] < 1e-6 and errors["curl_error"] < 1e-6


@pytest.mark.parametrize("factored", [False, True])
def test_fully_connected_product_l3(factored):
    irreps = o3.Irreps("2x0e + 2x1o + 2x2e + 1x3o")
    tp = o3.FullyConnectedTensorProduct(irreps, SH, "2x0e + 2x1o + 1x2e", shared_weights=False).double()
    fc = nn.FullyConnectedNet([4, 8, tp.weight_numel], torch.tanh).double()
    gen = torch.Generator().manual_seed(2)
    feats = torch.randn(NODES, irreps.dim, generator=gen, dtype=torch.float64)
    src, dst = all_pairs(NODES)

    def model(x):
        vec = x[dst] - x[src]
        sh = o3.spherical_harmonics(SH, vec, normalize=True)
        emb = radial(vec)
        weight = fc.factored(emb) if factored else fc(emb)
        return energy_of(tp(feats[src], sh, weight))

    assert_conservative(model, positions(seed=3))


def test_so2_convolution_l3():
    conv = SO2Convolution("3x0e + 3x1o + 3x2e + 3x3o", "3x0e + 2x1o", r_max=4.0).double()
    gen = torch.Generator().manual_seed(4)
    feats = torch.randn(NODES, conv.irreps_in.dim, generator=gen, dtype=torch.float64)
    src, dst = all_pairs(NODES)
    edge_index = torch.stack([src, dst])

    def model(x):
        return energy_of(conv(feats, edge_index, x[dst] - x[src]))

    assert_conservative(model, positions(seed=5) * 0.8)


def test_detects_wrong_forces_and_curl():
    def energy(x):
        return (x.square().sum(-1) * torch.arange(1.0, NODES + 1, dtype=x.dtype)).sum() + x[:, 0].prod()

    x = positions()
    assert_conservative(energy, x)

    def off_by_two_percent(x):  # the size of the l = 3 force errors of OpenEquivariance issue 211
        (grad,) = torch.autograd.grad(energy(x), x)
        return energy(x), -1.02 * grad

    with pytest.raises(AssertionError, match="not the negative gradient"):
        assert_conservative(off_by_two_percent, x)

    def rotational(x):  # F = -grad E plus a swirl about the z axis: a force field with a curl
        (grad,) = torch.autograd.grad(energy(x), x)
        swirl = torch.stack([-x[:, 1], x[:, 0], torch.zeros_like(x[:, 0])], dim=-1)
        return energy(x), -grad + 0.5 * swirl

    with pytest.raises(AssertionError):
        assert_conservative(rotational, x)
