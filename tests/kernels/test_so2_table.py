"""``fastso3::so2_table`` (edge-frame rotation of per-node tables of hidden features, optionally gated, with the
scalars of the ``m = 0`` row): the CPU kernel against the reference twin and an explicit loop, derivatives,
thread-count independence, input checks."""

import pytest
import torch

from fastso3.kernels import registry
from fastso3.kernels.so2_table import so2_table_op as op
from fastso3.so2 import EdgeRotation

SHAPES = [(3, 3), (4, 2), (2, 0), (1, 1)]  # (L, mmax)


def setup(L, mmax, B=23, R=6, H=5, dtype=torch.float64):
    """``[e, W, P, g, S], index``; the last node has no edge."""
    gen = torch.Generator().manual_seed(10 * L + mmax + B)
    M = 2 * mmax + 1
    W = EdgeRotation(L, mmax).to(dtype)(torch.randn(B, 3, generator=gen, dtype=dtype))
    e = torch.randn(M, B, H, generator=gen, dtype=dtype)
    P = torch.randn(L, R, 2 * L + 1, M, H, generator=gen, dtype=dtype)
    g = torch.randn(B, mmax + 1, H, generator=gen, dtype=dtype)
    S = torch.randn(R, H, generator=gen, dtype=dtype)
    index = torch.randint(0, R - 1, (B,), generator=gen)
    return [e, W, P, g, S], index


def call(slots, index, outputs, backend, num_nodes=None):
    """The op with the slots in ``outputs`` left out (None) when they need not be given (one output, or P and S:
    they share no term)."""
    args = list(slots)
    if len(outputs) == 1 or set(outputs) == {2, 4}:
        for s in outputs:
            args[s] = None
    return op(*args, index, slots[2].shape[1] if num_nodes is None else num_nodes, outputs, backend)


def looped(e, W, P, g, S, index, slot):
    """The form written out entry by entry over each degree's block (the oracle of the reference twin)."""
    B, L, M, N = W.shape if W is not None else (index.numel(), P.shape[0], P.shape[3], P.shape[2])
    K, H = (M - 1) // 2, (e if e is not None else P).shape[-1]
    R = P.shape[1] if P is not None else int(index.max()) + 2
    like = e if e is not None else P
    out = like.new_zeros(((M, B, H), (B, L, M, N), (L, R, N, M, H), (B, K + 1, H), (R, H))[slot])
    for b in range(B):
        i = int(index[b])
        if S is not None or slot == 4:  # the scalar term e[K] g[0] S[i]
            gate = g[b, 0] if g is not None else 1
            if slot == 0:
                out[K, b] += S[i] * gate
            elif slot == 3:
                out[b, 0] += S[i] * e[K, b]
            elif slot == 4:
                out[i] += e[K, b] * gate
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
                    elif slot == 3:
                        out[b, abs(m - K)] += W[b, l, m, n] * P[l, i, n, m] * e[m, b]
    return out


SUBSETS = [[0], [1], [2], [3], [4], [0, 1], [1, 2], [0, 3], [2, 4], [0, 4], [0, 1, 2], [0, 1, 2, 3, 4]]
FORMS = {"gated, scalars": (), "gated": (4,), "plain": (3, 4)}  # the optional slots left out


@pytest.mark.parametrize("L,mmax", SHAPES)
@pytest.mark.parametrize("outputs,form", [(o, f) for o in SUBSETS for f in FORMS if not set(o) & set(FORMS[f])])
def test_every_output_subset_matches_the_reference_twin(L, mmax, outputs, form):
    slots, index = setup(L, mmax)
    for s in FORMS[form]:
        slots[s] = None
    ref = call(slots, index, outputs, "reference")
    ours = call(slots, index, outputs, "cpu")
    assert registry.last_backend("so2_table") == "cpu"
    for a, b in zip(ours, ref, strict=True):
        assert a.shape == b.shape and a.is_contiguous()
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12 * b.abs().max().item())


@pytest.mark.parametrize("L,mmax", [(2, 2), (3, 1)])
@pytest.mark.parametrize("form", FORMS)
def test_reference_equals_the_explicit_loop(L, mmax, form):
    slots, index = setup(L, mmax, B=7, R=4, H=3)
    for s in FORMS[form]:
        slots[s] = None
    for slot in (s for s in range(5) if s not in FORMS[form]):
        args = list(slots)
        args[slot] = None
        got = op(*args, index, 4, [slot], "reference")[0]
        torch.testing.assert_close(got, looped(*args, index, slot), rtol=0, atol=1e-12)


