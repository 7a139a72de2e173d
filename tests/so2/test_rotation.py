import itertools

import pytest
import torch

from fastso3.o3 import rand_matrix, wigner_D_from_matrix
from fastso3.so2 import EdgeRotation, edge_rotation

AXES = torch.tensor([[1.0, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]])


def _vectors():
    v = torch.cat([AXES, torch.randn(20, 3), torch.tensor([[1e-8, 1.0, 0], [0, -1.0, 1e-12], [1.0, 1e-300, 0]])])
    return v * torch.rand(len(v), 1).add(0.5)


def test_edge_rotation_maps_edge_to_y(f64):
    v = _vectors()
    R = edge_rotation(v)
    u = v / v.norm(dim=-1, keepdim=True)
    torch.testing.assert_close(R @ u[..., None], torch.tensor([0.0, 1, 0]).expand(len(v), 3)[..., None])
    torch.testing.assert_close(R @ R.mT, torch.eye(3).expand(len(v), 3, 3))
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(len(v)))


def test_edge_rotation_zero_vector_is_identity_with_zero_gradient(f64):
    v = torch.zeros(2, 3, requires_grad=True)
    R = edge_rotation(v)
    torch.testing.assert_close(R, torch.eye(3).expand(2, 3, 3))
    (g,) = torch.autograd.grad(R.sum(), v)
    assert torch.equal(g, torch.zeros_like(g))


@pytest.mark.parametrize("L", [1, 2, 4])
def test_wigner_blocks_equal_wigner_D(f64, L):
    R = torch.cat([rand_matrix(10), edge_rotation(AXES)])
    blocks = EdgeRotation(L).blocks(R)
    for l, D in enumerate(blocks, 1):
        torch.testing.assert_close(D, wigner_D_from_matrix(l, R), atol=1e-13, rtol=0)


def test_wigner_blocks_float32_accuracy():
    R = rand_matrix(100, dtype=torch.float64)
    D = EdgeRotation(6).blocks(R.float())[-1]
    assert (D.double() - wigner_D_from_matrix(6, R)).abs().max() < 2e-6


def test_padded_blocks_and_mmax(f64):
    v = torch.randn(4, 3)
    W = EdgeRotation(3)(v)
    assert W.shape == (4, 3, 7, 7)
    R = edge_rotation(v)
    torch.testing.assert_close(W[:, 1, 1:6, 1:6], wigner_D_from_matrix(2, R))
    assert W[:, 0, 0].abs().max() == 0 and W[:, 0, :, 6].abs().max() == 0
    Wm = EdgeRotation(3, mmax=1)(v)
    assert Wm.shape == (4, 3, 3, 7)
    torch.testing.assert_close(Wm, W[:, :, 2:5])
    with pytest.raises(ValueError, match="mmax"):
        EdgeRotation(2, mmax=3)
    with pytest.raises(ValueError, match="L must be"):
        EdgeRotation(0)


@pytest.mark.parametrize("sign,axis", list(itertools.product([1, -1], range(3))))
def test_second_derivatives_finite_on_axes(f64, sign, axis):
    v = torch.zeros(1, 3)
    v[0, axis] = 2.0 * sign
    v.requires_grad_(True)
    D = EdgeRotation(3).blocks(edge_rotation(v))[-1]
    (g,) = torch.autograd.grad(D.pow(2).mul(torch.arange(49.0).view(7, 7)).sum(), v, create_graph=True)
    (h,) = torch.autograd.grad(g.sum(), v)
    assert torch.isfinite(g).all() and torch.isfinite(h).all()
