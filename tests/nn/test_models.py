"""fastso3.nn.models (e3nn 0.6.0's model zoo) against e3nn.nn.models (same weights, float64, 1e-10) and
against properties (rotation and inversion equivariance, translation invariance, float32).

e3nn's v2103 models import ``torch_cluster``, ``torch_scatter`` and ``torch_geometric``, which are not
installed here (and have no CPU wheels for this torch). So that the e3nn peer runs, the fixture
``e3nn_v2103`` injects small test-only stand-ins into ``sys.modules``: ``torch_cluster.radius_graph`` and
``torch_scatter.scatter`` built on plain torch (a brute-force ``cdist`` graph and ``index_add``), and an
empty ``torch_geometric.data.Data`` class (only used in e3nn's type hints). e3nn's 2101, 2102 and v2106
models carry their own naive ``radius_graph`` and ``scatter``, so those comparisons use e3nn's code only.
"""

import sys
import types

import pytest
import torch

from fastso3.core.irreps import Irreps
from fastso3.nn.models import gate_points_2101 as f2101
from fastso3.nn.models import gate_points_2102 as f2102
from fastso3.nn.models.v2103 import conv_points_in_out as f2103_in_out
from fastso3.nn.models.v2103 import gate_points_message_passing as f2103_mp
from fastso3.nn.models.v2103 import gate_points_networks as f2103_net
from fastso3.nn.models.v2106 import gate_points_message_passing as f2106_mp
from fastso3.nn.models.v2106 import gate_points_networks as f2106_net
from fastso3.nn.models.v2106 import points_convolution as f2106_conv
from fastso3.testing import assert_equivariant, default_dtype

e2101 = pytest.importorskip("e3nn.nn.models.gate_points_2101")
e2102 = pytest.importorskip("e3nn.nn.models.gate_points_2102")
e2106_net = pytest.importorskip("e3nn.nn.models.v2106.gate_points_networks")
e2106_mp = pytest.importorskip("e3nn.nn.models.v2106.gate_points_message_passing")

F64 = torch.float64
TOL64 = 1e-10
SH2 = "0e + 1o + 2e"
# 2101/2102 in e3nn's test configuration, scaled down (2 layers, 16 radial neurons, l <= 2)
GATE_POINTS_ARGS = ("3x0e + 2x1o", "4x0e + 4x0o + 2x1e + 2x1o", "2x0o + 2x1o + 2x2e", "3x0e", SH2)
GATE_POINTS_KW = dict(
    layers=2, max_radius=2.0, number_of_basis=5, radial_layers=1, radial_neurons=16, num_neighbors=4.0, num_nodes=5
)


def _stand_in_modules():
    """Test-only ``torch_cluster`` / ``torch_scatter`` / ``torch_geometric`` for the e3nn v2103 peer."""

    def radius_graph(x, r, batch=None, loop=False, max_num_neighbors=32, flow="source_to_target", num_workers=1):
        # torch_cluster's edge set: row 0 neighbours (sources), row 1 centres (targets); no neighbour cap is
        # reached in these tests (e3nn passes max_num_neighbors = N - 1)
        assert flow == "source_to_target" and not loop
        batch = torch.zeros(x.shape[0], dtype=torch.long) if batch is None else batch
        close = (torch.cdist(x, x, compute_mode="donot_use_mm_for_euclid_dist") < r) & (batch[:, None] == batch[None, :])
        close.fill_diagonal_(False)
        centre, neighbour = close.nonzero().T
        return torch.stack([neighbour, centre])

    def scatter(src, index, dim=0, dim_size=None):
        assert dim == 0
        size = int(index.max()) + 1 if dim_size is None else dim_size
        return src.new_zeros((size,) + src.shape[1:]).index_add_(0, index, src)

    data = types.ModuleType("torch_geometric.data")
    data.Data = type("Data", (), {})
    geometric = types.ModuleType("torch_geometric")
    geometric.data = data
    cluster = types.ModuleType("torch_cluster")
    cluster.radius_graph = radius_graph
    scatter_module = types.ModuleType("torch_scatter")
    scatter_module.scatter = scatter
    return {"torch_cluster": cluster, "torch_scatter": scatter_module, "torch_geometric": geometric,
            "torch_geometric.data": data}  # fmt: skip