def test_absent_rotated_term_leaves_the_scalar_term():
    """W and P left out (what the derivatives of the scalar term pass): only ``e g S`` remains."""
    (e, _, _, g, S), index = setup(3, 2)
    K, spread = 2, g[:, [2, 1, 0, 1, 2]].transpose(0, 1)
    for backend in ("reference", "cpu"):
        e_out, g_out = op(e, None, None, g, S, index, 6, [0, 3], backend)
        torch.testing.assert_close(e_out[K], S[index] * g[:, 0], rtol=0, atol=1e-14)
        assert e_out[[0, 1, 3, 4]].abs().max() == 0
        torch.testing.assert_close(g_out[:, 0], S[index] * e[K], rtol=0, atol=1e-14)
        assert g_out[:, 1:].abs().max() == 0
        (s_out,) = op(e, None, None, g, None, index, 6, [4], backend)
        torch.testing.assert_close(s_out, torch.zeros(6, 5, dtype=e.dtype).index_add_(0, index, (e * spread)[K]))


@pytest.mark.parametrize("H,dtype", [(37, torch.float64), (70, torch.float32)])
def test_hidden_axes_wider_than_a_register_block(H, dtype):
    """The kernel sums 256 bytes of the hidden axis at a time in registers: full blocks and a tail."""
    slots, index = setup(2, 2, B=40, R=5, H=H, dtype=dtype)
    ours = op(*slots, index, 5, [0, 1, 2, 3, 4], "cpu")
    exact = op(*[t.double() for t in slots], index, 5, [0, 1, 2, 3, 4], "reference")
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    for a, b in zip(ours, exact, strict=True):
        torch.testing.assert_close(a.double(), b, rtol=0, atol=tol * b.abs().max().item())


def test_gating_is_the_product_of_the_ungated_form():
    """Slot 2 with gates equals slot 2 of the gated features (the gating the SO(2) layer fuses)."""
    (e, W, P, g, _), index = setup(3, 2)
    spread = g[:, [2, 1, 0, 1, 2]].transpose(0, 1)  # |m| of m = -2..2
    for backend in ("reference", "cpu"):
        fused = op(e, W, None, g, None, index, P.shape[1], [2], backend)[0]
        torch.testing.assert_close(fused, op(e * spread, W, None, None, None, index, P.shape[1], [2], backend)[0],
                                   rtol=0, atol=1e-12 * fused.abs().max().item())  # fmt: skip


def test_entries_outside_the_blocks_are_never_read_and_written_zero():
    (e, W, P, g, S), index = setup(3, 2)
    W_dirty = torch.where(W == 0, torch.nan, W)
    block = op(e, W, None, None, None, index, P.shape[1], [2], "reference")[0] != 0
    P_dirty = torch.where(block.any(1, keepdim=True).expand_as(P), P, torch.nan)
    for backend in ("reference", "cpu"):
        for outputs in ([0], [1], [2], [3], [4]):
            got = call([e, W_dirty, P_dirty, g, S], index, outputs, backend)[0]
            want = call([e, W, P, g, S], index, outputs, "reference")[0]
            torch.testing.assert_close(got, want, rtol=0, atol=1e-12 * want.abs().max().item())


def test_sums_do_not_depend_on_the_thread_count():
    # more nodes than a thread's chunk (16): the per-node sums run on both threads
    (e, W, P, g, S), index = setup(3, 3, B=3000, R=200, H=16, dtype=torch.float32)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = op(e, W, None, g, None, index, 200, [2, 4], "cpu")
        torch.set_num_threads(2)
        two = op(e, W, None, g, None, index, 200, [2, 4], "cpu")
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(a, b) for a, b in zip(one, two, strict=True))


