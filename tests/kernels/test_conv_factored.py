"""``fastso3::conv_factored``: the fused convolution with per-edge weights ``hidden @ matrix`` (a radial MLP's last
layer), formed a block of edges at a time, against the reference twin, the materialised weights and properties."""

import pytest
import torch

from fastso3 import o3
from fastso3.kernels import conv_factored, registry
from fastso3.kernels.conv import csr, plan_table
from fastso3.kernels.conv_factored import conv_factored_op
from fastso3.ops import tensor_product_conv
from tests.kernels.test_conv import graph, uvu

HIDDEN = 5


def factored_graph(tp, nodes=6, edges=25, dtype=torch.float64, seed=0):
    """(x, src, dst, sh, hidden, matrix); node 0 receives a third of the edges (a row larger than a block)."""
    x, src, dst, sh, _ = graph(tp, nodes, edges, dtype, seed)
    dst[: edges // 3] = 0
    gen = torch.Generator().manual_seed(seed + 1)
    hidden = torch.randn(edges, HIDDEN, generator=gen, dtype=dtype)
    matrix = torch.randn(HIDDEN, tp.weight_numel, generator=gen, dtype=dtype)
    return x, src, dst, sh, hidden, matrix


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of about 4 edges of the default module: 25 edges in several blocks, node 0's 8 edges in one."""
    monkeypatch.setattr(conv_factored, "_BLOCK_BYTES", 4 * uvu().weight_numel * 8)


def op_args(tp, x, src, dst, sh, hidden, matrix, g=None):
    nodes = x.shape[0]
    (ptr_dst, perm_dst), (ptr_src, perm_src) = csr(dst, nodes), csr(src, nodes)
    return [g, x, sh, hidden, matrix, [dst, src], [ptr_dst, ptr_src], [perm_dst, perm_src], plan_table(tp.plan)]


@pytest.mark.parametrize("outputs", [[0], [1], [2], [3], [4], [1, 2, 3, 4], [0, 2, 3, 4], [0, 1], [4, 0, 2]])
def test_every_output_subset_matches_the_reference_twin(outputs, small_blocks):
    tp = uvu()
    args = op_args(tp, *factored_graph(tp), g=torch.randn(6, tp.irreps_out.dim, dtype=torch.float64))
    ref = conv_factored_op(*args, outputs, "reference")
    ours = conv_factored_op(*args, outputs, "cpu")
    assert registry.last_backend("tensor_product_conv") == "cpu"
    for s, a, b in zip(outputs, ours, ref, strict=True):
        assert a.shape == b.shape, s
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_reference_twin_is_the_convolution_with_materialised_weights():
    tp = uvu()
    x, src, dst, sh, hidden, matrix = factored_graph(tp)
    leaves = [t.clone().requires_grad_() for t in (x, sh, hidden, matrix)]
    direct = tensor_product_conv(leaves[0], src, dst, leaves[1], leaves[2] @ leaves[3], tp.plan, 6, backend="reference")
    g = torch.randn_like(direct)
    expected = torch.autograd.grad(direct, leaves, g)
    out, *grads = conv_factored_op(*op_args(tp, x, src, dst, sh, hidden, matrix, g), [0, 1, 2, 3, 4], "reference")
    torch.testing.assert_close(out, direct, rtol=0, atol=1e-12)
    for ours, theirs in zip(grads, expected, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_tensor_product_conv_takes_factored_weights(dtype, small_blocks):
    """Values and gradients equal the unfactored fused convolution's (float32: to its precision)."""
    tp = uvu(dtype=dtype)
    x, src, dst, sh, hidden, matrix = factored_graph(tp, dtype=dtype)
    results = []
    for factored in (True, False):
        leaves = [t.clone().requires_grad_() for t in (x, sh, hidden, matrix)]
        w = o3.FactoredWeight(leaves[2], leaves[3]) if factored else leaves[2] @ leaves[3]
        out = tensor_product_conv(leaves[0], src, dst, leaves[1], w, tp, 6, backend="cpu")
        results.append((out, *torch.autograd.grad(out, leaves, torch.ones_like(out))))
    eps = torch.finfo(dtype).eps
    for ours, theirs in zip(*results):
        torch.testing.assert_close(ours, theirs, rtol=100 * eps, atol=100 * eps * theirs.abs().max().item())


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_gradcheck_gradgradcheck(backend, small_blocks):
    tp = uvu(2, 1)
    x, src, dst, sh, hidden, matrix = factored_graph(tp, nodes=3, edges=7)
    fn = lambda a, b, c, d: tensor_product_conv(a, src, dst, b, o3.FactoredWeight(c, d), tp.plan, 3, backend=backend)
    leaves = [t.requires_grad_() for t in (x, sh, hidden, matrix)]
    assert torch.autograd.gradcheck(fn, leaves)
    assert torch.autograd.gradgradcheck(fn, leaves)


def test_bitwise_over_thread_counts(small_blocks):
    tp = uvu(8, 2, dtype=torch.float32)
    x, src, dst, sh, hidden, matrix = factored_graph(tp, nodes=40, edges=600, dtype=torch.float32)

    def run():
        leaves = [t.clone().requires_grad_() for t in (x, sh, hidden, matrix)]
        out = tensor_product_conv(leaves[0], src, dst, leaves[1], o3.FactoredWeight(leaves[2], leaves[3]), tp, 40)
        return (out, *torch.autograd.grad(out, leaves[:2], torch.ones_like(out)))

    threads = torch.get_num_threads()
    first = run()
    try:
        torch.set_num_threads(1)
        single = run()
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(first, single, strict=True):
        assert torch.equal(a, b)


def test_opcheck(small_blocks):
    tp = uvu()
    args = op_args(tp, *factored_graph(tp), g=torch.randn(6, tp.irreps_out.dim, dtype=torch.float64))
    for outputs in ([1, 2, 3, 4], [0]):
        call = args if outputs != [0] else [None, *args[1:]]
        torch.library.opcheck(conv_factored_op, (*call, outputs, "cpu"))


def test_no_edges():
    tp = uvu()
    x, src, dst, sh, hidden, matrix = factored_graph(tp, edges=0)
    leaves = [t.requires_grad_() for t in (x, sh, hidden, matrix)]
    out = tensor_product_conv(leaves[0], src, dst, leaves[1], o3.FactoredWeight(*leaves[2:]), tp, 3)
    assert torch.equal(out, torch.zeros(3, tp.irreps_out.dim, dtype=x.dtype))
    for t, grad in zip(leaves, torch.autograd.grad(out, leaves, torch.ones_like(out)), strict=True):
        assert grad.shape == t.shape and not grad.any()


# float64 channels of the kernels' vector paths: 12 = one vector + 4 (groups of 4 edges), 24 = 3 vectors (of 2)
@pytest.mark.parametrize("channels", [12, 24])
def test_vector_widths_match_the_reference_twin(channels, monkeypatch):
    tp = uvu(channels, 1)
    monkeypatch.setattr(conv_factored, "_BLOCK_BYTES", 30 * tp.weight_numel * 8)  # 80 edges in about 3 blocks
    x, src, dst, sh, hidden, matrix = factored_graph(tp, nodes=40, edges=80)
    args = op_args(tp, x, src, dst, sh, hidden, matrix, g=torch.randn(40, tp.irreps_out.dim, dtype=torch.float64))
    for outputs in ([0, 2, 3, 4], [1, 2, 3, 4]):
        for ours, ref in zip(conv_factored_op(*args, outputs, "cpu"), conv_factored_op(*args, outputs, "reference"), strict=True):
            torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)


def test_bad_inputs_raise():
    tp = uvu()
    x, src, dst, sh, hidden, matrix = factored_graph(tp)
    with pytest.raises(ValueError, match="edge_weights.matrix"):
        tensor_product_conv(x, src, dst, sh, o3.FactoredWeight(hidden, matrix[:, :-1]), tp, 6)
    with pytest.raises(ValueError, match=r"edge_weights.matrix must have shape \(H"):
        tensor_product_conv(x, src, dst, sh, o3.FactoredWeight(hidden, matrix[:-1]), tp, 6)
    with pytest.raises(ValueError, match="edge_weights.hidden has 24 rows"):
        tensor_product_conv(x, src, dst, sh, o3.FactoredWeight(hidden[:-1], matrix), tp, 6)
    with pytest.raises(ValueError, match="torch.int64 of shape"):
        tensor_product_conv(x, src, dst, sh, o3.FactoredWeight(hidden.long(), matrix), tp, 6)
    with pytest.raises(TypeError, match="edge_weights.hidden"):
        tensor_product_conv(x, src, dst, sh, o3.FactoredWeight(hidden.float(), matrix), tp, 6)
    args = op_args(tp, x, src, dst, sh, hidden, matrix)
    bad_ptr = args[6][0].clone()
    bad_ptr[2], bad_ptr[3] = bad_ptr[3], bad_ptr[2] - 1  # decreasing: a block would read outside its edges
    with pytest.raises(ValueError, match="never decrease"):
        conv_factored_op(*args[:6], [bad_ptr, args[6][1]], *args[7:], [0], "cpu")
    with pytest.raises(ValueError, match="g may be None only"):
        conv_factored_op(*args, [1], "cpu")
    with pytest.raises(ValueError, match="distinct slots"):
        conv_factored_op(*args, [0, 0], "cpu")
