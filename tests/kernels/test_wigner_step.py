"""``fastso3::wigner_step`` (one step of the Wigner-block recursion): the CPU kernel against the reference twin,
against the Wigner matrices (``fastso3.o3``, e3nn's convention), derivatives, input checks."""

import pytest
import torch

from fastso3.kernels import registry
from fastso3.kernels.wigner_step import wigner_step_op as op
from fastso3.o3 import wigner_D_from_matrix
from fastso3.so2 import EdgeRotation, edge_rotation


def setup(l, E=17, dtype=torch.float64, seed=0):
    """Generic (non-orthogonal) ``D, R, G`` of degree ``l``: every entry of the form matters."""
    gen = torch.Generator().manual_seed(seed + l)
    return [torch.randn(E, n, n, generator=gen, dtype=dtype) for n in (2 * l - 1, 3, 2 * l + 1)]


@pytest.mark.parametrize("l", [2, 3, 5])
@pytest.mark.parametrize("outputs", [[0], [1], [2], [0, 1], [0, 2], [1, 2], [0, 1, 2]])
def test_every_output_subset_matches_the_reference_twin(l, outputs):
    args = setup(l)
    if len(outputs) == 1:
        args[outputs[0]] = None
    ref = op(*args, outputs, "reference")
    ours = op(*args, outputs, "cpu")
    assert registry.last_backend("wigner_step") == "cpu"
    for a, b in zip(ours, ref, strict=True):
        assert a.shape == b.shape and a.is_contiguous()
        torch.testing.assert_close(a, b, rtol=0, atol=1e-13 * b.abs().max().item())


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_blocks_are_the_wigner_matrices(backend):
    vec = torch.randn(9, 3, dtype=torch.float64)
    R = edge_rotation(vec)
    blocks = EdgeRotation(6, backend=backend).blocks(R)
    for l, D in enumerate(blocks, start=1):
        torch.testing.assert_close(D, wigner_D_from_matrix(l, R), atol=1e-12, rtol=0)


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_empty_shapes(backend):
    D, R, G = setup(3, E=0)
    out = op(D, R, G, [0, 1, 2], backend)
    assert [tuple(t.shape) for t in out] == [(0, 5, 5), (0, 3, 3), (0, 7, 7)]


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_gradcheck_gradgradcheck(backend):
    D, R, G = (t.requires_grad_() for t in setup(2, E=3))
    assert torch.autograd.gradcheck(lambda d, r: op(d, r, None, [2], backend)[0], (D, R))
    assert torch.autograd.gradgradcheck(lambda d, r: op(d, r, None, [2], backend)[0], (D, R))


def test_rotation_blocks_derivatives_of_the_edge_vectors():
    """What forces and force training differentiate: W(vec) to the second order, against the reference twin."""
    vec = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    cot = torch.randn(5, 3, 7, 7, dtype=torch.float64)
    grads = []
    for backend in ("cpu", "reference"):
        (g,) = torch.autograd.grad((EdgeRotation(3, backend=backend)(vec) * cot).sum(), vec, create_graph=True)
        (gg,) = torch.autograd.grad(g.pow(2).sum(), vec)
        grads.append((g, gg))
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12 * b.abs().max().item())


def test_float32_within_reference_precision():
    exact = op(*setup(4, E=64)[:2], None, [2], "reference")[0]
    args32 = [t.float() for t in setup(4, E=64)[:2]]
    ours, ref = (op(*args32, None, [2], backend)[0] for backend in ("cpu", "reference"))
    err_ref = (ref.double() - exact).abs().max().item()
    assert (ours.double() - exact).abs().max().item() <= 4 * err_ref + 1e-6 * exact.abs().max().item()


def test_results_do_not_depend_on_the_thread_count():
    D, R, _ = setup(4, E=500, dtype=torch.float32)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = op(D, R, None, [2], "cpu")[0]
        torch.set_num_threads(2)
        two = op(D, R, None, [2], "cpu")[0]
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, two)


def test_opcheck():
    D, R, G = setup(2, E=4)
    for args, outputs in (((D, R, None), [2]), ((None, R, G), [0]), ((D, R, G), [0, 1])):
        torch.library.opcheck(op, (*args, outputs, "cpu"))


def test_bad_inputs_raise():
    D, R, G = setup(3)
    with pytest.raises(ValueError, match="distinct slots"):
        op(D, R, G, [2, 2], "cpu")
    with pytest.raises(ValueError, match="single output"):
        op(None, None, G, [0, 1], "cpu")
    with pytest.raises(TypeError, match="float32"):
        op(D.float(), R, None, [2], "cpu")
    with pytest.raises(ValueError, match="G must have shape"):
        op(D, R, G[:, :5, :5], [0, 1], "cpu")
    with pytest.raises(ValueError, match="R must have shape"):
        op(D, R[:3], None, [2], "cpu")
    with pytest.raises(ValueError, match="square blocks"):
        op(D[:, :4], R, None, [2], "cpu")
    with pytest.raises(ValueError, match="l must be >= 2"):
        op(D[:, :1, :1], R, None, [2], "cpu")
    with pytest.raises(TypeError, match="floating-point"):
        op(D.long(), R.long(), None, [2], "cpu")
    with pytest.raises(registry.BackendUnavailable, match="covers"):
        op(D, R, None, [2], "triton")
    with pytest.raises(registry.BackendUnavailable, match="float32 and float64"):
        op(D.bfloat16(), R.bfloat16(), None, [2], "cpu")