@pytest.fixture
def one_thread():
    """Tiny ops (gradcheck) are much slower with thread contention on a shared machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("backend", ["reference", "cpu"])
@pytest.mark.parametrize("form", FORMS)
def test_gradcheck_gradgradcheck(backend, form, one_thread):
    slots, index = setup(2, 1, B=4, R=3, H=2)
    leaves = [None if s in FORMS[form] else t.clone().requires_grad_() for s, t in enumerate(slots)]
    # the encoder's (with the scalars) and the decoder's (with their sum); their derivatives reach every slot
    for outputs in ([0], [2, 4] if 4 not in FORMS[form] else [2]):
        inputs = [t for s, t in enumerate(leaves) if s not in outputs and t is not None]

        def f(*ts, outputs=outputs):
            given = iter(ts)
            args = [None if s in outputs or leaves[s] is None else next(given) for s in range(5)]
            return tuple(op(*args, index, 3, outputs, backend))

        assert torch.autograd.gradcheck(f, inputs)
        assert torch.autograd.gradgradcheck(f, inputs)


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_empty_shapes(backend):
    slots, index = setup(2, 2, B=0, R=3)
    out = op(*slots, index, 3, [0, 1, 2, 3, 4], backend)
    assert [t.shape for t in out] == [t.shape for t in slots]
    assert out[2].abs().max() == 0 and out[4].abs().max() == 0


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_no_hidden_units_give_zeros_for_any_node_count(backend):
    # H = 0: P (L, R, 2L+1, M, 0) holds nothing, so R is bounded by no tensor; nothing may loop over it
    e, W, P = (torch.zeros(3, 2, 0), torch.randn(2, 1, 3, 3), torch.zeros(1, 2**40, 3, 3, 0))
    index = torch.zeros(2, dtype=torch.int64)
    out_e, out_w = op(e, W, P, None, None, index, 2**40, [0, 1], backend)
    assert out_e.shape == e.shape and out_w.shape == W.shape and out_w.abs().max() == 0


def test_float32_within_reference_precision():
    slots, index = setup(4, 4, H=16)
    exact = op(*slots, index, slots[2].shape[1], [0, 1, 2, 3, 4], "reference")
    args32 = [t.float() for t in slots]
    ours = op(*args32, index, slots[2].shape[1], [0, 1, 2, 3, 4], "cpu")
    ref = op(*args32, index, slots[2].shape[1], [0, 1, 2, 3, 4], "reference")
    for a, b, c in zip(ours, ref, exact, strict=True):
        err_ref = (b.double() - c).abs().max().item()
        assert (a.double() - c).abs().max().item() <= 4 * err_ref + 1e-6 * c.abs().max().item()


def test_opcheck():
    (e, W, P, g, S), index = setup(2, 1, B=4, R=3, H=3)
    for args, outputs in (((None, W, P, None, S), [0]), ((e, W, None, g, None), [2, 4]), ((e, W, P, None, None), [1]),
                          ((e, W, P, None, S), [3])):  # fmt: skip
        torch.library.opcheck(op, (*args, index, 3, outputs, "cpu"))


def test_bad_inputs_raise():
    (e, W, P, g, S), index = setup(3, 2)
    R = P.shape[1]
    with pytest.raises(ValueError, match="distinct slots"):
        op(e, W, P, None, None, index, R, [0, 0], "cpu")
    with pytest.raises(ValueError, match="distinct slots"):
        op(e, W, P, None, None, index, R, [5], "cpu")
    with pytest.raises(ValueError, match="slot 0 is needed"):  # W's value reads e
        op(None, None, P, None, None, index, R, [0, 1], "cpu")
    with pytest.raises(ValueError, match="slot 0 is needed"):
        op(None, W, None, None, None, index, R, [2], "cpu")
    with pytest.raises(ValueError, match="slot 4 is needed"):  # e's value reads S, P's does not
        op(e, W, P, g, None, index, R, [0, 4], "cpu")
    with pytest.raises(ValueError, match="slot 1 is needed"):  # P's value reads W
        op(e, None, None, g, None, index, R, [2], "cpu")
    with pytest.raises(ValueError, match="W and P are given together"):
        op(None, None, P, g, S, index, R, [0], "cpu")
    with pytest.raises(ValueError, match="no term to contract"):  # neither W with P nor S: nothing reads nodes
        op(e, None, None, g, None, index, 2**61, [3], "cpu")
    with pytest.raises(ValueError, match="no term to contract"):
        op(None, None, None, None, None, index, R, [0], "cpu")
    with pytest.raises(ValueError, match="need e, W, P or g"):
        op(None, None, None, None, S, index, R, [0], "cpu")
    with pytest.raises(TypeError, match="float32"):
        op(None, W.float(), P, None, None, index, R, [0], "cpu")
    with pytest.raises(ValueError, match="P must have shape"):
        op(None, W, P, None, None, index, R + 1, [0], "cpu")
    with pytest.raises(ValueError, match="W must have shape"):
        op(None, W[:3], P, None, None, index, R, [0], "cpu")
    with pytest.raises(ValueError, match="e must have shape"):
        op(e[:, 1:], W, None, None, None, index, R, [2], "cpu")
    with pytest.raises(ValueError, match="g must have shape"):
        op(e, W, None, g[:, 1:], None, index, R, [2], "cpu")
    with pytest.raises(ValueError, match="S must have shape"):
        op(None, W, P, g, S[1:], index, R, [0], "cpu")
    with pytest.raises(IndexError, match="outside"):
        op(None, W, P, None, None, index + R, R, [0], "cpu")
    with pytest.raises(IndexError, match="negative"):
        op(e, W, None, None, None, index - R, R, [2], "cpu")
    with pytest.raises(TypeError, match="int64"):
        op(None, W, P, None, None, index.int(), R, [0], "cpu")
    with pytest.raises(registry.BackendUnavailable, match="covers"):
        op(None, W, P, None, None, index, R, [0], "triton")
    with pytest.raises(registry.BackendUnavailable, match="float32 and float64"):
        op(None, W.bfloat16(), P.bfloat16(), None, None, index, R, [0], "cpu")
