"""NequIP on fastso3 against the same network written with e3nn 0.6.0's modules (same weights, float64)."""

import pytest
import torch

from fastso3.compat import to_e3nn
from fastso3.graph import radius_graph
from fastso3.models import NequIP

e3nn_o3 = pytest.importorskip("e3nn.o3")
e3nn_nn = pytest.importorskip("e3nn.nn")


def e3nn_twin_energy(model, pos, z, src, dst):
    """The forward of ``NequIP`` with every equivariant piece an e3nn module loaded with fastso3's weights."""
    species = model.species(z)
    onehot = torch.nn.functional.one_hot(species, model.num_species).to(pos.dtype)
    vec = pos[dst] - pos[src]
    sh = e3nn_o3.spherical_harmonics(str(model.irreps_sh), vec, normalize=True, normalization="component")
    radial = model.radial_embedding(vec.norm(dim=-1))
    h = to_e3nn(model.embedding)(onehot)
    for layer in model.layers:
        fc = e3nn_nn.FullyConnectedNet(layer.radial.hs, torch.nn.functional.silu).double()
        fc.load_state_dict(layer.radial.state_dict())
        g = layer.gate
        gate = e3nn_nn.Gate(str(g.irreps_scalars), [torch.nn.functional.silu] * len(g.irreps_scalars),
                            str(g.irreps_gates), [torch.sigmoid] * len(g.irreps_gates), str(g.irreps_gated))  # fmt: skip
        x = to_e3nn(layer.linear_1)(h)
        per_edge = to_e3nn(layer.conv)(x[src], sh, fc(radial))
        message = torch.zeros(h.shape[0], per_edge.shape[1], dtype=pos.dtype).index_add(0, dst, per_edge)
        out = gate(to_e3nn(layer.linear_2)(message * layer.norm) + to_e3nn(layer.self_connection)(h, onehot))
        h = out + h if layer.resnet else out
    readout = torch.nn.Sequential(*(to_e3nn(lin) for lin in model.readout))
    node = model.scale_shift(readout(h)[:, 0]) + model.atomic_energies(species)
    return node.sum()


@pytest.mark.e3nn
def test_nequip_matches_e3nn(f64):
    torch.manual_seed(0)
    model = NequIP([1, 8], r_max=3.0, hidden_irreps="4x0e + 4x1o + 4x2e", num_layers=2, atomic_energies=[-0.5, -2.0],
                   scale=1.3, shift=0.2).double()  # fmt: skip
    pos = torch.randn(6, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 1.2
    z = torch.tensor([8, 1, 1, 8, 1, 1])
    src, dst = radius_graph(pos, 3.0)
    ours = model(pos, z, src, dst)[0]
    theirs = e3nn_twin_energy(model, pos, z, src, dst)
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12)
    assert abs(float(ours.detach()) + 6.0) > 1e-3  # more than the E0s (4 H at -0.5, 2 O at -2)