@pytest.fixture
def e3nn_v2103(monkeypatch):
    """e3nn's v2103 ``(gate_points_message_passing, gate_points_networks, conv_points_in_out)`` imported with
    the stand-ins."""
    import importlib

    for name, module in _stand_in_modules().items():
        monkeypatch.setitem(sys.modules, name, module)
    before = set(sys.modules)
    names = ("gate_points_message_passing", "gate_points_networks", "conv_points_in_out")
    yield tuple(importlib.import_module(f"e3nn.nn.models.v2103.{name}") for name in names)
    # forget the e3nn modules bound to the stand-ins, so that later imports see the real environment
    for name in set(sys.modules) - before:
        del sys.modules[name]


def build_both(theirs_cls, ours_cls, *args, **kwargs):
    """(e3nn module, fastso3 module) built in float64 from one seed, fastso3 loading e3nn's state dict with
    strict=True."""
    with default_dtype(F64):
        torch.manual_seed(7)
        theirs = theirs_cls(*args, **kwargs)
        torch.manual_seed(7)
        ours = ours_cls(*args, **kwargs)
    # the same parameters, created in the same order with the same initialisation: one seed, one set of weights
    # (e3nn's state dict also holds buffers that fastso3 recomputes or does not need)
    ours_params, theirs_params = list(ours.named_parameters()), list(theirs.named_parameters())
    assert [k for k, _ in ours_params] == [k for k, _ in theirs_params]
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(ours_params, theirs_params))
    ours.load_state_dict(theirs.state_dict(), strict=True)
    return theirs, ours


def randomize(theirs, ours):
    """Draw e3nn's zero-initialised parameters (v2106's ``alpha``, which would hide the convolutions) at random
    and load them into ours (strict)."""
    with torch.no_grad():
        for p in theirs.parameters():
            if not p.any():
                p.normal_()
    ours.load_state_dict(theirs.state_dict(), strict=True)


def points(sizes, dtype=F64, spread=1.0):
    """Positions of len(sizes) structures (``(N, 3)``) and the ``batch`` index ``(N,)``."""
    batch = torch.cat([torch.full((n,), b, dtype=torch.long) for b, n in enumerate(sizes)])
    return spread * torch.randn(batch.shape[0], 3, dtype=dtype), batch


def assert_close(ours, theirs, tol=TOL64):
    assert ours.shape == theirs.shape and ours.dtype == theirs.dtype
    assert theirs.abs().max() > 1e-3  # the comparison means something
    torch.testing.assert_close(ours, theirs, rtol=0, atol=tol * theirs.abs().max().item())


# ------------------------------------------------------------------------------------------------------------------
# graph helpers
# ------------------------------------------------------------------------------------------------------------------


def test_radius_graph_is_e3nns_edge_list_in_e3nns_order():
    pos, batch = points([7, 1, 9, 6])
    pos[3] = pos[2]  # coincident points: e3nn keeps only r > 0
    for b in (batch, batch[torch.randperm(batch.shape[0])]):
        ours = f2101.radius_graph(pos, 2.0, b)
        assert ours.dtype == torch.long and ours.shape[1] > 30
        assert torch.equal(ours, e2101.radius_graph(pos, 2.0, b))
    # v2106 message passing's variant has no batch
    assert torch.equal(f2106_mp.radius_graph(pos, 2.0), e2106_mp.radius_graph(pos, 2.0))


