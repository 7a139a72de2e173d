"""``fastso3::so2_table`` (edge-frame rotation of per-node tables of hidden features, optionally gated): the CPU
kernel against the reference twin and an explicit loop, derivatives, thread-count independence, input checks."""

import pytest
import torch

from fastso3.kernels import registry
from fastso3.kernels.so2_table import so2_table_op as op
from fastso3.so2 import EdgeRotation

SHAPES = [(3, 3), (4, 2), (2, 0), (1, 1)]  # (L, mmax)


def setup(L, mmax, B=23, R=6, H=5, dtype=torch.float64):
    """``[e, W, P, g], index``; the last node has no edge."""
    gen = torch.Generator().manual_seed(10 * L + mmax + B)
    M = 2 * mmax + 1
    W = EdgeRotation(L, mmax).to(dtype)(torch.randn(B, 3, generator=gen, dtype=dtype))
    e = torch.randn(M, B, H, generator=gen, dtype=dtype)
    P = torch.randn(L, R, 2 * L + 1, M, H, generator=gen, dtype=dtype)
    g = torch.randn(B, mmax + 1, H, generator=gen, dtype=dtype)
    index = torch.randint(0, R - 1, (B,), generator=gen)
    return [e, W, P, g], index


def call(slots, index, outputs, backend, num_nodes=None):
    """The op with the slots in ``outputs`` left out (None) when there is one output."""
    args = list(slots)
    if len(outputs) == 1:
        args[outputs[0]] = None
    return op(*args, index, slots[2].shape[1] if num_nodes is None else num_nodes, outputs, backend)


def looped(e, W, P, g, index, slot):
    """The form written out entry by entry over each degree's block (the oracle of the reference twin)."""
    B, L, M, N = W.shape if W is not None else (index.numel(), P.shape[0], P.shape[3], P.shape[2])
    K, H = (M - 1) // 2, (e if e is not None else P).shape[-1]
    R = P.shape[1] if P is not None else int(index.max()) + 2
    like = e if e is not None else P
    out = like.new_zeros(((M, B, H), (B, L, M, N), (L, R, N, M, H), (B, K + 1, H))[slot])
    for b in range(B):
        i = int(index[b])
        for m in range(M):
            gate = g[b, abs(m - K)] if g is not None else 1
            for l in range(L):
                if abs(m - K) > l + 1:
                    continue
                for n in range(L - l - 1, L + l + 2):
                    if slot == 0:
                        out[m, b] += W[b, l, m, n] * P[l, i, n, m] * gate
                    elif slot == 1:
                        out[b, l, m, n] = (e[m, b] * gate) @ P[l, i, n, m]
                    elif slot == 2:
                        out[l, i, n, m] += W[b, l, m, n] * e[m, b] * gate
                    else:
                        out[b, abs(m - K)] += W[b, l, m, n] * P[l, i, n, m] * e[m, b]
    return out


SUBSETS = [[0], [1], [2], [3], [0, 1], [1, 2], [0, 3], [0, 1, 2], [0, 1, 2, 3]]


@pytest.mark.parametrize("L,mmax", SHAPES)
@pytest.mark.parametrize("outputs,gated", [(o, True) for o in SUBSETS] + [(o, False) for o in SUBSETS if 3 not in o])
def test_every_output_subset_matches_the_reference_twin(L, mmax, outputs, gated):
    slots, index = setup(L, mmax)
    if not gated:
        slots[3] = None
    ref = call(slots, index, outputs, "reference")
    ours = call(slots, index, outputs, "cpu")
    assert registry.last_backend("so2_table") == "cpu"
    for a, b in zip(ours, ref, strict=True):
        assert a.shape == b.shape and a.is_contiguous()
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12 * b.abs().max().item())


@pytest.mark.parametrize("L,mmax", [(2, 2), (3, 1)])
@pytest.mark.parametrize("gated", [False, True])
def test_reference_equals_the_explicit_loop(L, mmax, gated):
    slots, index = setup(L, mmax, B=7, R=4, H=3)
    if not gated:
        slots[3] = None
    for slot in range(4 if gated else 3):
        args = list(slots)
        args[slot] = None
        got = op(*args, index, 4, [slot], "reference")[0]
        torch.testing.assert_close(got, looped(*args, index, slot), rtol=0, atol=1e-12)


@pytest.mark.parametrize("H,dtype", [(37, torch.float64), (70, torch.float32)])
def test_hidden_axes_wider_than_a_register_block(H, dtype):
    """The kernel sums 256 bytes of the hidden axis at a time in registers: full blocks and a tail."""
    slots, index = setup(2, 2, B=40, R=5, H=H, dtype=dtype)
    ours = op(*slots, index, 5, [0, 1, 2, 3], "cpu")
    exact = op(*[t.double() for t in slots], index, 5, [0, 1, 2, 3], "reference")
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    for a, b in zip(ours, exact, strict=True):
        torch.testing.assert_close(a.double(), b, rtol=0, atol=tol * b.abs().max().item())


def test_gating_is_the_product_of_the_ungated_form():
    """Slot 2 with gates equals slot 2 of the gated features (the gating the SO(2) layer fuses)."""
    (e, W, P, g), index = setup(3, 2)
    spread = g[:, [2, 1, 0, 1, 2]].transpose(0, 1)  # |m| of m = -2..2
    for backend in ("reference", "cpu"):
        fused = op(e, W, None, g, index, P.shape[1], [2], backend)[0]
        torch.testing.assert_close(fused, op(e * spread, W, None, None, index, P.shape[1], [2], backend)[0],
                                   rtol=0, atol=1e-12 * fused.abs().max().item())  # fmt: skip


