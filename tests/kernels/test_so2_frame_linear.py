"""``fastso3::so2_frame_linear`` (per-order linear maps of padded SO(2) features with the edge-frame rotation fused
in): the blocked CPU path against the reference twin and an unfused composition; derivatives; input checks."""

import pytest
import torch

import fastso3.kernels.so2_frame_linear as frame_linear
from fastso3.kernels import registry
from fastso3.kernels.so2_frame_linear import so2_frame_linear_op
from fastso3.so2 import EdgeRotation, get_mask, rotate, rotate_back

SHAPES = [(3, 3), (4, 2), (2, 0)]  # (L, mmax)


def op(e, A, W, x, outputs, backend, index=None, num_nodes=0):
    return so2_frame_linear_op(e, A, W, x, index, num_nodes, outputs, backend)


def setup(L, mmax, B=37, C=5, H=4, dtype=torch.float64, frame=False):
    """``e, A, W, x``; with ``frame`` W is None and x is already in the frame (``mmax = L``)."""
    gen = torch.Generator().manual_seed(L * 10 + mmax + B)
    M = 2 * mmax + 1
    W = None if frame else EdgeRotation(L, mmax).to(dtype)(torch.randn(B, 3, generator=gen, dtype=dtype))
    x = torch.randn(B, C, L, 2 * L + 1, generator=gen, dtype=dtype) * get_mask(L).to(dtype)
    e = torch.randn(M, B, H, generator=gen, dtype=dtype)
    A = torch.randn(M, H, L * C, generator=gen, dtype=dtype)
    return e, A, W, x