def test_radius_graph_has_no_self_edges_above_25_points():
    # e3nn's cdist takes its matrix-product path above 25 points, where the diagonal rounds above 0 and
    # self edges appear (a documented difference); fastso3 decides in float64 and never adds them
    pos, batch = points([40], spread=2.0)
    edges = f2101.radius_graph(pos, 1.5, batch)
    assert not bool((edges[0] == edges[1]).any())
    d = (pos[edges[0]] - pos[edges[1]]).norm(dim=1)
    assert bool((d < 1.5).all())
    all_d = torch.cdist(pos, pos, compute_mode="donot_use_mm_for_euclid_dist")
    assert edges.shape[1] == int(((all_d < 1.5) & (all_d > 0)).sum())


def test_helpers_match_e3nn():
    x = torch.linspace(-0.5, 1.5, 41, dtype=F64)
    torch.testing.assert_close(f2101.smooth_cutoff(x), e2101.smooth_cutoff(x.clone()), rtol=0, atol=0)
    src, index = torch.randn(9, 4, dtype=F64), torch.tensor([0, 2, 2, 1, 0, 4, 4, 4, 1])
    torch.testing.assert_close(f2101.scatter(src, index, 6), e2101.scatter(src, index, 6), rtol=0, atol=0)
    for a, b, ir in [("0e + 1o", "1o", "0e"), ("1e", "1o", "0e"), ("2e", "1o", "1o"), ("2x1o", "1o", "2o")]:
        assert f2101.tp_path_exists(a, b, ir) == e2101.tp_path_exists(a, b, ir)
    assert f2101.tp_path_exists("1e", "1o", "0o") and not f2101.tp_path_exists("1e", "1o", "0e")


# ------------------------------------------------------------------------------------------------------------------
# gate_points_2101 / 2102
# ------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["2101", "2102"])
def test_gate_points_network_matches_e3nn_on_a_batch(version):
    theirs_mod, ours_mod = (e2101, f2101) if version == "2101" else (e2102, f2102)
    theirs, ours = build_both(theirs_mod.Network, ours_mod.Network, *GATE_POINTS_ARGS, **GATE_POINTS_KW)
    pos, batch = points([5, 1, 8])
    data = dict(pos=pos, x=Irreps(GATE_POINTS_ARGS[0]).randn(14, -1, dtype=F64), z=torch.randn(14, 3, dtype=F64), batch=batch)
    pos.requires_grad_(True)
    out = ours(data)
    assert out.shape == (3, Irreps(GATE_POINTS_ARGS[2]).dim)
    expected = theirs(data)
    assert_close(out, expected)
    # gradients (forces) through the edge vectors, embeddings and cutoff
    cotangent = torch.randn_like(out)
    (ours_grad,) = torch.autograd.grad(out, pos, cotangent)
    (theirs_grad,) = torch.autograd.grad(expected, pos, cotangent)
    assert_close(ours_grad, theirs_grad)
    pos.requires_grad_(False)
    # structures interleaved (batch not sorted)
    shuffled = dict(data, batch=batch[torch.randperm(14)])
    assert_close(ours(shuffled), theirs(shuffled))
    # per node, without pooling
    theirs.reduce_output = ours.reduce_output = False
    assert_close(ours(data), theirs(data))
    # a layer on its own
    x = Irreps(GATE_POINTS_ARGS[0]).randn(14, -1, dtype=F64)
    edges = f2101.radius_graph(pos, 2.0, batch)
    edge_attr = torch.randn(edges.shape[1], Irreps(SH2).dim, dtype=F64)
    scalars = torch.randn(edges.shape[1], ours.layers[0].first.fc.hs[0], dtype=F64)
    args = (x, data["z"], edges[0], edges[1], edge_attr, scalars)
    assert_close(ours.layers[0].first(*args), theirs.layers[0].first(*args))


