"""``fastso3::so2_rotation`` (the edge-frame rotation of padded SO(2) features): the CPU kernel against the
reference twin and a per-degree loop; derivatives; output layouts; input checks."""

import pytest
import torch

from fastso3.kernels import registry
from fastso3.kernels.so2_rotation import so2_rotation_op
from fastso3.so2 import EdgeRotation, get_mask, rotate, rotate_back

SHAPES = [(3, 3), (4, 2), (2, 0)]  # (L, mmax)


def setup(L, mmax, B=37, C=5, dtype=torch.float64):
    gen = torch.Generator().manual_seed(L * 10 + mmax)
    W = EdgeRotation(L, mmax).to(dtype)(torch.randn(B, 3, generator=gen, dtype=dtype))
    x = torch.randn(B, C, L, 2 * L + 1, generator=gen, dtype=dtype) * get_mask(L).to(dtype)
    y = torch.randn(B, C, L, 2 * mmax + 1, generator=gen, dtype=dtype)
    return W, x, y


def loop_rotate(W, x):
    """Degree by degree: W's valid columns times x's valid entries."""
    L = x.shape[2]
    blocks = [
        torch.einsum("bmn,bcn->bcm", W[:, l - 1, :, L - l : L + l + 1], x[:, :, l - 1, L - l : L + l + 1])
        for l in range(1, L + 1)
    ]
    return torch.stack(blocks, 2)


@pytest.mark.parametrize("L,mmax", SHAPES)
@pytest.mark.parametrize("outputs", [[0], [1], [2], [1, 2], [0, 1, 2]])
def test_every_output_subset_matches_the_reference_twin(L, mmax, outputs):
    W, x, y = setup(L, mmax)
    ref = so2_rotation_op(y, W, x, outputs, "reference")
    ours = so2_rotation_op(y, W, x, outputs, "cpu")
    assert registry.last_backend("so2_rotation") == "cpu"
    for a, b in zip(ours, ref, strict=True):
        assert a.shape == b.shape and a.stride() == b.stride()
        torch.testing.assert_close(a, b, rtol=0, atol=1e-13)


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_rotate_matches_a_per_degree_loop_and_rotate_back_inverts_it(backend):
    W, x, _ = setup(4, 4)
    y = rotate(W, x, backend=backend)
    torch.testing.assert_close(y, loop_rotate(W, x), rtol=0, atol=1e-13)
    assert y.permute(3, 0, 2, 1).is_contiguous()  # m-major, as the SO(2) bottleneck reads it
    back = rotate_back(W, y, backend=backend)
    assert back.is_contiguous()
    torch.testing.assert_close(back, x, rtol=0, atol=1e-13)  # W is orthogonal per degree


def test_strided_inputs_are_read_in_place():
    W, x, y = setup(3, 2)
    x_cl = x.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)  # same values, channels innermost
    W_t = W.transpose(2, 3).contiguous().transpose(2, 3)
    torch.testing.assert_close(so2_rotation_op(None, W_t, x_cl, [0], "cpu")[0], loop_rotate(W, x), rtol=0, atol=1e-13)
    y_cl = y.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)
    ref = so2_rotation_op(y, W, x, [1, 2], "reference")
    for a, b in zip(so2_rotation_op(y_cl, W_t, x_cl, [1, 2], "cpu"), ref, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-13)


def test_padding_of_x_and_w_is_ignored():
    # rotate reads only each degree's valid columns, rotate_back writes zeros outside them
    W, x, y = setup(3, 3)
    noisy_x = x + 100 * (1 - get_mask(3).double())
    torch.testing.assert_close(rotate(W, noisy_x), rotate(W, x), rtol=0, atol=1e-13)
    back = rotate_back(W, y)
    assert torch.all(back * (1 - get_mask(3).double()) == 0)


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_gradcheck_gradgradcheck(backend):
    W, x, y = setup(2, 1, B=3, C=2)
    W, x, y = (t.requires_grad_() for t in (W, x, y))
    assert torch.autograd.gradcheck(lambda a, b: rotate(a, b, backend=backend), (W, x))
    assert torch.autograd.gradgradcheck(lambda a, b: rotate(a, b, backend=backend), (W, x))
    assert torch.autograd.gradcheck(lambda a, b: rotate_back(a, b, backend=backend), (W, y))
    assert torch.autograd.gradgradcheck(lambda a, b: rotate_back(a, b, backend=backend), (W, y))


def test_first_and_second_derivatives_match_reference():
    W, x, _ = setup(3, 2, B=11, C=4)

    def grads(backend):
        leaves = [t.clone().requires_grad_() for t in (W, x)]
        out = rotate_back(leaves[0], rotate(leaves[0], leaves[1], backend=backend).sin(), backend=backend)
        first = torch.autograd.grad(out.pow(2).sum(), leaves, create_graph=True)
        return first + torch.autograd.grad(sum(f.cos().sum() for f in first), leaves)

    for a, b in zip(grads("cpu"), grads("reference"), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-11)


def test_float32_within_reference_precision():
    W, x, _ = setup(6, 6, B=50, C=16)
    exact = loop_rotate(W, x)
    budget = (rotate(W.float(), x.float(), backend="reference").double() - exact).abs().max()
    assert (rotate(W.float(), x.float(), backend="cpu").double() - exact).abs().max() <= 4 * budget


def test_bad_inputs_raise():
    W, x, y = setup(3, 2)
    with pytest.raises(ValueError, match=r"W must have shape \(B, L, M, 2L\+1\)"):
        rotate(W[..., 1:], x)
    with pytest.raises(ValueError, match=r"x must have shape \(37, C, 3, 7\)"):
        rotate(W, x[:, :, :2])
    with pytest.raises(ValueError, match=r"y must have shape \(37, C, 3, 5\)"):
        rotate_back(W, x)
    with pytest.raises(ValueError, match="x must have shape"):
        rotate(W, x[:5])
    with pytest.raises(TypeError, match="W is torch.float64"):
        rotate(W, x.float())
    with pytest.raises(registry.BackendUnavailable, match="so2_rotation"):
        rotate(W, x, backend="triton")