def composed(e, A, W, x, slot):
    """The unfused composition: rotate (or not), then per-order matmuls; decode, then rotate back."""
    M = A.shape[0] if A is not None else e.shape[0]
    L = x.shape[2] if x is not None else (W.shape[1] if W is not None else (M - 1) // 2)
    B, C = x.shape[:2] if x is not None else (e.shape[1], A.shape[2] // L)
    if slot in (0, 1):
        y = x if W is None else rotate(W, x, backend="reference")
        y = y.permute(3, 0, 2, 1).reshape(M, B, L * C)
        return y @ A.transpose(1, 2) if slot == 0 else e.transpose(1, 2) @ y
    z = (e @ A).view(M, B, L, C).permute(1, 3, 2, 0)
    if W is None:
        return z * get_mask(L).to(z.dtype)
    return rotate_back(W, z, backend="reference")


@pytest.fixture(params=[16 << 20, 3000], ids=["one-block", "many-blocks"])
def block_bytes(request, monkeypatch):
    """The default block, and blocks of a few edges (partial last block)."""
    monkeypatch.setattr(frame_linear, "_BLOCK_BYTES", request.param)
    return request.param


@pytest.mark.parametrize("L,mmax", SHAPES)
@pytest.mark.parametrize("outputs", [[0], [1], [2], [3], [0, 1, 2], [1, 2, 3], [0, 3]])
def test_every_output_subset_matches_the_reference_twin(L, mmax, outputs, block_bytes):
    e, A, W, x = setup(L, mmax)
    args = [e, A, W, x]
    if len(outputs) == 1:
        args[outputs[0]] = None
    ref = op(*args, outputs, "reference")
    ours = op(*args, outputs, "cpu")
    assert registry.last_backend("so2_frame_linear") == "cpu"
    for a, b in zip(ours, ref, strict=True):
        assert a.shape == b.shape and a.is_contiguous() and b.is_contiguous()
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12 * b.abs().max().item())


@pytest.mark.parametrize("backend", ["reference", "cpu"])
@pytest.mark.parametrize("frame", [False, True], ids=["rotated", "identity"])
def test_slots_match_the_unfused_composition(backend, frame, block_bytes):
    e, A, W, x = setup(3, 3, frame=frame)
    for slot in (0, 1, 3):
        args = [e, A, W, x]
        args[slot] = None
        expected = composed(*args, slot)
        torch.testing.assert_close(op(*args, [slot], backend)[0], expected, rtol=0, atol=1e-12)
    if not frame:  # the Wigner gradient: F is linear in W, so <dW, W> = F(e, A, W, x) = <e, slot 0>
        dW = op(e, A, None, x, [2], backend)[0]
        torch.testing.assert_close((dW * W).sum(), (e * composed(None, A, W, x, 0)).sum(), rtol=1e-12, atol=0)


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_the_identity_leaves_the_padding_zero_and_never_reads_it(backend):
    e, A, _, x = setup(3, 3, frame=True)
    x_dirty = torch.where(get_mask(3).bool(), x, torch.nan)
    y = op(None, A, None, x_dirty, [0], backend)[0]
    torch.testing.assert_close(y, op(None, A, None, x, [0], "reference")[0], rtol=0, atol=1e-12)
    out = op(e, A, None, None, [3], backend)[0]
    assert out.isfinite().all() and (out * (1 - get_mask(3).to(out.dtype))).abs().max() == 0


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_rotated_features_outside_the_blocks_are_never_read(backend):
    e, A, W, x = setup(4, 2)
    W_dirty = torch.where(W == 0, torch.nan, W)  # the entries outside each degree's block
    x_dirty = torch.where(get_mask(4).bool(), x, torch.inf)
    for outputs in ([0, 1, 2], [3]):
        for got, want in zip(
            op(e, A, W_dirty, x_dirty, outputs, backend), op(e, A, W, x, outputs, "reference"), strict=True
        ):
            torch.testing.assert_close(got, want, rtol=0, atol=1e-12 * want.abs().max().item())


@pytest.mark.parametrize("backend", ["reference", "cpu"])
@pytest.mark.parametrize("L,mmax,B", [(1, 0, 0), (1, 1, 3), (2, 2, 4)])
def test_small_and_empty_shapes(backend, L, mmax, B):
    e, A, W, x = setup(L, mmax, B=B)
    out = op(e, A, W, x, [0, 1, 2, 3], backend)
    for s, a in enumerate(out):
        args = [e, A, W, x]
        args[s] = None
        torch.testing.assert_close(a, op(*args, [s], "reference")[0], rtol=0, atol=1e-12)
    if B == 0:
        assert out[1].abs().max() == 0  # the matrices' gradient is an empty sum


def test_strided_inputs():
    e, A, W, x = setup(3, 2)
    ref = op(e, A, W, x, [0, 1, 2, 3], "reference")
    x_cl = x.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)  # channels innermost
    W_t = W.transpose(2, 3).contiguous().transpose(2, 3)
    e_t = e.transpose(0, 1).contiguous().transpose(0, 1)
    A_t = A.transpose(1, 2).contiguous().transpose(1, 2)
    for a, b in zip(op(e_t, A_t, W_t, x_cl, [0, 1, 2, 3], "cpu"), ref, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12 * b.abs().max().item())


@pytest.mark.parametrize("backend", ["reference", "cpu"])
@pytest.mark.parametrize("frame", [False, True], ids=["rotated", "identity"])
def test_gradcheck_gradgradcheck(backend, frame, monkeypatch):
    monkeypatch.setattr(frame_linear, "_BLOCK_BYTES", 2000)
    e, A, W, x = setup(2, 2 if frame else 1, B=5, C=2, H=3, frame=frame)
    leaves = [t.clone().requires_grad_() if t is not None else None for t in (e, A, W, x)]
    for slot in (0, 3):
        inputs = [t for s, t in enumerate(leaves) if s != slot and t is not None]

        def f(*ts, slot=slot):
            given = iter(ts)
            args = [None if s == slot or leaves[s] is None else next(given) for s in range(4)]
            return op(*args, [slot], backend)[0]

        assert torch.autograd.gradcheck(f, inputs)
        assert torch.autograd.gradgradcheck(f, inputs)


