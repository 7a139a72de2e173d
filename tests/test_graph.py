"""Graph operations: scatter reductions, radius graphs, periodic neighbour lists (fastso3.graph).

References are independent: Python/numpy loops for scatter and radius graphs, ASE's neighbour list for
periodic systems. Tests that need ase or vesin skip (per test) when those are missing.
"""

import itertools
import sys

import numpy as np
import pytest
import torch

from fastso3 import graph
from fastso3.graph import edge_vectors, neighbor_list, radius_graph, scatter, scatter_max, scatter_mean, scatter_sum


@pytest.fixture
def ase_nl():
    pytest.importorskip("ase")
    from ase.neighborlist import neighbor_list as ase_neighbor_list

    return ase_neighbor_list


@pytest.fixture
def has_vesin():
    pytest.importorskip("vesin")


# ----------------------------------------------------------------------------------------------------
# scatter
# ----------------------------------------------------------------------------------------------------


def _loop_reduce(src: np.ndarray, index: np.ndarray, dim: int, size: int, reduce: str) -> np.ndarray:
    """Python-loop reference; ``index`` 1-D along ``dim`` or of shape ``src.shape[:dim+1]``."""
    x = np.moveaxis(src, dim, 0)  # (n, *rest) where rest = lead + trail
    lead = src.shape[:dim]
    out = np.zeros((size, *x.shape[1:]), dtype=src.dtype)
    if index.ndim == 1:
        idx_at = lambda k, lpos: index[k]
    else:
        idx_at = lambda k, lpos: index[lpos + (k,)]
    for lpos in itertools.product(*(range(s) for s in lead)):
        for slot in range(size):
            members = [x[(k, *lpos)] for k in range(x.shape[0]) if idx_at(k, lpos) == slot]
            if not members:
                continue
            if reduce == "sum":
                acc = members[0].copy()
                for m in members[1:]:
                    acc = acc + m
            elif reduce == "mean":
                acc = members[0].copy()
                for m in members[1:]:
                    acc = acc + m
                acc = acc / len(members)
            else:
                acc = members[0].copy()
                for m in members[1:]:
                    acc = np.maximum(acc, m)
            out[(slot, *lpos)] = acc
    return np.moveaxis(out, 0, dim)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("reduce", ["sum", "mean", "max"])
@pytest.mark.parametrize(
    "shape, dim, index_kind",
    [
        ((7,), 0, "1d"),
        ((9, 4), 0, "1d"),
        ((9, 2, 3), 0, "1d"),
        ((3, 8, 2), 1, "1d"),
        ((2, 3, 8), -1, "1d"),
        ((3, 8, 2), 1, "full"),
    ],
)
def test_scatter_vs_loop(dtype, reduce, shape, dim, index_kind):
    src = torch.randn(shape, dtype=dtype)
    d = dim % len(shape)
    size = shape[d] + 2  # guarantees empty output slots
    if index_kind == "1d":
        index = torch.randint(0, size - 2, (shape[d],))
    else:
        index = torch.randint(0, size - 2, shape[: d + 1])
    fns = {"sum": scatter_sum, "mean": scatter_mean, "max": scatter_max}
    out = fns[reduce](src, index, dim, dim_size=size)
    ref = _loop_reduce(src.numpy(), index.numpy(), d, size, reduce)
    assert out.dtype == dtype and out.shape == ref.shape
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    np.testing.assert_allclose(out.numpy(), ref, rtol=tol, atol=tol)
    # the last two slots are empty: exactly 0
    assert (out.narrow(d, size - 2, 2) == 0).all()
    assert torch.equal(scatter(src, index, dim, size, reduce=reduce), out)
    if reduce != "max":
        det = fns[reduce](src, index, dim, dim_size=size, deterministic=True)
        np.testing.assert_allclose(det.numpy(), ref, rtol=tol, atol=tol)


def test_scatter_default_dim_size_and_empty():
    src = torch.arange(6, dtype=torch.float64)
    index = torch.tensor([0, 0, 3, 3, 3, 1])
    out = scatter_sum(src, index)
    assert out.tolist() == [1.0, 5.0, 0.0, 9.0]
    assert scatter_mean(src, index).tolist() == [0.5, 5.0, 0.0, 3.0]
    assert scatter_max(-src, index).tolist() == [0.0, -5.0, 0.0, -2.0]
    empty = scatter_sum(torch.zeros(0, 3), torch.zeros(0, dtype=torch.int64))
    assert empty.shape == (0, 3)
    assert scatter_sum(torch.zeros(0, 3), torch.zeros(0, dtype=torch.int64), dim_size=4).abs().sum() == 0
    e0 = torch.zeros(0, dtype=torch.int64)
    assert scatter_sum(torch.zeros(0, 3), e0, dim_size=4, deterministic=True).shape == (4, 3)
    # int32 index accepted
    assert torch.equal(scatter_sum(src, index.int()), out)


