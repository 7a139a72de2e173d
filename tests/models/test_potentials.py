"""The potentials of fastso3.models (NequIP, ESCN, MACE): E(3) symmetry of energy, forces and stress, conservative
forces, float32, batches, compile."""

import pytest
import torch

from fastso3.graph import neighbor_list, radius_graph
from fastso3.models import ESCN, MACE, NequIP, forces_and_stress
from fastso3.o3 import rand_matrix
from fastso3.testing import assert_conservative

R_MAX = 3.0
Z = torch.tensor([8, 1, 1, 8, 1, 1])


MODELS = pytest.mark.parametrize("cls", [NequIP, ESCN, MACE])


def model(dtype=torch.float64, cls=NequIP):
    torch.manual_seed(0)
    if cls is MACE:  # messages divided by a typical neighbour count keep the cubic products well-conditioned
        return MACE([1, 8], r_max=R_MAX, avg_num_neighbors=10.0, max_ell=2, hidden_irreps="4x0e+4x1o",
                    MLP_irreps="4x0e", radial_MLP=(8, 8), correlation=3, atomic_energies=[-0.5, -2.0], scale=1.5,
                    shift=0.1).to(dtype)  # fmt: skip
    return cls([1, 8], r_max=R_MAX, num_layers=2, atomic_energies=[-0.5, -2.0]).to(dtype)


def cluster(dtype=torch.float64):
    return torch.randn(6, 3, generator=torch.Generator().manual_seed(1), dtype=dtype) * 1.2


def molecule_energy(net, z=Z):
    def energy(pos, cell):
        src, dst = radius_graph(pos, R_MAX)
        return net(pos, z, src, dst)

    return energy


@MODELS
@pytest.mark.parametrize("parity", [1, -1])
def test_energy_invariant_forces_rotate(parity, cls):
    net, pos = model(cls=cls), cluster()
    energy = molecule_energy(net)
    no_cell = torch.zeros(3, 3, dtype=torch.float64)
    out = forces_and_stress(energy, pos, no_cell, stress=False)
    rot = parity * rand_matrix(dtype=torch.float64)
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    moved = (pos @ rot.T + torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64))[perm]
    out2 = forces_and_stress(molecule_energy(net, Z[perm]), moved, no_cell, stress=False)
    torch.testing.assert_close(out2["energy"], out["energy"], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(out2["forces"], (out["forces"] @ rot.T)[perm], rtol=1e-9, atol=1e-10)
    assert out["forces"].abs().max() > 1e-3  # not trivially zero


def periodic(net, pos, cell):
    src, dst, shifts = neighbor_list(pos.detach(), cell.detach(), True, R_MAX)

    def energy(p, c):
        return net(p, Z, src, dst, shifts, c)

    return forces_and_stress(energy, pos, cell)


@MODELS
def test_periodic_energy_forces_and_stress_transform(cls):
    net = model(cls=cls)
    cell = torch.eye(3, dtype=torch.float64) * 3.2 + 0.3 * torch.rand(3, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    pos = torch.rand(6, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64) @ cell
    out = periodic(net, pos, cell)
    rot = rand_matrix(dtype=torch.float64)
    out2 = periodic(net, pos @ rot.T, cell @ rot.T)
    torch.testing.assert_close(out2["energy"], out["energy"], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(out2["forces"], out["forces"] @ rot.T, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(out2["stress"][0], rot @ out["stress"][0] @ rot.T, rtol=1e-9, atol=1e-10)
    assert out["stress"].abs().max() > 1e-4


@MODELS
def test_forces_are_conservative(cls):
    net = model(cls=cls)
    errors = assert_conservative(lambda p: molecule_energy(net)(p, None), cluster())
    assert errors["force_error"] < 1e-6


@MODELS
def test_float32_matches_float64(cls):
    pos = cluster()
    e64 = molecule_energy(model(cls=cls))(pos, None)
    e32 = molecule_energy(model(torch.float32, cls))(pos.float(), None)
    torch.testing.assert_close(e32.double(), e64.detach(), rtol=1e-4, atol=1e-4)


def test_unknown_elements_and_bad_irreps():
    net, pos = model(), cluster()
    src, dst = radius_graph(pos, R_MAX)
    with pytest.raises(ValueError, match=r"atomic numbers \[6\]"):
        net(pos, torch.tensor([8, 1, 1, 6, 1, 1]), src, dst)
    with pytest.raises(ValueError, match="one multiplicity"):
        NequIP([1], R_MAX, hidden_irreps="8x0e + 4x1o")


@pytest.mark.compile
@pytest.mark.parametrize("cls", [NequIP, MACE])
def test_compiled_inference_matches_eager(cls):
    net, pos = model(cls=cls), cluster()
    src, dst = radius_graph(pos, R_MAX)
    compiled = torch.compile(net, fullgraph=True)
    torch.testing.assert_close(compiled(pos, Z, src, dst), net(pos, Z, src, dst), rtol=1e-10, atol=1e-10)


@MODELS
def test_a_batch_equals_its_structures(cls):
    net = model(cls=cls)
    a, b = cluster(), torch.randn(4, 3, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    za, zb = Z, torch.tensor([1, 8, 8, 1])
    pos, z = torch.cat([a, b]), torch.cat([za, zb])
    batch = torch.tensor([0] * 6 + [1] * 4)
    src, dst = radius_graph(pos, R_MAX, batch)
    together = net(pos, z, src, dst, batch=batch, num_graphs=2)
    alone = [molecule_energy(net, zz)(p, None) for p, zz in ((a, za), (b, zb))]
    torch.testing.assert_close(together, torch.cat(alone), rtol=1e-12, atol=1e-12)


@MODELS
def test_wrong_inputs_say_what_to_do(cls):
    net, pos = model(cls=cls), cluster()
    src, dst = radius_graph(pos, R_MAX)
    with pytest.raises(TypeError, match=r"positions are torch.float32 but the model is torch.float64.*model.to"):
        net(pos.float(), Z, src, dst)
    with pytest.raises(ValueError, match=r"atomic_numbers must have shape \(6,\)"):
        net(pos, Z[:5], src, dst)
    with pytest.raises(ValueError, match="positions must be an"):
        net(pos[:, :2], Z, src, dst)


@pytest.mark.parametrize("cls", [NequIP, MACE])
def test_make_fx_traces_energy_and_forces_symbolically(cls):
    """The models' fronts skip their value checks while make_fx traces (symbolic sizes), as under compile."""
    from torch.fx.experimental.proxy_tensor import make_fx

    net, pos = model(cls=cls), cluster()
    src, dst = radius_graph(pos, R_MAX)

    state = {**dict(net.named_parameters()), **dict(net.named_buffers())}

    def forces(state, p, z, s, d):
        p = p.requires_grad_(True)
        return torch.autograd.grad(torch.func.functional_call(net, state, (p, z, s, d)).sum(), p)[0]

    traced = make_fx(forces, tracing_mode="symbolic")(state, pos.clone(), Z, src, dst)
    expected = forces(state, pos.clone(), Z, src, dst)
    torch.testing.assert_close(traced(state, pos.clone(), Z, src, dst), expected, rtol=1e-12, atol=1e-12)
