"""Regression tests for the inputs that once crashed a kernel or gave a silent wrong result (issue 12)."""

import pytest
import torch

from fastso3 import nn, o3
from fastso3.core.limits import TooLarge
from fastso3.graph import neighbor_list, radius_graph
from fastso3.kernels import registry
from fastso3.ops import sparse_accumulate, tensor_product_conv
from fastso3.so2 import SO2Convolution

I64 = torch.int64


def accumulate_direct(x1, x2, idx, mult, n_out=2, backend="cpu"):
    return torch.ops.fastso3.sparse_accumulate(x1, x2, idx, idx, idx, mult, n_out, backend)


def test_registered_sparse_accumulate_checks_what_its_kernel_reads():
    x, idx, mult = torch.randn(4, 3), torch.tensor([0, 1]), torch.ones(2)
    with pytest.raises(TypeError, match="idx_output must be a 1-D int64 tensor"):
        accumulate_direct(x, x, idx.int(), mult)
    with pytest.raises(TypeError, match="supports float32 and float64, got torch.float16"):  # not the f64 kernel
        accumulate_direct(x.half(), x.half(), idx, mult.half())
    with pytest.raises(ValueError, match="idx_output has 2000 entries, expected 1"):
        accumulate_direct(x, x, torch.zeros(2000, dtype=I64), torch.ones(1))
    with pytest.raises(IndexError, match="idx_output contains 100000000, outside"):
        accumulate_direct(x, x, torch.tensor([0, 10**8]), mult)
    with pytest.raises(IndexError, match="contains -1"):
        accumulate_direct(x, x, torch.tensor([0, -1]), mult)
    with pytest.raises(TypeError, match="X2 is torch.float64"):
        accumulate_direct(x, x.double(), idx, mult)
    with pytest.raises(ValueError, match="unknown backend 'bogus'"):
        accumulate_direct(x, x, idx, mult, backend="bogus")
    with pytest.raises(registry.BackendUnavailable, match="covers"):  # spherical harmonics have no Triton kernel
        torch.ops.fastso3.spherical_harmonics(torch.randn(2, 3), 2, True, "component", "triton")


def test_every_registered_op_rejects_unknown_backends():
    tp = o3.FullyConnectedTensorProduct("1x0e + 1x1o", "1x1o", "1x0e", shared_weights=False)
    x1, x2, w = torch.randn(2, 4), torch.randn(2, 3), torch.randn(2, tp.weight_numel)
    from fastso3.kernels.uvw import register_uvw_plan

    with pytest.raises(ValueError, match="unknown backend"):
        torch.ops.fastso3.uvw(x1, x2, w, register_uvw_plan(tp.plan), [0, 1, 2, 3], False, "gpu")
    with pytest.raises(ValueError, match="unknown table"):
        torch.ops.fastso3.uvw(x1, x2, w, "uvw:nope", [0, 1, 2, 3], False, "cpu")
    with pytest.raises(ValueError, match="x1 must have shape"):
        torch.ops.fastso3.uvw(x1[:, :3], x2, w, register_uvw_plan(tp.plan), [0, 1, 2, 3], False, "cpu")
    with pytest.raises(ValueError, match="unknown backend"):
        torch.ops.fastso3.normalize_vjp(torch.randn(2, 3), torch.randn(2, 3), "fast")
    with pytest.raises(ValueError, match="g must have shape"):
        torch.ops.fastso3.normalize_vjp(torch.randn(5, 3), torch.randn(2, 3), "cpu")