def test_deterministic_sum_bitwise_and_accurate():
    g = torch.Generator().manual_seed(1)
    n, size = 4000, 37
    # wide dynamic range so that the summation order matters in the last bits
    src = torch.randn(n, 5, dtype=torch.float64, generator=g) * torch.logspace(-6, 6, n, dtype=torch.float64)[:, None]
    src = src[torch.randperm(n, generator=g)]
    index = torch.randint(0, size - 3, (n,), generator=g)
    runs = [scatter_sum(src, index, dim_size=size, deterministic=True) for _ in range(5)]
    for r in runs[1:]:
        assert torch.equal(r, runs[0])
    # sequential Python loop in the original order
    ref = np.zeros((size, 5))
    for k in range(n):
        ref[int(index[k])] += src[k].numpy()
    scale = np.abs(src.numpy()).max()
    np.testing.assert_allclose(runs[0].numpy(), ref, rtol=0, atol=1e-12 * scale)
    # on the CPU each segment is summed one entry after the other in the original order: same bits as
    # the sequential loop (a reordering, e.g. an unstable sort, changes the last bits here)
    np.testing.assert_array_equal(runs[0].numpy(), ref)
    np.testing.assert_array_equal(runs[0][size - 3 :].numpy(), 0.0)
    # deterministic along a non-leading dim as well
    t = src.t().contiguous()
    assert torch.equal(scatter_sum(t, index, 1, size, deterministic=True), runs[0].t())


@pytest.mark.parametrize("deterministic", [False, True])
def test_scatter_sum_gradgradcheck(deterministic):
    src = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    index = torch.tensor([2, 0, 2, 2, 0, 4])
    f = lambda x: scatter_sum(x, index, 0, 5, deterministic=deterministic).square()
    assert torch.autograd.gradcheck(f, (src,))
    assert torch.autograd.gradgradcheck(f, (src,))


def test_scatter_mean_max_gradgradcheck():
    src = torch.randn(3, 7, 2, dtype=torch.float64, requires_grad=True)
    index = torch.tensor([1, 1, 0, 3, 1, 0, 3])
    fm = lambda x: scatter_mean(x, index, 1, 5).square()
    fx = lambda x: scatter_max(x, index, 1, 5).square()
    for f in (fm, fx):
        assert torch.autograd.gradcheck(f, (src,))
        assert torch.autograd.gradgradcheck(f, (src,))
    fd = lambda x: scatter_mean(x, index, 1, 5, deterministic=True).square()
    assert torch.autograd.gradgradcheck(fd, (src,))


