import pytest
import torch

from fastso3 import o3
from fastso3.core.tensor_product import tensor_product_plan
from fastso3.core.tensor_product_builders import channelwise_tensor_product_spec
from fastso3.kernels import registry
from fastso3.ops import tensor_product_conv


def uvu_args(channels=3, lmax=2):
    irreps_in1 = o3.Irreps([(channels, (l, (-1) ** l)) for l in range(lmax + 1)])
    keep = [(l, p) for l in range(lmax + 1) for p in (1, -1)]
    spec = channelwise_tensor_product_spec(irreps_in1, o3.Irreps.spherical_harmonics(lmax), keep)
    return str(irreps_in1), str(spec["irreps_in2"]), str(spec["irreps_out"]), spec["instructions"]


def uvu(channels=3, lmax=2, dtype=torch.float64):
    return o3.TensorProduct(*uvu_args(channels, lmax), shared_weights=False, backend="reference").to(dtype)


def graph(tp, nodes=6, edges=25, dtype=torch.float64, seed=0):
    """(x, src, dst, sh, w); the last node receives no edge."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(nodes, tp.irreps_in1.dim, generator=gen, dtype=dtype)
    src = torch.randint(0, nodes, (edges,), generator=gen)
    dst = torch.randint(0, nodes - 1, (edges,), generator=gen)
    sh = torch.randn(edges, tp.irreps_in2.dim, generator=gen, dtype=dtype)
    w = torch.randn(edges, tp.weight_numel, generator=gen, dtype=dtype)
    return x, src, dst, sh, w


def unfused(tp, x, src, dst, sh, w, nodes):
    """The definition: gather, per-edge tensor product, index_add into the receivers."""
    return torch.zeros(nodes, tp.irreps_out.dim, dtype=x.dtype).index_add(0, dst, tp(x[src], sh, w))


# float64 channels in the kernel's register chunks of 8, 4, 2, 1 vectors of 8 and a plain tail:
# 3 the tail only, 40 = 4 + 1 vectors, 91 = 8 + 2 + 1 vectors + 3; edges in groups of 4 up to 2 vectors
# (12 = 1 vector + 4) and of 2 up to 4 (24 = 2 + 1 vectors)
@pytest.mark.parametrize("backend", ["reference", "cpu"])
@pytest.mark.parametrize("channels,lmax", [(3, 2), (12, 1), (24, 1), (40, 1), (91, 1)])
def test_matches_gather_tensor_product_index_add(backend, channels, lmax):
    tp = uvu(channels, lmax)
    x, src, dst, sh, w = graph(tp)
    leaves = [t.clone().requires_grad_() for t in (x, sh, w)]
    out = tensor_product_conv(leaves[0], src, dst, leaves[1], leaves[2], tp.plan, 6, backend=backend)
    assert registry.last_backend("tensor_product_conv") == backend
    ref_leaves = [t.clone().requires_grad_() for t in (x, sh, w)]
    ref = unfused(tp, ref_leaves[0], src, dst, ref_leaves[1], ref_leaves[2], 6)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    assert out[5].abs().max() == 0  # no incoming edge
    g = torch.randn_like(out)
    for ours, theirs in zip(torch.autograd.grad(out, leaves, g), torch.autograd.grad(ref, ref_leaves, g)):
        torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)


# float32 (vectors of 16): 32 channels one 2-vector chunk (NequIP's width, groups of 4 edges), 48 = 2 + 1 vectors
# (groups of 2), 85 = 4 + 1 vectors + a tail of 5 (one edge at a time)
@pytest.mark.parametrize("channels", [32, 48, 85])
def test_float32_channel_chunks(channels):
    tp = uvu(channels, 1)
    x, src, dst, sh, w = graph(tp)
    leaves = [t.float().requires_grad_() for t in (x, sh, w)]
    out = tensor_product_conv(leaves[0], src, dst, leaves[1], leaves[2], tp.plan, 6)
    ref_leaves = [t.clone().requires_grad_() for t in (x, sh, w)]
    ref = unfused(tp, ref_leaves[0], src, dst, ref_leaves[1], ref_leaves[2], 6)
    torch.testing.assert_close(out.double(), ref, rtol=1e-4, atol=1e-4)
    g = torch.randn_like(ref)
    for ours, theirs in zip(torch.autograd.grad(out, leaves, g.float()), torch.autograd.grad(ref, ref_leaves, g)):
        torch.testing.assert_close(ours.double(), theirs, rtol=1e-4, atol=1e-4)


@pytest.mark.e3nn
def test_accepts_a_module_and_matches_e3nn():
    e3nn_o3 = pytest.importorskip("e3nn.o3")
    tp = uvu(dtype=torch.float32)
    x, src, dst, sh, w = graph(tp, dtype=torch.float32)
    theirs = e3nn_o3.TensorProduct(*uvu_args(), shared_weights=False)
    out = tensor_product_conv(x, src, dst, sh, w, tp, 6)
    torch.testing.assert_close(out, unfused(theirs, x, src, dst, sh, w, 6), rtol=1e-5, atol=1e-5)


# 8 channels: the plain loops; 32: register chunks (float32 vectors of 16)
@pytest.mark.parametrize("channels", [8, 32])
def test_deterministic_bitwise_over_runs_and_thread_counts(channels):
    tp = uvu(channels, 2, dtype=torch.float32)
    x, src, dst, sh, w = graph(tp, nodes=40, edges=600, dtype=torch.float32)

    def run():
        leaves = [t.clone().requires_grad_() for t in (x, sh, w)]
        out = tensor_product_conv(leaves[0], src, dst, leaves[1], leaves[2], tp.plan, 40, deterministic=True)
        return (out, *torch.autograd.grad(out, leaves, torch.ones_like(out)))

    threads = torch.get_num_threads()
    first = run()
    try:
        torch.set_num_threads(1)
        runs = [run(), run()]
    finally:
        torch.set_num_threads(threads)
    runs.append(run())
    for other in runs:
        for a, b in zip(first, other):
            assert torch.equal(a, b)


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_gradcheck_gradgradcheck(backend):
    tp = uvu(2, 1)
    x, src, dst, sh, w = graph(tp, nodes=3, edges=5)
    fn = lambda a, b, c: tensor_product_conv(a, src, dst, b, c, tp.plan, 3, backend=backend)
    leaves = [t.requires_grad_() for t in (x, sh, w)]
    assert torch.autograd.gradcheck(fn, leaves)
    assert torch.autograd.gradgradcheck(fn, leaves)


def test_no_edges_and_different_receiver_count():
    tp = uvu()
    x, src, dst, sh, w = graph(tp, edges=0)
    assert torch.equal(tensor_product_conv(x, src, dst, sh, w, tp.plan, 3), torch.zeros(3, tp.irreps_out.dim, dtype=x.dtype))
    x, src, dst, sh, w = graph(tp)
    out = tensor_product_conv(x, src, dst, sh, w, tp.plan, 9)  # receivers may be another node set
    torch.testing.assert_close(out, unfused(tp, x, src, dst, sh, w, 9), rtol=1e-12, atol=1e-12)


@pytest.mark.compile
def test_compile_fullgraph_matches_eager():
    # a plan no module registered yet: the table is registered while tracing
    plan = tensor_product_plan(*uvu_args(5, 1))
    x, src, dst, sh, w = graph(plan)

    def fn(a, b, c):
        return tensor_product_conv(a, src, dst, b, c, plan, 6).square().sum()

    results = []
    for f in (torch.compile(fn, fullgraph=True), fn):
        leaves = [t.clone().requires_grad_() for t in (x, sh, w)]
        value = f(*leaves)
        results.append((value, *torch.autograd.grad(value, leaves)))
    for compiled, eager in zip(*results):
        torch.testing.assert_close(compiled, eager, rtol=1e-12, atol=1e-12)


@pytest.mark.compile
def test_compile_dynamic_graph_sizes_share_one_graph():
    from torch._dynamo.testing import CompileCounter

    tp = uvu(4, 2)
    counter = CompileCounter()
    fn = lambda *args: tensor_product_conv(*args[:5], tp.plan, args[5])
    compiled = torch.compile(fn, fullgraph=True, dynamic=True, backend=counter)
    for nodes, edges in ((6, 25), (9, 40)):
        x, src, dst, sh, w = graph(tp, nodes=nodes, edges=edges)
        out = compiled(x, src, dst, sh, w, nodes)
        torch.testing.assert_close(out, unfused(tp, x, src, dst, sh, w, nodes), rtol=1e-12, atol=1e-12)
    assert counter.frame_count == 1


def test_bad_inputs_raise():
    tp = uvu()
    x, src, dst, sh, w = graph(tp)
    call = lambda **kw: tensor_product_conv(
        *[kw.get(k, v) for k, v in {"x": x, "src": src, "dst": dst, "sh": sh, "w": w, "plan": tp.plan, "n": 6}.items()]
    )
    with pytest.raises(ValueError, match="node_features"):
        call(x=x[:, :-1])
    with pytest.raises(ValueError, match="edge_weights"):
        call(w=w[:-1])
    with pytest.raises(TypeError, match="edge_attr"):
        call(sh=sh.float())
    with pytest.raises(TypeError, match="edge_src"):
        call(src=src.int())
    with pytest.raises(ValueError, match="edge_dst has"):
        call(dst=dst[:-1])
    with pytest.raises(IndexError, match="edge_src"):
        call(src=src + 6)
    with pytest.raises(IndexError, match="edge_dst"):
        call(dst=dst - 1 - dst.max())
    with pytest.raises(ValueError, match="num_nodes"):
        call(n=-1)
    full = o3.FullyConnectedTensorProduct("2x0e", "0e", "2x0e", shared_weights=False)
    with pytest.raises(ValueError, match="channel-wise"):
        call(plan=full.plan)
    with pytest.raises(registry.BackendUnavailable):
        tensor_product_conv(x.half(), src, dst, sh.half(), w.half(), tp.plan, 6, backend="cpu")


def test_ops_reject_a_bad_csr_and_read_strided_indices():
    """The ops check the CSR they are given (their kernels trust it) and read non-contiguous index tensors right."""
    from fastso3.kernels.conv import conv_channeled_op, csr, plan_table

    tp = uvu()
    x, src, dst, sh, w = graph(tp)
    (ptr_dst, perm_dst), (ptr_src, perm_src) = csr(dst, 6), csr(src, 6)
    args = lambda index, ptr, perm: (x, w, sh, index, ptr, perm, plan_table(tp.plan), [0, 1, 3, 2], "cpu")
    index = [dst, src, None, None]
    expected = conv_channeled_op(*args(index, [ptr_dst, ptr_src, None, None], [perm_dst, perm_src, None, None]))
    twice = perm_dst.repeat_interleave(2)[::2]  # the same values, strided
    out = conv_channeled_op(*args([dst.repeat_interleave(2)[::2], src.repeat_interleave(2)[::2], None, None], [ptr_dst, ptr_src, None, None],
                                  [twice, perm_src, None, None]))  # fmt: skip
    assert torch.equal(out, expected)
    duplicated = perm_dst.clone()
    duplicated[1] = duplicated[0]
    with pytest.raises(ValueError, match="permutation"):
        conv_channeled_op(*args(index, [ptr_dst, ptr_src, None, None], [duplicated, perm_src, None, None]))
    decreasing = ptr_dst.clone()
    decreasing[2], decreasing[3] = decreasing[3], decreasing[2] - 1
    with pytest.raises(ValueError, match="never decrease"):
        conv_channeled_op(*args(index, [decreasing, ptr_src, None, None], [perm_dst, perm_src, None, None]))


@pytest.mark.parametrize("channels", [3, 8, 24, 91])
def test_every_slot_indexed_matches_the_reference(channels):
    """The ops take an index for any slot: edge attributes shared through an index (slot 2) make the harmonics
    gradient a sum over segments too (the kernels' grouped segment paths), in float64 against the reference."""
    from fastso3.kernels.conv import conv_channeled_op, csr, plan_table

    tp = uvu(channels, 1)
    x, src, dst, _, w = graph(tp, edges=40)
    kinds = torch.randint(0, 4, (40,), generator=torch.Generator().manual_seed(5))
    attrs = torch.randn(4, tp.irreps_in2.dim, dtype=torch.float64)
    index = [dst, src, kinds, None]
    ptr, perm = zip(*[csr(i, n) for i, n in ((dst, 6), (src, 6), (kinds, 4))])
    results = []
    for backend in ("reference", "cpu"):
        leaves = [t.clone().requires_grad_() for t in (x, w, attrs)]
        out = conv_channeled_op(*leaves, index, [*ptr, None], [*perm, None], plan_table(tp.plan), [0, 1, 3, 2], backend)
        results.append((out, *torch.autograd.grad(out, leaves, torch.ones_like(out))))
    for ref, ours in zip(*results, strict=True):
        torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