@pytest.mark.parametrize("backend", ["cpu", "reference"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("size", [1e-30, 1e-20, 1e19, 1e30])
def test_spherical_harmonics_normalise_any_finite_nonzero_vector(backend, dtype, size):
    direction = torch.tensor([[0.3, -0.5, 0.8]], dtype=torch.float64)
    x = (direction * size).to(dtype).requires_grad_()
    y = o3.spherical_harmonics("0e + 1o + 2e + 3o", x, normalize=True, backend=backend)
    ref = o3.spherical_harmonics("0e + 1o + 2e + 3o", direction, normalize=True, backend="reference")
    tol = 1e-6 if dtype == torch.float32 else 1e-14
    torch.testing.assert_close(y.double(), ref, rtol=tol, atol=tol)
    (g,) = torch.autograd.grad(y[:, 1:4].sum(), x)  # the gradient at size * d is the one at d over size
    d = direction.clone().requires_grad_()
    (g_d,) = torch.autograd.grad(o3.spherical_harmonics("1o", d, normalize=True).sum(), d)
    torch.testing.assert_close(g.double() * size, g_d, rtol=tol * 10, atol=tol * 10)


def so2_problem():
    conv = SO2Convolution("2x0e + 2x1o", "2x0e + 2x1o")
    return conv, torch.randn(3, conv.irreps_in.dim), torch.randn(2, 3)


@pytest.mark.parametrize("edge_index,message", [
    ([[0, -1], [1, 2]], r"edge_index\[0\] \(senders\) contains -1"),
    ([[0, 1], [-1, 2]], r"edge_index\[1\] \(receivers\) contains -1"),
    ([[0, 3], [1, 2]], r"edge_index\[0\] \(senders\) contains 3, outside \[0, 3\)"),
])  # fmt: skip
def test_so2_convolution_one_index_rule(edge_index, message):
    conv, x, vec = so2_problem()
    with pytest.raises(IndexError, match=message):
        conv(x, torch.tensor(edge_index), vec)


def test_so2_convolution_names_the_dtype_fix():
    conv, x, vec = so2_problem()
    with pytest.raises(TypeError, match=r"module.to\(torch.float64\)"):
        conv(x.double(), torch.tensor([[0, 1], [1, 2]]), vec.double())


def test_guards_against_huge_work():
    with pytest.raises(TooLarge, match=r"wigner_3j\(200, 200, 200\): 6.45e\+07 entries.*allow_large=True"):
        o3.wigner_3j(200, 200, 200)
    with pytest.raises(TooLarge, match="degree 1000.*allow_large=True"):
        o3.spherical_harmonics(1000, torch.randn(3, 3), True)
    with pytest.raises(TooLarge, match="degree 200"):
        o3.SphericalHarmonics(200, True)
    assert o3.spherical_harmonics(129, torch.randn(1, 3), True, allow_large=True).shape == (1, 259)
    with pytest.raises(TooLarge, match="about 4e\\+08 edges"):  # all pairs of 20000 points
        radius_graph(torch.randn(20000, 3), 100.0)
    with pytest.raises(TooLarge, match="periodic images"):
        neighbor_list(torch.randn(2, 3) * 0.01, torch.eye(3) * 0.1, True, 100.0)


def test_radius_graph_auto_uses_the_brute_force_for_a_cutoff_spanning_the_cloud():
    pos = torch.rand(1500, 3)  # above the vesin threshold, cutoff larger than the cloud
    src, dst = radius_graph(pos, 3.0)
    assert src.shape[0] == 1500 * 1499
    ref_src, ref_dst = radius_graph(pos, 3.0, method="torch")
    assert torch.equal(src, ref_src) and torch.equal(dst, ref_dst)


def uvu_product():
    return o3.TensorProduct("2x0e + 2x1o", "0e + 1o", "2x0e + 2x1o",
                            [(0, 0, 0, "uvu", True), (1, 1, 0, "uvu", True), (0, 1, 1, "uvu", True)],
                            shared_weights=False, internal_weights=False)  # fmt: skip


@pytest.mark.parametrize("backend", ["cpu", "reference"])
@pytest.mark.parametrize("nodes,edges", [(0, 0), (3, 0)])
def test_empty_graphs(backend, nodes, edges):
    tp = uvu_product()
    x = torch.randn(nodes, tp.irreps_in1.dim, dtype=torch.float64, requires_grad=True)
    sh = torch.randn(edges, tp.irreps_in2.dim, dtype=torch.float64, requires_grad=True)
    w = torch.randn(edges, tp.weight_numel, dtype=torch.float64, requires_grad=True)
    e = torch.zeros(edges, dtype=I64)
    out = tensor_product_conv(x, e, e, sh, w, tp, nodes, backend=backend)
    assert out.shape == (nodes, tp.irreps_out.dim) and not out.abs().any()
    grads = torch.autograd.grad(out.sum(), (x, sh, w))
    assert [g.shape for g in grads] == [x.shape, sh.shape, w.shape] and not any(g.abs().any() for g in grads)


@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_sparse_accumulate_zero_width_and_zero_rows(backend):
    empty = torch.zeros(0, dtype=I64)
    out = sparse_accumulate(torch.randn(4, 0), torch.randn(4, 0), empty, 2, empty, empty, torch.ones(0), backend=backend)
    assert out.shape == (4, 2) and not out.any()
    x = torch.randn(0, 3, requires_grad=True)
    idx = torch.tensor([0, 2])
    out = sparse_accumulate(x, x, idx, 3, idx, idx, torch.ones(2), backend=backend)
    assert out.shape == (0, 3)
    assert torch.autograd.grad(out.sum(), x)[0].shape == (0, 3)


def test_batchnorm_on_zero_samples():
    bn = nn.BatchNorm("4x0e + 2x1o")
    x = torch.randn(0, 10, requires_grad=True)
    out = bn(x)
    assert out.shape == (0, 10)
    assert torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean))  # no NaN statistics


def test_fully_connected_net_names_the_dtype_fix():
    net = nn.FullyConnectedNet([3, 4, 2], torch.relu)
    with pytest.raises(TypeError, match=r"the input is torch.float64.*module.to\(torch.float64\)"):
        net(torch.randn(2, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"expected an input \(\.\.\., 3\)"):
        net.factored(torch.randn(2, 4))