def test_gate_points_2101_without_node_inputs_or_attributes():
    args = (None, "3x0e + 3x0o + 2x1e + 2x1o", "1x1o + 1x0e", None, SH2)
    theirs, ours = build_both(e2101.Network, f2101.Network, *args, **dict(GATE_POINTS_KW, layers=1))
    data = dict(pos=torch.randn(6, 3, dtype=F64))
    assert_close(ours(data), theirs(data))
    assert ours(data).shape == (1, 4)
    net = f2101.Network(*GATE_POINTS_ARGS, **dict(GATE_POINTS_KW, layers=1))
    with pytest.raises(ValueError, match="'x'"):
        net(data)
    # a graph without nodes pools to no rows (e3nn's batch.max() raises)
    empty = dict(pos=torch.zeros(0, 3), x=torch.zeros(0, 9), z=torch.zeros(0, 3))
    assert net(empty).shape == (0, 18)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gate_points_2102_is_equivariant(dtype):
    with default_dtype(dtype):
        net = f2102.Network(*GATE_POINTS_ARGS, **GATE_POINTS_KW)

    def wrapper(pos, x, z):
        return net(dict(pos=pos, x=x, z=z))

    irreps_in = ["cartesian_points", net.irreps_in, net.irreps_node_attr]
    pos = torch.randn(7, 3, dtype=dtype)
    args = [pos, Irreps(GATE_POINTS_ARGS[0]).randn(7, -1, dtype=dtype), torch.randn(7, 3, dtype=dtype)]
    assert_equivariant(wrapper, args, irreps_in=irreps_in, irreps_out=[net.irreps_out])
    assert wrapper(*args).dtype == dtype


# ------------------------------------------------------------------------------------------------------------------
# v2103
# ------------------------------------------------------------------------------------------------------------------


def test_v2103_networks_match_e3nn(e3nn_v2103):
    e_mp, e_net, _ = e3nn_v2103
    theirs, ours = build_both(e_net.SimpleNetwork, f2103_net.SimpleNetwork, "3x0e + 2x1o", "4x0e + 1x1o",
                              max_radius=2.0, num_neighbors=3.0, num_nodes=5.0, mul=4, layers=2, lmax=1)  # fmt: skip
    pos, batch = points([6, 4])
    pos[1] = pos[0]  # coincident points are neighbours in torch_cluster's graph
    data = {"pos": pos, "x": ours.irreps_in.randn(10, -1, dtype=F64), "batch": batch}
    assert_close(ours(data), theirs(data))
    assert isinstance(ours.mp, f2103_mp.MessagePassing) and isinstance(theirs.mp, e_mp.MessagePassing)
    assert ours.mp.irreps_node_hidden == theirs.mp.irreps_node_hidden

    theirs, ours = build_both(e_net.NetworkForAGraphWithAttributes, f2103_net.NetworkForAGraphWithAttributes,
                              "3x0e + 2x1o", "4x0e + 1x1o", "1e", "3x0o + 1e", max_radius=2.0, num_neighbors=3.0,
                              num_nodes=5.0, mul=4, layers=1, lmax=1)  # fmt: skip
    data = {"pos": torch.randn(3, 3, dtype=F64), "edge_index": torch.tensor([[0, 1, 2], [1, 2, 0]]),
            "node_input": ours.irreps_node_input.randn(3, -1, dtype=F64),
            "node_attr": ours.irreps_node_attr.randn(3, -1, dtype=F64), "edge_attr": torch.randn(3, 3, dtype=F64)}  # fmt: skip
    assert_close(ours(data), theirs(data))


