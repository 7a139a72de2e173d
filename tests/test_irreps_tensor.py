"""IrrepsTensor: construction, chunks, zero flags, indexing, arithmetic, rotations, reorganisation,
pytree registration (vmap, torch.compile) and equivariance of the functional tensor product."""

import pytest
import torch
import torch.utils._pytree as pytree
from torch.func import vmap

from fastso3 import o3
from fastso3.core.irreps import Irreps
from fastso3.functional import fully_connected_tensor_product_plan, tensor_product
from fastso3.irreps_tensor import IrrepsTensor

D = torch.float64


def test_from_chunks_example_and_flags():
    x = IrrepsTensor.from_chunks("1o+2x0e", [None, torch.ones(2, 1)], ())
    assert x.irreps == "1o+2x0e"
    assert x.array.tolist() == [0, 0, 0, 1, 1]
    assert x.zero_flags == (True, False)
    assert x.chunks[0] is None and x.chunks[1].shape == (2, 1)
    assert x.dtype == torch.get_default_dtype() and x.shape == (5,)


def test_from_chunks_leading_shape_dtype_and_errors():
    c = torch.randn(3, 4, 2, 5, dtype=D)
    x = IrrepsTensor.from_chunks("0e+2x2e", [None, c], (3, 4))
    assert x.shape == (3, 4, 11) and x.dtype == D
    assert torch.equal(x.array[..., 1:], c.reshape(3, 4, 10)) and not x.array[..., 0].any()
    y = IrrepsTensor.from_chunks("0e+1o", [None, None], 2, dtype=D)
    assert y.shape == (2, 4) and y.dtype == D and y.zero_flags == (True, True)
    with pytest.raises(ValueError):
        IrrepsTensor.from_chunks("0e+1o", [None], ())
    with pytest.raises(ValueError):
        IrrepsTensor.from_chunks("0e+1o", [None, torch.zeros(1, 2)], ())
    with pytest.raises(ValueError):
        IrrepsTensor("0e+1o", torch.zeros(3))
    with pytest.raises(ValueError):
        IrrepsTensor("0e+1o", torch.zeros(4), zero_flags=(True,))
    with pytest.raises(TypeError):
        IrrepsTensor("0e", [1.0])


def test_chunks_are_views():
    x = IrrepsTensor("2x0e+1x1o+1x2e", torch.randn(3, 10, dtype=D))
    chunks = x.chunks
    assert [tuple(c.shape) for c in chunks] == [(3, 2, 1), (3, 1, 3), (3, 1, 5)]
    for c, s in zip(chunks, x.irreps.slices()):
        assert torch.equal(c.reshape(3, -1), x.array[:, s])
        assert c.data_ptr() >= x.array.data_ptr()  # a view, not a copy
    assert x.chunks is chunks  # cached


def test_constructors():
    z = IrrepsTensor.zeros("0e+1o", (2,), dtype=D)
    assert z.zero_flags == (True, True) and z.shape == (2, 4) and not z.array.any()
    zl = IrrepsTensor.zeros_like(IrrepsTensor("0e+1o", torch.randn(5, 4)))
    assert zl.shape == (5, 4) and zl.zero_flags == (True, True)
    r = IrrepsTensor.randn("2x1o+0e", (100,), normalization="norm", dtype=D)
    assert r.zero_flags == (False, False)
    assert torch.allclose(r.chunks[0].norm(dim=-1), torch.ones(100, 2, dtype=D))
    r2 = IrrepsTensor.randn("1o", 3, requires_grad=True)
    assert r2.array.requires_grad and r2.shape == (3, 3)


def test_to_detach_len_repr():
    x = IrrepsTensor("0e+1o", torch.randn(2, 4), zero_flags=(False, True))
    y = x.to(D)
    assert y.dtype == D and y.zero_flags == x.zero_flags and y.irreps == x.irreps
    assert len(x) == 2 and x.ndim == 2 and x.device.type == "cpu"
    assert "zero_flags" in repr(x)
    assert not x.detach().array.requires_grad
    with pytest.raises(TypeError):
        len(IrrepsTensor("0e", torch.zeros(1)))


# --- indexing ---------------------------------------------------------------------------------------


def test_index_by_irreps():
    irreps = Irreps("2x0e+1e+2e+1o")
    x = IrrepsTensor(irreps, torch.arange(4 * irreps.dim, dtype=D).reshape(4, irreps.dim), (False, True, False, False))
    y = x[..., "1e + 2e"]
    assert y.irreps == "1e+2e" and y.zero_flags == (True, False)
    assert torch.equal(y.array, x.array[:, 2:10])
    assert torch.equal(x[1:3, "1o"].array, x.array[1:3, 10:13])
    assert torch.equal(x[0, ..., "2x0e"].array, x.array[0, 0:2])
    for bad in ("1o + 1e", "3x0e", "0e", "2o"):
        with pytest.raises(ValueError):
            x[..., bad]
    twice = IrrepsTensor("1o+0e+1o", torch.zeros(7))
    with pytest.raises(ValueError, match="exactly once"):
        twice[..., "1o"]
    assert twice[..., "1o+0e"].irreps == "1o+0e"


