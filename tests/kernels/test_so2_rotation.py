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
    B, C, M, N = 37, 5, 2 * mmax + 1, 2 * L + 1
    memory = {0: (M, B, L, C), 1: (B, L, M, N), 2: (B, C, L, N)}  # the layouts the docstring promises
    for s, a, b in zip(outputs, ours, ref, strict=True):
        assert a.shape == b.shape and a.stride() == b.stride()
        order = (1, 3, 2, 0) if s == 0 else (0, 1, 2, 3)  # the view's axes in memory order
        assert a.permute(*[order.index(i) for i in range(4)]).shape == memory[s]
        assert a.permute(*[order.index(i) for i in range(4)]).is_contiguous()
        torch.testing.assert_close(a, b, rtol=0, atol=1e-13)


@pytest.mark.parametrize("backend", ["reference", "cpu"])
@pytest.mark.parametrize("L,mmax,B", [(1, 0, 0), (1, 1, 3), (1, 0, 2), (2, 2, 4)])
def test_small_and_empty_shapes(backend, L, mmax, B):
    W, x, y = setup(L, mmax, B=B)
    out = so2_rotation_op(y, W, x, [0, 1, 2], backend)
    expected = [so2_rotation_op(*(a if i != s else None for i, a in enumerate((y, W, x))), [s], "reference")[0] for s in range(3)]
    for a, b in zip(out, expected, strict=True):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=0, atol=1e-13)
    if mmax == L and B:
        torch.testing.assert_close(rotate_back(W, rotate(W, x, backend=backend), backend=backend), x, rtol=0, atol=1e-13)


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


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_entries_outside_the_blocks_are_never_read(backend):
    # non-finite values in x's padding and in W outside each degree's block change nothing (not even to NaN);
    # rotate_back writes zeros outside the valid columns
    L, mmax = 3, 2
    W, x, y = setup(L, mmax)
    inf_pad = torch.where(get_mask(L).bool(), 0.0, float("inf")).double()
    noisy_x = x + inf_pad
    outside = torch.ones_like(W)
    for l in range(1, L + 1):
        rows = slice(max(0, mmax - l), mmax + l + 1)
        outside[:, l - 1, rows, L - l : L + l + 1] = 0
    noisy_W = torch.where(outside.bool(), float("nan"), W)
    torch.testing.assert_close(rotate(noisy_W, noisy_x, backend=backend), rotate(W, x, backend=backend), rtol=0, atol=1e-13)
    back = rotate_back(noisy_W, y, backend=backend)
    torch.testing.assert_close(back, rotate_back(W, y, backend=backend), rtol=0, atol=1e-13)
    assert torch.all(back[(inf_pad != 0).expand_as(back)] == 0)


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
    with pytest.raises(ValueError, match=r"x must have shape \(37, 5, 3, 7\)"):
        rotate(W, x[:, :, :2])
    with pytest.raises(ValueError, match=r"y must have shape \(37, 5, 3, 5\)"):
        rotate_back(W, x)
    with pytest.raises(ValueError, match="x must have shape"):
        rotate(W, x[:5])
    with pytest.raises(TypeError, match="W is torch.float64"):
        rotate(W, x.float())
    with pytest.raises(ValueError, match="slot 1 is needed"):  # the op itself checks what its kernel reads
        so2_rotation_op(y, None, x, [0], "cpu")
    with pytest.raises(ValueError, match="distinct slots"):
        so2_rotation_op(y, W, x, [0, 0], "cpu")
    with pytest.raises(registry.BackendUnavailable, match="so2_rotation"):
        rotate(W, x, backend="triton")
    with pytest.raises(registry.BackendUnavailable, match="float32 and float64"):  # the op checks its backend too
        so2_rotation_op(None, W.bfloat16(), x.bfloat16(), [0], "cpu")