def test_v2103_convolution_between_point_sets_matches_e3nn(e3nn_v2103):
    # e3nn's own test configuration: 5 input points, 2 output points, edges from input to output points
    e_in_out = e3nn_v2103[2]
    kw = dict(irreps_node_input="0e + 1e", irreps_node_output="0e + 1e", irreps_node_attr_input="2x0e",
              irreps_node_attr_output="3x0e", irreps_edge_attr="0e + 1e", num_edge_scalar_attr=4, radial_layers=1,
              radial_neurons=16, num_neighbors=3.0)  # fmt: skip
    theirs, ours = build_both(e_in_out.Convolution, f2103_in_out.Convolution, **kw)
    edge_src = torch.tensor([0, 1, 2, 3, 4, 4, 0])
    edge_dst = torch.tensor([0, 0, 1, 1, 1, 0, 1])
    args = (torch.randn(5, 4, dtype=F64), torch.randn(5, 2, dtype=F64), torch.randn(2, 3, dtype=F64), edge_src,
            edge_dst, torch.randn(7, 4, dtype=F64), torch.randn(7, 4, dtype=F64))  # fmt: skip
    out = ours(*args)
    assert out.shape == (2, 4)
    assert_close(out, theirs(*args))
    assert_equivariant(ours, args, irreps_in=["0e + 1e", "2x0e", "3x0e", None, None, "0e + 1e", None],
                       irreps_out=["0e + 1e"])  # fmt: skip
    with pytest.raises(IndexError, match="edge_dst contains 2, outside \\[0, 2\\) \\(receivers\\)"):
        ours(*args[:4], edge_dst + 1, *args[5:])


# ------------------------------------------------------------------------------------------------------------------
# v2106
# ------------------------------------------------------------------------------------------------------------------


def test_v2106_message_passing_matches_e3nn():
    # e3nn's own v2106 test configuration (one hidden layer fewer), alpha drawn so that the convolutions count
    kw = dict(irreps_node_sequence=["0e", "0e + 1e", "0e + 1e", "1e"], irreps_node_attr="0e + 1e",
              irreps_edge_attr="0e + 1e", fc_neurons=[2, 16], num_neighbors=3.0)  # fmt: skip
    theirs, ours = build_both(e2106_mp.MessagePassing, f2106_mp.MessagePassing, **kw)
    randomize(theirs, ours)
    assert ours.irreps_node_sequence == theirs.irreps_node_sequence
    pos = torch.randn(6, 3, dtype=F64)
    src, dst = f2106_mp.radius_graph(pos, 3.0)
    edge_attr = torch.cat([torch.ones(src.shape[0], 1, dtype=F64), pos[src] - pos[dst]], dim=1)
    args = (torch.randn(6, 1, dtype=F64), torch.randn(6, 4, dtype=F64), src, dst, edge_attr,
            torch.randn(src.shape[0], 2, dtype=F64))  # fmt: skip
    assert_close(ours(*args), theirs(*args))
    assert_equivariant(
        ours, args, irreps_in=[ours.irreps_node_input, ours.irreps_node_attr, None, None, ours.irreps_edge_attr, None],
        irreps_out=[ours.irreps_node_output],
    )  # fmt: skip


def test_v2106_simple_network_matches_e3nn_and_is_equivariant_in_float64_and_float32():
    theirs, ours = build_both(e2106_net.SimpleNetwork, f2106_net.SimpleNetwork, "3x0e + 2x1o", "4x0e + 1x1o", 2.0, 3.0,
                              5.0, mul=4, layers=2)  # fmt: skip
    randomize(theirs, ours)
    for dtype, tol in [(F64, TOL64), (torch.float32, 1e-5)]:  # float32: both round at 1e-7, through 3 layers
        theirs, ours = theirs.to(dtype), ours.to(dtype)
        theirs.pool_nodes = ours.pool_nodes = True
        pos, batch = points([7, 5], dtype=dtype)
        x = ours.irreps_in.randn(12, -1, dtype=dtype)
        data = {"pos": pos, "x": x, "batch": batch}
        out = ours(data)
        assert out.dtype == dtype and out.shape == (2, 7)
        assert_close(out, theirs(data), tol=tol)
        assert_equivariant(lambda p, f: ours({"pos": p, "x": f, "batch": batch}), [pos, x],
                           irreps_in=["cartesian_points", ours.irreps_in], irreps_out=[ours.irreps_out])  # fmt: skip
        theirs.pool_nodes = ours.pool_nodes = False
        assert_close(ours(data), theirs(data), tol=tol)