def test_index_leading_axes_and_slices():
    x = IrrepsTensor("2x0e+2x1o", torch.randn(5, 3, 8, dtype=D), (True, False))
    assert torch.equal(x[1].array, x.array[1]) and x[1].zero_flags == (True, False)
    assert x[1:4, 0].shape == (3, 8)
    mask = torch.tensor([True, False, True, False, True])
    assert x[mask].shape == (3, 3, 8)
    assert x[..., None, :, :].shape == (5, 1, 3, 8)  # numpy semantics for new axes
    s = x[..., 1:5]  # second scalar and the first vector
    assert s.irreps == "1x0e+1x1o" and s.zero_flags == (True, False)
    assert torch.equal(s.array, x.array[..., 1:5])
    assert x[:, :, 2:].irreps == "2x1o"
    with pytest.raises(IndexError):
        x[..., 1:4]  # cuts a vector
    with pytest.raises(IndexError):
        x[..., 0]  # an integer on the irreps axis
    with pytest.raises(IndexError):
        x[..., ::2]
    with pytest.raises(IndexError):
        IrrepsTensor("0e", torch.zeros(1))[0]


# --- arithmetic -------------------------------------------------------------------------------------


def test_add_sub_neg():
    a = IrrepsTensor("0e+1o", torch.randn(2, 4, dtype=D), (True, False))
    b = IrrepsTensor("0e+1o", torch.randn(2, 4, dtype=D), (True, True))
    c = a + b
    assert torch.equal(c.array, a.array + b.array) and c.zero_flags == (True, False)
    assert torch.equal((a - b).array, a.array - b.array)
    assert torch.equal((-a).array, -a.array) and (-a).zero_flags == a.zero_flags
    assert (a + 0) is a and (0 + a) is a
    with pytest.raises(ValueError):
        a + IrrepsTensor("1o+0e", torch.randn(2, 4, dtype=D))
    with pytest.raises(ValueError):
        a + 1.0
    s = IrrepsTensor("2x0e", torch.zeros(2, dtype=D))
    assert (s + 1.5).array.tolist() == [1.5, 1.5]
    assert (1.0 - s).array.tolist() == [1.0, 1.0]


def test_mul_div():
    x = IrrepsTensor("2x0e+1x1o", torch.randn(3, 5, dtype=D), (False, True))
    assert torch.equal((2 * x).array, 2 * x.array) and (x * 2).zero_flags == x.zero_flags
    assert torch.equal((x / 4).array, x.array / 4)
    f = torch.randn(3, 1, dtype=D)
    assert torch.equal((x * f).array, x.array * f)
    per_copy = torch.randn(3, 3, dtype=D)  # num_irreps = 3
    y = x * per_copy
    expected = torch.cat([x.array[:, :2] * per_copy[:, :2], x.array[:, 2:] * per_copy[:, 2:3]], dim=-1)
    assert torch.equal(y.array, expected)
    assert torch.allclose((x / per_copy).array, x.array / torch.cat([per_copy[:, :2], per_copy[:, 2:].expand(3, 3)], -1))
    assert torch.equal(x.mul(per_copy).array, y.array) and torch.equal(x.mul(2.0).array, (2 * x).array)
    with pytest.raises(ValueError):
        x * torch.randn(3, 2)
    with pytest.raises(TypeError):
        x * x


# --- rotations --------------------------------------------------------------------------------------


def test_transform_by_matrix_and_angles():
    irreps = Irreps("2x0e+1o+1e+2e+1o")
    x = IrrepsTensor(irreps, torch.randn(4, irreps.dim, dtype=D))
    R = o3.rand_matrix(dtype=D)
    y = x.transform_by_matrix(R)
    assert torch.allclose(y.array, x.array @ irreps.D_from_matrix(R).T, atol=1e-12)
    assert torch.allclose(y[..., "1e+2e+1o"][..., "1o"].array, x[..., "1e+2e+1o"][..., "1o"].array @ R.T, atol=1e-12)
    # improper: vectors (1o) flip with -R, pseudovectors (1e) don't
    z = x.transform_by_matrix(-R)
    v = slice(2, 5)
    assert torch.allclose(z.array[:, v], -(x.array[:, v] @ R.T), atol=1e-12)
    assert torch.allclose(z.array[:, 5:8], x.array[:, 5:8] @ R.T, atol=1e-12)
    a, b, c = o3.rand_angles(dtype=D)
    w = x.transform_by_angles(a, b, c)
    assert torch.allclose(w.array, x.transform_by_matrix(o3.angles_to_matrix(a, b, c)).array, atol=1e-12)
    w1 = x.transform_by_angles(float(a), float(b), float(c), k=1)
    assert w1.dtype == D and torch.allclose(w1.array, x.transform_by_matrix(-o3.angles_to_matrix(a, b, c)).array, atol=1e-12)
    q = o3.angles_to_quaternion(a, b, c)
    assert torch.allclose(x.transform_by_quaternion(q).array, w.array, atol=1e-12)
    axis, angle = o3.angles_to_axis_angle(a, b, c)
    assert torch.allclose(x.transform_by_axis_angle(axis, angle).array, w.array, atol=1e-12)
    # batched rotations, one per sample
    Rs = o3.rand_matrix(4, dtype=D)
    yb = x.transform_by_matrix(Rs)
    for i in range(4):
        assert torch.allclose(yb.array[i], x[i].transform_by_matrix(Rs[i]).array, atol=1e-12)