def test_deterministic_sum_grads_match_index_add():
    src = torch.randn(50, 4, dtype=torch.float64, requires_grad=True)
    index = torch.randint(0, 9, (50,))
    w = torch.randn(9, 4, dtype=torch.float64)
    grads = []
    for det in (False, True):
        y = (scatter_sum(src, index, 0, 9, deterministic=det).square() * w).sum()
        (g,) = torch.autograd.grad(y, src, create_graph=True)
        (gg,) = torch.autograd.grad(g.square().sum(), src)
        grads.append((g.detach(), gg))
    torch.testing.assert_close(grads[0][0], grads[1][0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grads[0][1], grads[1][1], rtol=1e-12, atol=1e-12)


def test_scatter_bad_inputs():
    src = torch.randn(4, 2)
    with pytest.raises(IndexError, match="negative"):
        scatter_sum(src, torch.tensor([0, -1, 2, 1]))
    with pytest.raises(IndexError, match="dim_size"):
        scatter_sum(src, torch.tensor([0, 5, 2, 1]), dim_size=3)
    with pytest.raises(IndexError, match="dim_size"):
        scatter_max(src, torch.tensor([0, 3, 2, 1]), dim_size=3)
    with pytest.raises(TypeError, match="int64"):
        scatter_sum(src, torch.tensor([0.0, 1.0, 2.0, 1.0]))
    with pytest.raises(TypeError, match="int64"):
        scatter_mean(src, torch.tensor([True, False, True, True]))
    with pytest.raises(ValueError, match="3 entries"):
        scatter_sum(src, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="does not fit"):
        scatter_sum(src, torch.zeros(4, 3, dtype=torch.int64))
    with pytest.raises(IndexError, match="out of range"):
        scatter_sum(src, torch.tensor([0, 1, 2, 1]), dim=2)
    with pytest.raises(ValueError, match="dim_size"):
        scatter_sum(src, torch.tensor([0, 1, 2, 1]), dim_size=-1)
    with pytest.raises(TypeError, match="floating"):
        scatter_mean(torch.ones(4, dtype=torch.int64), torch.tensor([0, 1, 2, 1]))
    with pytest.raises(ValueError, match="reduce"):
        scatter(src, torch.tensor([0, 1, 2, 1]), reduce="min")
    with pytest.raises(TypeError):
        scatter_sum(src.numpy(), torch.tensor([0, 1, 2, 1]))


# ----------------------------------------------------------------------------------------------------
# radius_graph
# ----------------------------------------------------------------------------------------------------


def _radius_ref(pos: np.ndarray, r: float, batch=None, loop=False, k=None):
    n = len(pos)
    batch = np.zeros(n, dtype=np.int64) if batch is None else np.asarray(batch)
    edges = []
    for dst in range(n):
        cands = []
        for src in range(n):
            if batch[src] != batch[dst] or (src == dst and not loop):
                continue
            d = float(np.sqrt(((pos[dst] - pos[src]) ** 2).sum()))
            if d < r:
                cands.append((d, src))
        if k is not None:
            cands = sorted(cands)[:k]
        edges += [(src, dst) for _, src in cands]
    return sorted(edges, key=lambda e: (e[1], e[0]))


def _methods():
    return ["torch", "vesin"]


def _maybe_skip(method):
    if method == "vesin":
        pytest.importorskip("vesin")


@pytest.mark.parametrize("method", _methods())
@pytest.mark.parametrize("loop", [False, True])
def test_radius_graph_vs_bruteforce(method, loop):
    _maybe_skip(method)
    pos = torch.randn(60, 3, dtype=torch.float64) * 1.5
    src, dst = radius_graph(pos, 1.3, loop=loop, method=method)
    assert src.dtype == torch.int64 and dst.dtype == torch.int64
    got = list(zip(src.tolist(), dst.tolist()))
    ref = _radius_ref(pos.numpy(), 1.3, loop=loop)
    assert len(ref) > 100
    assert got == ref  # same set and the documented order (dst, then src)


@pytest.mark.parametrize("method", _methods())
def test_radius_graph_batch(method):
    _maybe_skip(method)
    n = 70
    pos = torch.randn(n, 3, dtype=torch.float64)
    batch = torch.tensor([7, 2, 2, 5] * (n // 4) + [7] * (n % 4))  # unsorted, non-contiguous labels
    src, dst = radius_graph(pos, 1.2, batch=batch, method=method)
    got = list(zip(src.tolist(), dst.tolist()))
    assert got == _radius_ref(pos.numpy(), 1.2, batch=batch.numpy())
    assert (batch[src] == batch[dst]).all()
    # sorted batch takes the fast path; same answer as the loop
    b2 = torch.sort(batch).values
    src2, dst2 = radius_graph(pos, 1.2, batch=b2, method=method)
    assert list(zip(src2.tolist(), dst2.tolist())) == _radius_ref(pos.numpy(), 1.2, batch=b2.numpy())


@pytest.mark.parametrize("method", _methods())
@pytest.mark.parametrize("loop", [False, True])
def test_radius_graph_max_num_neighbors(method, loop):
    _maybe_skip(method)
    pos = torch.randn(80, 3, dtype=torch.float64)
    batch = torch.repeat_interleave(torch.arange(3), torch.tensor([30, 20, 30]))
    for k in (1, 3, 8):
        src, dst = radius_graph(pos, 1.5, batch=batch, max_num_neighbors=k, loop=loop, method=method)
        got = list(zip(src.tolist(), dst.tolist()))
        assert got == _radius_ref(pos.numpy(), 1.5, batch=batch.numpy(), loop=loop, k=k)
        assert torch.bincount(dst, minlength=80).max() <= k


def test_radius_graph_tie_rule():
    # receiver 0 at the origin; four senders at distance 1 on the axes, one farther away
    pos = torch.tensor([[0, 0, 0], [1, 0, 0], [0, 1, 0], [-1, 0, 0], [0, 0, 1], [1.5, 0, 0]], dtype=torch.float64)
    src, dst = radius_graph(pos, 2.0, max_num_neighbors=2, method="torch")
    assert src[dst == 0].tolist() == [1, 2]  # equal distances: smaller sender index wins
    assert src[dst == 5].tolist() == [0, 1]  # order within a receiver stays sorted by src


def test_radius_graph_strict_cutoff_and_float32():
    pos = torch.tensor([[0.0, 0, 0], [1.0, 0, 0], [0, 0.5, 0]])
    src, dst = radius_graph(pos, 1.0, method="torch")
    assert set(zip(src.tolist(), dst.tolist())) == {(0, 2), (2, 0)}  # distance exactly 1 excluded
    x = torch.randn(50, 3)
    s, d = radius_graph(x, 1.0, method="torch")
    ref = _radius_ref(x.double().numpy(), 1.0)
    assert list(zip(s.tolist(), d.tolist())) == ref


def test_radius_graph_vesin_matches_torch(has_vesin):
    pos = torch.rand(1500, 3, dtype=torch.float64) * 12  # above the auto threshold
    a = radius_graph(pos, 1.7, method="torch")
    b = radius_graph(pos, 1.7, method="vesin")
    c = radius_graph(pos, 1.7)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert torch.equal(a[0], c[0]) and torch.equal(a[1], c[1])


def test_radius_graph_gradients_through_edge_vectors():
    pos = torch.randn(20, 3, dtype=torch.float64, requires_grad=True)
    src, dst = radius_graph(pos, 1.5)
    assert not src.requires_grad

    def energy(p):
        vec = edge_vectors(p, None, src, dst)
        return (vec.square().sum(-1) + 0.5).reciprocal().sum()

    assert torch.autograd.gradcheck(energy, (pos,))
    assert torch.autograd.gradgradcheck(energy, (pos,))


def test_radius_graph_bad_inputs(monkeypatch):
    pos = torch.randn(10, 3)
    with pytest.raises(ValueError, match="positive"):
        radius_graph(pos, -1.0)
    with pytest.raises(ValueError, match="positive"):
        radius_graph(pos, 0.0)
    with pytest.raises(ValueError, match="positive"):
        radius_graph(pos, float("nan"))
    bad = pos.clone()
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        radius_graph(bad, 1.0)
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        radius_graph(torch.randn(10, 2), 1.0)
    with pytest.raises(TypeError, match="floating"):
        radius_graph(torch.ones(10, 3, dtype=torch.int64), 1.0)
    with pytest.raises(ValueError, match="batch"):
        radius_graph(pos, 1.0, batch=torch.zeros(9, dtype=torch.int64))
    with pytest.raises(TypeError, match="batch"):
        radius_graph(pos, 1.0, batch=torch.zeros(10))
    with pytest.raises(ValueError, match="max_num_neighbors"):
        radius_graph(pos, 1.0, max_num_neighbors=0)
    with pytest.raises(ValueError, match="method"):
        radius_graph(pos, 1.0, method="cell_list")
    # vesin missing: explicit method raises, auto falls back to torch
    monkeypatch.setitem(sys.modules, "vesin", None)
    with pytest.raises(ImportError, match="vesin"):
        radius_graph(pos, 1.0, method="vesin")
    with pytest.raises(ImportError, match="vesin"):
        neighbor_list(pos, torch.eye(3) * 5, True, 1.0, method="vesin")
    big = torch.rand(graph.RADIUS_GRAPH_VESIN_MIN_ATOMS, 3, dtype=torch.float64) * 10
    s, d = radius_graph(big, 1.0)
    s2, d2 = radius_graph(big, 1.0, method="torch")
    assert torch.equal(s, s2) and torch.equal(d, d2)


def test_radius_graph_empty():
    s, d = radius_graph(torch.zeros(0, 3), 1.0)
    assert s.shape == (0,) and d.dtype == torch.int64
    s, d = radius_graph(torch.zeros(1, 3), 1.0)
    assert s.numel() == 0
    s, d = radius_graph(torch.zeros(1, 3), 1.0, loop=True)
    assert s.tolist() == [0] and d.tolist() == [0]


# ----------------------------------------------------------------------------------------------------
# neighbor_list vs ASE
# ----------------------------------------------------------------------------------------------------


def _triples(src, dst, shifts):
    return set(zip(src.tolist(), dst.tolist(), map(tuple, shifts.tolist())))


def _ase_triples(ase_nl, pos, cell, pbc, cutoff, self_interaction=False):
    from ase import Atoms

    atoms = Atoms(positions=pos, cell=cell, pbc=pbc)
    i, j, S = ase_nl("ijS", atoms, cutoff, self_interaction=self_interaction)
    # ASE: D = pos[j] - pos[i] + S @ cell  ==  ours: edge_vec = pos[dst] - pos[src] + shifts @ cell
    # so (i, j, S) maps to (edge_src, edge_dst, shifts) = (i, j, S)
    return set(zip(i.tolist(), j.tolist(), map(tuple, S.tolist())))


def _systems():
    rng = np.random.default_rng(42)
    out = []
    # cubic rattled fcc-like box, positions not wrapped
    a = 3.6
    base = np.array([[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    frac = (base[None] + np.array(list(itertools.product(range(2), repeat=3)))[:, None]).reshape(-1, 3) / 2
    cell = np.eye(3) * 2 * a
    pos = frac @ cell + rng.normal(scale=0.15, size=(32, 3)) + rng.integers(-2, 3, size=(32, 3)) @ cell
    out.append(("cubic", pos, cell, True, 4.0))
    # triclinic, random atoms
    cell = np.array([[5.0, 0.0, 0.0], [1.7, 4.6, 0.0], [-1.2, 0.9, 5.3]])
    pos = rng.random((20, 3)) @ cell + rng.normal(scale=0.1, size=(20, 3))
    out.append(("triclinic", pos, cell, True, 3.5))
    # small skewed cell, cutoff several times the cell size: many images, incl. self images
    cell = np.array([[2.1, 0.0, 0.0], [0.8, 1.9, 0.0], [0.3, -0.6, 2.4]])
    pos = rng.random((3, 3)) @ cell
    out.append(("small", pos, cell, True, 5.5))
    # mixed pbc (slab), non-periodic axis with a zero cell row
    cell = np.array([[4.0, 0.0, 0.0], [-2.0, 3.5, 0.0], [0.0, 0.0, 0.0]])
    pos = rng.random((15, 3)) * np.array([4.0, 3.5, 8.0])
    out.append(("slab_zero_row", pos, cell, (True, True, False), 3.0))
    # mixed pbc, one periodic axis (wire), full cell
    cell = np.array([[2.5, 0.3, 0.0], [0.0, 6.0, 0.0], [0.0, 1.0, 6.0]])
    pos = rng.random((12, 3)) @ cell
    out.append(("wire", pos, cell, (True, False, False), 4.0))
    # one periodic axis given alone: the other cell rows are zero
    cell = np.array([[0.0, 0.0, 0.0], [0.6, 2.2, 0.4], [0.0, 0.0, 0.0]])
    pos = rng.normal(scale=1.5, size=(10, 3))
    out.append(("wire_zero_rows", pos, cell, (False, True, False), 3.0))
    # non-periodic molecule-like cluster
    pos = rng.normal(scale=2.0, size=(30, 3))
    out.append(("cluster", pos, np.zeros((3, 3)), False, 2.5))
    return out


_SYSTEMS = _systems()


@pytest.mark.parametrize("method", _methods())
@pytest.mark.parametrize("system", _SYSTEMS, ids=[s[0] for s in _SYSTEMS])
def test_neighbor_list_vs_ase(ase_nl, method, system):
    _maybe_skip(method)
    _, pos, cell, pbc, cutoff = system
    ref = _ase_triples(ase_nl, pos, cell, pbc, cutoff)
    src, dst, sh = neighbor_list(torch.tensor(pos), torch.tensor(cell), pbc, cutoff, method=method)
    assert src.dtype == dst.dtype == sh.dtype == torch.int64 and sh.shape == (src.shape[0], 3)
    assert _triples(src, dst, sh) == ref
    assert len(ref) > 0 and len(ref) == src.shape[0]  # no duplicates
    # sorted by dst, src, shift
    keys = list(zip(dst.tolist(), src.tolist(), map(tuple, sh.tolist())))
    assert keys == sorted(keys)
    # full list: (i, j, S) present iff (j, i, -S)
    assert _triples(dst, src, -sh) == ref
    # vectors shorter than the cutoff, non-periodic axes never shifted
    vec = edge_vectors(torch.tensor(pos), torch.tensor(cell), src, dst, sh)
    assert (vec.norm(dim=1) < cutoff).all()
    pbc3 = np.broadcast_to(np.asarray(pbc), (3,))
    assert (sh[:, torch.tensor(~pbc3)] == 0).all()


def test_neighbor_list_many_images_and_self_interaction(ase_nl):
    cell = np.array([[1.3, 0.0, 0.0], [0.4, 1.1, 0.0], [0.2, 0.3, 1.6]])
    pos = np.array([[0.1, 0.2, 0.3], [0.9, 0.6, 1.1]])
    for si in (False, True):
        ref = _ase_triples(ase_nl, pos, cell, True, 4.0, self_interaction=si)
        for method in ("torch", "vesin") if _vesin_ok() else ("torch",):
            got = _triples(*neighbor_list(torch.tensor(pos), torch.tensor(cell), True, 4.0, method, si))
            assert got == ref
    assert max(abs(s) for t in ref for s in t[2]) >= 3  # several images per axis really appear
    assert any(i == j and s != (0, 0, 0) for i, j, s in ref)  # images of an atom itself


def test_neighbor_list_accepts_ase_objects(ase_nl):
    from ase.build import bulk

    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 1, 1))
    atoms.rattle(0.05, seed=3)
    src, dst, sh = neighbor_list(torch.tensor(atoms.positions), atoms.cell, atoms.pbc, 4.0, method="torch")
    i, j, S = ase_nl("ijS", atoms, 4.0)
    assert _triples(src, dst, sh) == set(zip(i.tolist(), j.tolist(), map(tuple, S.tolist())))


def _vesin_ok():
    try:
        import vesin  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.parametrize("seed", range(3))
def test_neighbor_list_random_rattled(ase_nl, seed):
    rng = np.random.default_rng(100 + seed)
    lengths = rng.uniform(3.0, 7.0, size=3)
    cell = np.diag(lengths) + np.triu(rng.uniform(-1.0, 1.0, size=(3, 3)), 1)
    n = int(rng.integers(5, 40))
    pos = rng.random((n, 3)) @ cell + rng.normal(scale=0.2, size=(n, 3))
    pbc = tuple(bool(b) for b in rng.integers(0, 2, size=3))
    cutoff = float(rng.uniform(2.0, 6.0))
    ref = _ase_triples(ase_nl, pos, cell, pbc, cutoff)
    got = neighbor_list(torch.tensor(pos), torch.tensor(cell), np.array(pbc), cutoff, method="torch")
    assert _triples(*got) == ref
    if _vesin_ok():
        got_v = neighbor_list(torch.tensor(pos), torch.tensor(cell), np.array(pbc), cutoff, method="vesin")
        for a, b in zip(got, got_v):
            assert torch.equal(a, b)  # identical tensors, same order


def test_neighbor_list_torch_vs_vesin_large(has_vesin):
    g = torch.Generator().manual_seed(3)
    cell = torch.tensor([[9.0, 0, 0], [2.0, 8.5, 0], [-1.0, 1.5, 9.5]], dtype=torch.float64)
    pos = torch.rand(200, 3, dtype=torch.float64, generator=g) @ cell
    for pbc in (True, (False, True, True), False):
        a = neighbor_list(pos, cell, pbc, 4.0, method="torch")
        b = neighbor_list(pos, cell, pbc, 4.0, method="vesin")
        c = neighbor_list(pos, cell, pbc, 4.0)  # auto: vesin at 200 atoms
        for x, y, z in zip(a, b, c):
            assert torch.equal(x, y) and torch.equal(x, z)


def test_neighbor_list_nonperiodic_equals_radius_graph():
    pos = torch.randn(40, 3, dtype=torch.float64)
    src, dst, sh = neighbor_list(pos, None, False, 1.4, method="torch")
    s2, d2 = radius_graph(pos, 1.4, method="torch")
    assert torch.equal(src, s2) and torch.equal(dst, d2) and (sh == 0).all()


def test_neighbor_list_float32_and_pbc_forms():
    pos = torch.rand(10, 3) * 4
    cell = torch.eye(3) * 4
    ref = neighbor_list(pos.double(), cell.double(), True, 2.0, method="torch")
    for pbc in (True, [True, True, True], np.array([True] * 3), torch.tensor([True] * 3)):
        got = neighbor_list(pos, cell, pbc, 2.0, method="torch")
        for a, b in zip(ref, got):
            assert torch.equal(a, b)


# ----------------------------------------------------------------------------------------------------
# edge_vectors
# ----------------------------------------------------------------------------------------------------


def test_edge_vectors_gradients_positions_and_cell():
    cell = torch.tensor([[3.0, 0.2, 0.0], [0.5, 2.8, 0.0], [0.1, -0.3, 3.2]], dtype=torch.float64)
    pos = torch.rand(4, 3, dtype=torch.float64) @ cell
    src, dst, sh = neighbor_list(pos, cell, True, 3.5, method="torch")
    assert len(src) > 20

    def energy(p, c):
        vec = edge_vectors(p, c, src, dst, sh)
        return torch.exp(-vec.square().sum(-1)).sum()

    p = pos.clone().requires_grad_()
    c = cell.clone().requires_grad_()
    assert torch.autograd.gradcheck(energy, (p, c))
    assert torch.autograd.gradgradcheck(energy, (p, c))
    # stress by strain: dE/d(eps) at eps=0 equals pos^T dE/dpos + cell^T dE/dcell
    eps = torch.zeros(3, 3, dtype=torch.float64, requires_grad=True)
    strain = torch.eye(3, dtype=torch.float64) + eps
    e = energy(pos @ strain, cell @ strain)
    (de,) = torch.autograd.grad(e, eps)
    gp, gc = torch.autograd.grad(energy(p, c), (p, c))
    torch.testing.assert_close(de, pos.t() @ gp + cell.t() @ gc)
    # and the values match the ASE definition D = pos[j] - pos[i] + S @ cell
    vec = edge_vectors(pos, cell, src, dst, sh)
    torch.testing.assert_close(vec, pos[dst] - pos[src] + sh.double() @ cell)


def test_edge_vectors_bad_inputs():
    pos = torch.randn(5, 3)
    e = torch.tensor([0, 1])
    with pytest.raises(TypeError):
        edge_vectors(pos, None, e.float(), e)
    with pytest.raises(ValueError, match="differ"):
        edge_vectors(pos, None, e, torch.tensor([1]))
    with pytest.raises(ValueError, match="shifts"):
        edge_vectors(pos, torch.eye(3), e, e, torch.zeros(3, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match="cell"):
        edge_vectors(pos, None, e, e, torch.ones(2, 3, dtype=torch.int64))


def test_neighbor_list_bad_inputs():
    pos = torch.rand(6, 3)
    cell = torch.eye(3) * 3
    with pytest.raises(ValueError, match="positive"):
        neighbor_list(pos, cell, True, -2.0)
    with pytest.raises(ValueError, match="positive"):
        neighbor_list(pos, cell, True, 0)
    bad = pos.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        neighbor_list(bad, cell, True, 1.0)
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        neighbor_list(pos[:, :2], cell, True, 1.0)
    with pytest.raises(ValueError, match=r"\(3, 3\)"):
        neighbor_list(pos, torch.eye(2), True, 1.0)
    with pytest.raises(ValueError, match="singular"):
        neighbor_list(pos, torch.tensor([[3.0, 0, 0], [6.0, 0, 0], [0, 0, 3.0]]), True, 1.0)
    with pytest.raises(ValueError, match="singular"):
        neighbor_list(pos, torch.diag(torch.tensor([3.0, 3.0, 0.0])), True, 1.0)
    # a zero row is fine along a non-periodic axis
    neighbor_list(pos, torch.diag(torch.tensor([3.0, 3.0, 0.0])), (True, True, False), 1.0)
    with pytest.raises(ValueError, match="cell is required"):
        neighbor_list(pos, None, True, 1.0)
    with pytest.raises(TypeError, match="pbc"):
        neighbor_list(pos, cell, (True, False), 1.0)
    with pytest.raises(TypeError, match="pbc"):
        neighbor_list(pos, cell, "yes", 1.0)
    with pytest.raises(ValueError, match="NaN"):
        neighbor_list(pos, cell * float("nan"), True, 1.0)
    with pytest.raises(ValueError, match="method"):
        neighbor_list(pos, cell, True, 1.0, method="ase")