def test_v2106_network_for_a_graph_with_attributes_matches_e3nn():
    args = ("3x0e + 2x1o", "4x0e + 1x1o", "1e", "3x0o + 1e")
    kw = dict(max_radius=2.0, num_neighbors=3.0, num_nodes=5.0, mul=4, layers=1, lmax=1)
    theirs, ours = build_both(e2106_net.NetworkForAGraphWithAttributes, f2106_net.NetworkForAGraphWithAttributes, *args, **kw)
    randomize(theirs, ours)
    pos = torch.randn(5, 3, dtype=F64)
    node = dict(pos=pos, x=ours.irreps_node_input.randn(5, -1, dtype=F64), node_attr=ours.irreps_node_attr.randn(5, -1, dtype=F64))
    # the graph given, and built from pos when absent
    given = dict(node, edge_index=torch.tensor([[0, 1, 2, 3], [1, 2, 0, 4]]), edge_attr=torch.randn(4, 3, dtype=F64))
    assert_close(ours(given), theirs(given))
    num_edges = f2106_net.radius_graph(pos, 2.0).shape[1]
    built = dict(node, edge_attr=torch.randn(num_edges, 3, dtype=F64))
    assert_close(ours(built), theirs(built))


def test_v2106_convolution_rejects_impossible_irreps():
    with pytest.raises(ValueError, match="produces nothing"):
        f2106_conv.Convolution("1o", "0e", "2e", "0e", [2], 3.0)
    with pytest.raises(ValueError, match="not able to generate scalars"):
        f2106_conv.Convolution("0e", "0e", "1o", "1o", [2], 3.0)
    with pytest.raises(ValueError, match="unable to produce gates"):
        f2106_mp.MessagePassing(["1o", "1o + 1e", "1o"], "0e", "2e", [2], 3.0)


def test_convolution_rejects_bad_edge_indices():
    conv = f2106_conv.Convolution("0e + 1o", "0e", "0e + 1o", "0e + 1o", [2], 3.0)
    args = [torch.randn(3, 4), torch.ones(3, 1), torch.tensor([0, -1]), torch.tensor([1, 0]), torch.randn(2, 4),
            torch.randn(2, 2)]  # fmt: skip
    with pytest.raises(IndexError, match="edge_src contains -1, outside \\[0, 3\\) \\(senders\\)"):
        conv(*args)
    args[2] = torch.tensor([0, 1], dtype=torch.int32)
    with pytest.raises(TypeError, match="edge_src must be a 1-D int64"):
        conv(*args)


# ------------------------------------------------------------------------------------------------------------------
# voxel convolutions (v2103, v2104)
# ------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["v2103", "v2104"])
def test_voxel_convolution_and_low_pass_filter_match_e3nn(version):
    import importlib

    theirs_mod = importlib.import_module(f"e3nn.nn.models.{version}.voxel_convolution")
    ours_mod = importlib.import_module(f"fastso3.nn.models.{version}.voxel_convolution")
    # v2103's default padding (size // 2 on every axis) only keeps the image size for cubic voxels
    sizes = dict(size=3) if version == "v2103" else dict(diameter=3.2, num_radial_basis=3, steps=(1.0, 1.5, 1.0))
    theirs, ours = build_both(theirs_mod.Convolution, ours_mod.Convolution, "0e + 1o", "0e + 1o + 2e", SH2, **sizes)
    assert sorted(ours.state_dict()) == sorted(k for k in theirs.state_dict() if "_compiled_main" not in k)
    x = torch.randn(2, 4, 5, 6, 4, dtype=F64)
    out = ours(x)
    assert out.shape == (2, 9, 5, 6, 4)
    assert_close(out, theirs(x))
    for kw in [dict(scale=2.0, stride=2), dict(scale=3.0, stride=2, transposed=True, steps=(1, 2, 1)), dict(scale=1.0)]:
        with default_dtype(F64):
            theirs_filter, ours_filter = theirs_mod.LowPassFilter(**kw), ours_mod.LowPassFilter(**kw)
        assert_close(ours_filter(x), theirs_filter(x))
    with pytest.raises(ValueError, match="x of shape"):
        ours(x[:, :3])
    with pytest.raises(ValueError, match="stride 1"):
        ours_mod.LowPassFilter(1.0, stride=2)