def test_derivatives_match_the_reference():
    e, A, W, x = setup(3, 2)
    outs = {}
    for backend in ("reference", "cpu"):
        leaves = [t.clone().requires_grad_() for t in (e, A, W, x)]
        y = op(None, *leaves[1:], [0], backend)[0]
        z = op(leaves[0] * y.detach(), leaves[1], leaves[2], None, [3], backend)[0]
        loss = y.pow(2).sum() + (z * x).sum()
        grads = torch.autograd.grad(loss, leaves, create_graph=True)
        second = torch.autograd.grad(sum(g.pow(2).sum() for g in grads[1:]), leaves[1:])
        outs[backend] = [*grads, *second]
    for a, b in zip(outs["cpu"], outs["reference"], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-11 * b.abs().max().item())


def test_float32_within_reference_precision():
    e, A, W, x = setup(4, 4, C=16, H=8)
    exact = op(e, A, W, x, [0, 1, 2, 3], "reference")
    args32 = [t.float() for t in (e, A, W, x)]
    ours, ref = op(*args32, [0, 1, 2, 3], "cpu"), op(*args32, [0, 1, 2, 3], "reference")
    for a, b, c in zip(ours, ref, exact, strict=True):
        err_ref = (b.double() - c).abs().max().item()
        assert (a.double() - c).abs().max().item() <= 4 * err_ref + 1e-6 * c.abs().max().item()


def test_opcheck():
    e, A, W, x = setup(2, 1, B=4, C=2, H=3)
    for args, outputs in (((None, A, W, x), [0]), ((e, A, W, None), [3]), ((e, A, W, x), [1, 2])):
        torch.library.opcheck(so2_frame_linear_op, (*args, None, 0, outputs, "cpu"))


def test_bad_inputs_raise():
    e, A, W, x = setup(3, 2)
    with pytest.raises(ValueError, match="distinct slots"):
        op(e, A, W, x, [0, 0], "cpu")
    with pytest.raises(ValueError, match="single output"):
        op(None, None, W, x, [0, 1], "cpu")
    with pytest.raises(ValueError, match="W is needed"):
        op(e, A, None, x, [2, 3], "cpu")
    with pytest.raises(TypeError, match="float32"):
        op(None, A.float(), W, x, [0], "cpu")
    with pytest.raises(ValueError, match="W must have shape"):
        op(None, A, W[:, :2], x, [0], "cpu")
    with pytest.raises(ValueError, match="W must have shape"):  # W read by a kernel next to its own slot
        op(e, A, W[:2], x, [2, 3], "cpu")
    with pytest.raises(registry.BackendUnavailable, match="float32 and float64"):
        op(None, A.bfloat16(), W.bfloat16(), x.bfloat16(), [0], "cpu")
    with pytest.raises(registry.BackendUnavailable, match="covers"):
        op(None, A, W, x, [0], "triton")
    with pytest.raises(ValueError, match="unknown backend"):
        op(None, A, W, x, [0], "fast")
    with pytest.raises(ValueError, match="x must have shape"):
        op(None, A, W, x[..., :5], [0], "cpu")
    with pytest.raises(ValueError, match="A must have shape"):
        op(None, A[:, :, 1:], W, x, [0], "cpu")
    with pytest.raises(ValueError, match="e must have shape"):
        op(e[:, :, 1:], A, W, None, [3], "cpu")
    with pytest.raises(ValueError, match="odd"):
        op(e[:4], A[:4], None, None, [3], "cpu")  # the identity with an even number of orders


def indexed_setup(L, mmax, nodes=7, B=37, C=5, H=4):
    """``e, A, W, x`` with ``x (nodes, C, L, 2L+1)`` a node table, and an index ``(B,)`` that misses a node."""
    e, A, W, _ = setup(L, mmax, B=B, C=C, H=H)
    gen = torch.Generator().manual_seed(L + 100 * mmax)
    x = torch.randn(nodes, C, L, 2 * L + 1, generator=gen, dtype=e.dtype) * get_mask(L).to(e.dtype)
    index = torch.randint(0, nodes - 1, (B,), generator=gen)
    return e, A, W, x, index