def test_functional_tensor_product_is_equivariant():
    plan = fully_connected_tensor_product_plan("2x0e+1o+2e", "0e+1o+1e", "1x0e+2x1o+1x1e+1x2e+1x2o")
    x1 = IrrepsTensor.randn(plan.irreps_in1, (3,), dtype=D)
    x2 = IrrepsTensor.randn(plan.irreps_in2, (3,), dtype=D)
    w = torch.randn(plan.weight_numel, dtype=D)
    R = -o3.rand_matrix(dtype=D)  # a rotation times the inversion
    lhs = tensor_product(plan, x1.transform_by_matrix(R), x2.transform_by_matrix(R), w)
    rhs = tensor_product(plan, x1, x2, w).transform_by_matrix(R)
    assert (lhs.array - rhs.array).abs().max() <= 1e-10


# --- reorganisation ---------------------------------------------------------------------------------


def test_simplify_sort_regroup_filter():
    irreps = Irreps("1o+1o+0x2e+0e+1e+0e")
    x = IrrepsTensor(irreps, torch.randn(2, irreps.dim, dtype=D), (True, False, False, True, False, True))
    s = x.simplify()
    assert s.irreps == "2x1o+0e+1e+0e" and s.zero_flags == (False, True, False, True)
    assert s.array is x.array
    t = x.sort()
    assert t.irreps == "0e+0e+1o+1o+1e+0x2e"
    assert t.zero_flags == (True, True, True, False, False, False)
    for i, j in enumerate(irreps.sort().inv):
        assert torch.equal(t.array[..., t.irreps.slices()[i]], x.array[..., irreps.slices()[j]])
    r = x.regroup()
    assert r.irreps == "2x0e+2x1o+1e" and r.zero_flags == (True, False, False)
    assert torch.equal(r.array, t.array)
    f = x.filter(keep="1o+0e")
    assert f.irreps == "1o+1o+0e+0e" and f.zero_flags == (True, False, True, True)
    assert torch.equal(f.array, torch.cat([x.array[:, :6], x.array[:, 6:7], x.array[:, 10:11]], -1))
    assert x.filter(lmax=0).irreps == "0e+0e"
    nz = x.remove_zero_chunks()
    assert nz.irreps == "1o+0x2e+1e" and nz.zero_flags == (False, False, False)


# --- pytree, vmap, compile --------------------------------------------------------------------------


def test_pytree_roundtrip():
    x = IrrepsTensor("0e+1o", torch.randn(2, 4), (True, False))
    leaves, spec = pytree.tree_flatten({"a": x, "b": [x, 1]})
    assert len(leaves) == 3 and leaves[0] is x.array
    back = pytree.tree_unflatten(leaves, spec)
    assert isinstance(back["a"], IrrepsTensor) and back["a"].zero_flags == (True, False)
    assert back["a"].irreps == "0e+1o" and back["a"].array is x.array
    doubled = pytree.tree_map(lambda t: 2 * t, x)
    assert isinstance(doubled, IrrepsTensor) and torch.equal(doubled.array, 2 * x.array)
    keyed, _ = pytree.tree_flatten_with_path(x)
    assert keyed[0][1] is x.array


# o3.wigner_D updates a temporary in place (addcmul_), which has no vmap batching rule (slow fallback)
@pytest.mark.filterwarnings("ignore:There is a performance drop:UserWarning")
def test_vmap_keeps_irreps_and_flags():
    x = IrrepsTensor.from_chunks("0e+1o", [None, torch.randn(5, 1, 3, dtype=D)], (5,))
    R = o3.rand_matrix(5, dtype=D)
    out = vmap(lambda x, R: x.transform_by_matrix(R)[..., "1o"] * 2.0)(x, R)
    assert isinstance(out, IrrepsTensor) and out.irreps == "1o" and out.zero_flags == (False,)
    assert torch.allclose(out.array, 2 * torch.einsum("bij,bj->bi", R, x.array[:, 1:]), atol=1e-12)
    z = vmap(lambda x: x + x)(x)
    assert z.zero_flags == (True, False)
    g = torch.func.grad(lambda a: (IrrepsTensor("0e+1o", a, (True, False)).transform_by_matrix(R[0]).array ** 2).sum())
    a = x.array[0]
    assert torch.allclose(g(a), 2 * a, atol=1e-12)  # |D a|^2 = |a|^2