@pytest.mark.parametrize("version", ["v2103", "v2104"])
def test_voxel_convolution_is_equivariant_on_the_grid(version):
    # the symmetries of a cubic grid: a quarter turn about z and the inversion, acting on the voxels and
    # on the channels (D of the irreps); float64 and float32
    import importlib

    conv_cls = importlib.import_module(f"fastso3.nn.models.{version}.voxel_convolution").Convolution
    sizes = dict(size=5) if version == "v2103" else dict(diameter=4.5, num_radial_basis=3)
    n = 6
    centred = torch.arange(n, dtype=F64) - (n - 1) / 2
    grid = torch.stack(torch.meshgrid(centred, centred, centred, indexing="ij"))  # (3, x, y, z) voxel centres
    turned = torch.rot90(grid, 1, (1, 2))  # turned[:, v] = grid[:, source of voxel v]
    source = torch.linalg.lstsq(grid.reshape(3, -1).T, turned.reshape(3, -1).T).solution.T  # source = S @ v
    quarter_turn = source.T  # voxel content at p moves to R p, R = S^-1 = S^T
    assert torch.allclose(quarter_turn @ quarter_turn.T, torch.eye(3, dtype=F64), atol=1e-12)
    for dtype, tol in [(F64, 1e-12), (torch.float32, 1e-5)]:
        with default_dtype(dtype):
            conv = conv_cls("0e + 1o", "0e + 1o + 2e", SH2, **sizes)
        x = torch.randn(2, 4, n, n, n, dtype=dtype)
        for rotation, move in [(quarter_turn, lambda t: torch.rot90(t, 1, (2, 3))), (-torch.eye(3, dtype=F64),
                                lambda t: t.flip(2, 3, 4))]:  # fmt: skip
            d_in = conv.irreps_in.D_from_matrix(rotation).to(dtype)
            d_out = conv.irreps_out.D_from_matrix(rotation).to(dtype)
            moved_in = torch.einsum("ij,bjxyz->bixyz", d_in, move(x))
            expected = torch.einsum("ij,bjxyz->bixyz", d_out, move(conv(x)))
            assert_close(conv(moved_in), expected, tol=tol)


def test_copy_and_state_dict_round_trip():
    # e3nn's own 2101/2102 tests: deepcopy and save/load give the same outputs
    import copy
    import io

    net = f2102.Network(*GATE_POINTS_ARGS, **dict(GATE_POINTS_KW, layers=1))
    data = dict(pos=torch.randn(5, 3), x=torch.randn(5, 9), z=torch.randn(5, 3))
    assert torch.equal(copy.deepcopy(net)(data), net(data))
    buffer = io.BytesIO()
    torch.save(net.state_dict(), buffer)
    buffer.seek(0)
    fresh = f2102.Network(*GATE_POINTS_ARGS, **dict(GATE_POINTS_KW, layers=1))
    fresh.load_state_dict(torch.load(buffer, weights_only=True), strict=True)
    assert torch.equal(fresh(data), net(data))


def test_convolutions_carry_e3nns_compile_mode():
    # e3nn marks its convolutions for TorchScript; fastso3 keeps the mark, and its compile() refuses them
    from fastso3.util.jit import compile as jit_compile
    from fastso3.util.jit import get_compile_mode

    for conv in (f2101.Convolution, f2102.Convolution, f2106_conv.Convolution, f2103_in_out.Convolution):
        assert get_compile_mode(conv) == "script"
    with pytest.raises(NotImplementedError):
        jit_compile(f2106_conv.Convolution("0e + 1o", "0e", "0e + 1o", "0e + 1o", [2], 3.0))


def test_models_reachable_from_fastso3_nn():
    import fastso3.nn

    assert fastso3.nn.models.v2106.gate_points_networks is f2106_net
    assert fastso3.nn.models.gate_points_2101.Network is f2101.Network