@pytest.mark.parametrize("L,mmax", SHAPES)
@pytest.mark.parametrize("outputs", [[0], [1], [2], [3], [0, 1, 2], [1, 2, 3], [0, 3]])
def test_indexed_rows_match_the_reference_twin_and_the_gather_scatter(L, mmax, outputs, block_bytes):
    """x read through an index: the CPU blocks equal the reference twin, which equals gathering x's rows, the
    per-edge op, and summing slot 3 into the nodes."""
    e, A, W, x, index = indexed_setup(L, mmax)
    args = [e, A, W, x]
    if len(outputs) == 1:
        args[outputs[0]] = None
    ref = op(*args, outputs, "reference", index, len(x))
    ours = op(*args, outputs, "cpu", index, len(x))
    gathered = list(args)
    if gathered[3] is not None:
        gathered[3] = x[index]
    for s, a, b in zip(outputs, ours, ref, strict=True):
        assert a.shape == b.shape and a.is_contiguous()
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12 * b.abs().max().item())
        want = op(*gathered, [s] if len(outputs) == 1 else outputs, "reference")[outputs.index(s) if len(outputs) > 1 else 0]
        if s == 3:
            want = torch.zeros_like(x).index_add_(0, index, want)
            assert b[-1].abs().max() == 0  # the node no edge reads
        torch.testing.assert_close(b, want, rtol=0, atol=1e-12 * want.abs().max().item())


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_indexed_gradcheck_gradgradcheck(backend, monkeypatch):
    monkeypatch.setattr(frame_linear, "_BLOCK_BYTES", 2000)
    n = torch.get_num_threads()  # tiny calls: thread contention on a shared machine makes them much slower
    torch.set_num_threads(1)
    try:
        _indexed_gradcheck(backend)
    finally:
        torch.set_num_threads(n)


def _indexed_gradcheck(backend):
    e, A, W, x, index = indexed_setup(2, 1, nodes=4, B=6, C=2, H=3)
    leaves = [t.clone().requires_grad_() for t in (e, A, W, x)]
    for slot in (0, 3):
        inputs = [t for s, t in enumerate(leaves) if s != slot]

        def f(*ts, slot=slot):
            given = iter(ts)
            args = [None if s == slot else next(given) for s in range(4)]
            return op(*args, [slot], backend, index, 4)[0]

        assert torch.autograd.gradcheck(f, inputs)
        assert torch.autograd.gradgradcheck(f, inputs)


def test_indexed_opcheck_and_bad_indices():
    e, A, W, x, index = indexed_setup(2, 1, nodes=4, B=5, C=2, H=3)
    torch.library.opcheck(so2_frame_linear_op, (None, A, W, x, index, 4, [0], "cpu"))
    torch.library.opcheck(so2_frame_linear_op, (e, A, W, None, index, 4, [3], "cpu"))
    with pytest.raises(IndexError, match="outside"):
        op(None, A, W, x, [0], "cpu", index + 4, 4)
    with pytest.raises(IndexError, match="negative"):
        op(e, A, W, None, [3], "cpu", index - 5, 4)
    with pytest.raises(TypeError, match="int64"):
        op(None, A, W, x, [0], "cpu", index.int(), 4)
    with pytest.raises(ValueError, match="x must have shape"):
        op(None, A, W, x, [0], "cpu", index, 5)
    with pytest.raises(ValueError, match="num_nodes must be 0"):
        op(None, A, W, x[index], [0], "cpu", None, 4)
    with pytest.raises(ValueError, match="W must have shape"):  # the edges are the index's
        op(None, A, W, x, [0], "cpu", index[:4], 4)