@pytest.mark.compile
def test_compile_fullgraph():
    torch._dynamo.reset()
    plan = fully_connected_tensor_product_plan("2x0e+1o", "0e+1o", "0e+1o+1e")
    w = torch.randn(plan.weight_numel, dtype=D)

    def f(x, y, R):
        z = tensor_product(plan, x, y, w)
        z = (z + z)[..., "1o+1e"] * 0.5
        z = z.transform_by_matrix(R).regroup().mul(torch.ones(2, dtype=D))  # (x * tensor: not traceable)
        c = z.chunks
        u = IrrepsTensor.from_chunks("1e+0e+1o", [c[1], None, c[0]], (4,))
        u = u.filter(drop="0e").sort().simplify()[1:, 0:3] - IrrepsTensor.zeros("1o", (3,), dtype=D)
        return z, u.remove_zero_chunks()

    x = IrrepsTensor.from_chunks(plan.irreps_in1, [None, torch.randn(4, 1, 3, dtype=D)], (4,))
    y = IrrepsTensor(plan.irreps_in2, torch.randn(4, plan.irreps_in2.dim, dtype=D))
    R = o3.rand_matrix(dtype=D)
    expected = f(x, y, R)
    got = torch.compile(f, fullgraph=True)(x, y, R)
    assert expected[0].irreps == "1o+1e" and expected[1].irreps == "1o"
    for g, e in zip(got, expected):
        assert isinstance(g, IrrepsTensor)
        assert g.irreps == e.irreps and g.zero_flags == e.zero_flags
        assert (g.array - e.array).abs().max() <= 1e-12


@pytest.mark.e3nn
def test_transform_matches_e3nn_D():
    e3nn_o3 = pytest.importorskip("e3nn.o3")
    irreps = "2x0e+1x0o+1o+2x1e+2e+3o"
    x = IrrepsTensor.randn(irreps, (3,), dtype=D)
    a, b, c = o3.rand_angles(dtype=D)
    R = -o3.angles_to_matrix(a, b, c)
    old = torch.get_default_dtype()
    torch.set_default_dtype(D)  # e3nn builds its generators in the default dtype
    try:
        Ds = [e3nn_o3.Irreps(irreps).D_from_angles(a, b, c, torch.tensor(float(k))) for k in (0, 1)]
        Dr = e3nn_o3.Irreps(irreps).D_from_matrix(R)
    finally:
        torch.set_default_dtype(old)
    for k in (0, 1):
        assert (x.transform_by_angles(a, b, c, k=k).array - x.array @ Ds[k].T).abs().max() <= 1e-10
    assert (x.transform_by_matrix(R).array - x.array @ Dr.T).abs().max() <= 1e-10


# A global: with dynamic=True, dynamo makes the ints it reads from *local* objects symbolic (then a
# batch size equal to one of them, e.g. weight_numel = 7, recompiles); ints read via globals or
# nn.Module attributes stay static.
_PLAN = fully_connected_tensor_product_plan("2x0e+1o", "0e+1o", "1e+0e+1o")


@pytest.mark.compile
def test_compile_dynamic_shapes_no_recompile():
    from torch._dynamo.testing import CompileCounter

    torch._dynamo.reset()
    plan = _PLAN
    w = torch.randn(plan.weight_numel, dtype=D)

    def f(x, y):  # the irreps of the inputs x, y (locals) do reach dynamo as symbols
        z = tensor_product(_PLAN, x, y, w).regroup()
        return z.filter(drop="0e")[..., "1o"] + z[..., 1:4].simplify()

    counter = CompileCounter()
    g = torch.compile(f, backend=counter, fullgraph=True, dynamic=True)
    for n in (9, 12):  # (a first batch of 7 = weight_numel would be duck-sized with w and specialised)
        x = IrrepsTensor.from_chunks(plan.irreps_in1, [None, torch.randn(n, 1, 3, dtype=D)], (n,))
        y = IrrepsTensor(plan.irreps_in2, torch.randn(n, 4, dtype=D))
        got, expected = g(x, y), f(x, y)
        assert got.irreps == expected.irreps == "1o" and got.zero_flags == expected.zero_flags
        assert (got.array - expected.array).abs().max() <= 1e-12
    assert counter.frame_count == 1