def test_entries_outside_the_blocks_are_never_read_and_written_zero():
    (e, W, P, g), index = setup(3, 2)
    W_dirty = torch.where(W == 0, torch.nan, W)
    block = op(e, W, None, None, index, P.shape[1], [2], "reference")[0] != 0
    P_dirty = torch.where(block.any(1, keepdim=True).expand_as(P), P, torch.nan)
    for backend in ("reference", "cpu"):
        for outputs in ([0], [1], [2], [3]):
            got = call([e, W_dirty, P_dirty, g], index, outputs, backend)[0]
            want = call([e, W, P, g], index, outputs, "reference")[0]
            torch.testing.assert_close(got, want, rtol=0, atol=1e-12 * want.abs().max().item())


def test_sums_do_not_depend_on_the_thread_count():
    (e, W, P, g), index = setup(3, 3, B=400, R=9, H=16, dtype=torch.float32)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = op(e, W, None, g, index, 9, [2], "cpu")[0]
        torch.set_num_threads(2)
        two = op(e, W, None, g, index, 9, [2], "cpu")[0]
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, two)


@pytest.fixture
def one_thread():
    """Tiny ops (gradcheck) are much slower with thread contention on a shared machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("backend", ["reference", "cpu"])
@pytest.mark.parametrize("gated", [False, True])
def test_gradcheck_gradgradcheck(backend, gated, one_thread):
    slots, index = setup(2, 1, B=4, R=3, H=2)
    leaves = [t.clone().requires_grad_() for t in slots]
    if not gated:
        leaves[3] = None
    for slot in (0, 2):  # the encoder's and the decoder's; their derivatives reach every slot
        inputs = [t for s, t in enumerate(leaves) if s != slot and t is not None]

        def f(*ts, slot=slot):
            given = iter(ts)
            args = [None if s == slot or leaves[s] is None else next(given) for s in range(4)]
            return op(*args, index, 3, [slot], backend)[0]

        assert torch.autograd.gradcheck(f, inputs)
        assert torch.autograd.gradgradcheck(f, inputs)


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_empty_shapes(backend):
    (e, W, P, g), index = setup(2, 2, B=0, R=3)
    out = op(e, W, P, g, index, 3, [0, 1, 2, 3], backend)
    assert [tuple(t.shape) for t in out] == [tuple(e.shape), tuple(W.shape), tuple(P.shape), tuple(g.shape)]
    assert out[2].abs().max() == 0


def test_float32_within_reference_precision():
    slots, index = setup(4, 4, H=16)
    exact = op(*slots, index, slots[2].shape[1], [0, 1, 2, 3], "reference")
    args32 = [t.float() for t in slots]
    ours = op(*args32, index, slots[2].shape[1], [0, 1, 2, 3], "cpu")
    ref = op(*args32, index, slots[2].shape[1], [0, 1, 2, 3], "reference")
    for a, b, c in zip(ours, ref, exact, strict=True):
        err_ref = (b.double() - c).abs().max().item()
        assert (a.double() - c).abs().max().item() <= 4 * err_ref + 1e-6 * c.abs().max().item()


def test_opcheck():
    (e, W, P, g), index = setup(2, 1, B=4, R=3, H=3)
    for args, outputs in (((None, W, P, None), [0]), ((e, W, None, g), [2]), ((e, W, P, None), [1]),
                          ((e, W, P, None), [3])):  # fmt: skip
        torch.library.opcheck(op, (*args, index, 3, outputs, "cpu"))


def test_bad_inputs_raise():
    (e, W, P, g), index = setup(3, 2)
    R = P.shape[1]
    with pytest.raises(ValueError, match="distinct slots"):
        op(e, W, P, None, index, R, [0, 0], "cpu")
    with pytest.raises(ValueError, match="distinct slots"):
        op(e, W, P, None, index, R, [4], "cpu")
    with pytest.raises(ValueError, match="single output"):
        op(None, None, P, None, index, R, [0, 1], "cpu")
    with pytest.raises(TypeError, match="float32"):
        op(None, W.float(), P, None, index, R, [0], "cpu")
    with pytest.raises(ValueError, match="P must have shape"):
        op(None, W, P, None, index, R + 1, [0], "cpu")
    with pytest.raises(ValueError, match="W must have shape"):
        op(None, W[:3], P, None, index, R, [0], "cpu")
    with pytest.raises(ValueError, match="e must have shape"):
        op(e[:, 1:], W, None, None, index, R, [2], "cpu")
    with pytest.raises(ValueError, match="g must have shape"):
        op(e, W, None, g[:, 1:], index, R, [2], "cpu")
    with pytest.raises(IndexError, match="outside"):
        op(None, W, P, None, index + R, R, [0], "cpu")
    with pytest.raises(IndexError, match="negative"):
        op(e, W, None, None, index - R, R, [2], "cpu")
    with pytest.raises(TypeError, match="int64"):
        op(None, W, P, None, index.int(), R, [0], "cpu")
    with pytest.raises(registry.BackendUnavailable, match="covers"):
        op(None, W, P, None, index, R, [0], "triton")
    with pytest.raises(registry.BackendUnavailable, match="float32 and float64"):
        op(None, W.bfloat16(), P.bfloat16(), None, index, R, [0], "cpu")
