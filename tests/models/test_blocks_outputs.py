"""Radial blocks against their formulas (MACE's / NequIP's), forces and stress against ASE's Lennard-Jones."""

import math

import numpy as np
import pytest
import torch

from fastso3.graph import edge_vectors, neighbor_list
from fastso3.models import BesselBasis, CosineCutoff, GaussianBasis, PolynomialCutoff, RadialEmbedding, forces_and_stress

ase = pytest.importorskip("ase")
from ase.build import bulk  # noqa: E402
from ase.calculators.lj import LennardJones  # noqa: E402

R_MAX = 5.0


def test_bessel_basis_formula_and_origin():
    r = torch.tensor([1e-12, 0.3, 1.7, 4.99], dtype=torch.float64)
    n = torch.arange(1, 9, dtype=torch.float64)
    expected = math.sqrt(2 / R_MAX) * torch.sin(n * math.pi * r[:, None] / R_MAX) / r[:, None]
    torch.testing.assert_close(BesselBasis(R_MAX).double()(r), expected, rtol=1e-12, atol=0)
    x = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    y = BesselBasis(R_MAX).double()(x)
    torch.testing.assert_close(y[0], math.sqrt(2 / R_MAX) * n * math.pi / R_MAX)
    assert torch.isfinite(torch.autograd.grad(y.sum(), x)[0]).all()


def test_polynomial_cutoff_is_smooth_to_second_order_at_r_max():
    env = PolynomialCutoff(R_MAX, p=6)
    r = torch.tensor([R_MAX * (1 - 1e-4)], dtype=torch.float64, requires_grad=True)
    (d1,) = torch.autograd.grad(env(r).sum(), r, create_graph=True)
    (d2,) = torch.autograd.grad(d1.sum(), r)
    assert env(r).item() < 1e-10 and abs(d1.item()) < 1e-6 and abs(d2.item()) < 1e-2
    x = torch.linspace(0, 1.2, 13, dtype=torch.float64)
    u = x.clamp_max(1.0)
    formula = (1 - 28 * u**6 + 48 * u**7 - 21 * u**8) * (x < 1)  # p = 6 written out
    torch.testing.assert_close(env(x * R_MAX)[:, 0], formula, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(CosineCutoff(R_MAX)(x * R_MAX)[:, 0], 0.5 * (torch.cos(math.pi * x) + 1) * (x < 1))


def test_radial_embedding_and_gaussians():
    r = torch.linspace(0.1, 6.0, 7)
    emb = RadialEmbedding(R_MAX, 6, basis="gaussian", cutoff="cosine")
    assert emb(r).shape == (7, 6) and not emb(r)[-1].any()  # beyond the cutoff
    torch.testing.assert_close(GaussianBasis(R_MAX, 6)(r)[:, 0], torch.exp(-0.5 * (r / 1.0) ** 2))
    with pytest.raises(ValueError, match="basis must be"):
        RadialEmbedding(R_MAX, basis="spline")
    with pytest.raises(ValueError, match="distances must have shape"):
        BesselBasis(R_MAX)(torch.ones(2, 3))


def structures():
    a = bulk("Ar", "fcc", a=5.26, cubic=True) * (2, 1, 1)
    b = bulk("Ar", "fcc", a=5.4) * (2, 2, 1)
    for atoms, seed in ((a, 0), (b, 1)):
        atoms.rattle(0.1, seed=seed)
        atoms.set_cell(atoms.cell * (1 + 0.02 * np.random.default_rng(seed).standard_normal((3, 3))), scale_atoms=True)
    return [a, b]


SIGMA, EPS, RC = 3.4, 0.0104, 6.0


def lennard_jones(atoms_list):
    """A batched energy function over fastso3's neighbour lists, and its (positions, cells, batch)."""
    graphs = []
    offset = 0
    for atoms in atoms_list:
        pos = torch.tensor(atoms.positions)
        src, dst, shifts = neighbor_list(pos, torch.tensor(atoms.cell.array), True, RC)
        graphs.append((offset, len(atoms), src, dst, shifts))
        offset += len(atoms)
    e0 = 4 * EPS * ((SIGMA / RC) ** 12 - (SIGMA / RC) ** 6)

    def energy(pos, cell):
        out = []
        for g, (start, n, src, dst, shifts) in enumerate(graphs):
            r = edge_vectors(pos[start : start + n], cell[g], src, dst, shifts).norm(dim=-1)
            out.append(0.5 * (4 * EPS * ((SIGMA / r) ** 12 - (SIGMA / r) ** 6) - e0).sum())
        return torch.stack(out)

    positions = torch.cat([torch.tensor(a.positions) for a in atoms_list])
    cells = torch.stack([torch.tensor(a.cell.array) for a in atoms_list])
    batch = torch.cat([torch.full((len(a),), g, dtype=torch.int64) for g, a in enumerate(atoms_list)])
    return energy, positions, cells, batch


def test_forces_and_stress_match_ase_lennard_jones_on_a_batch():
    atoms_list = structures()
    energy, positions, cells, batch = lennard_jones(atoms_list)
    out = forces_and_stress(energy, positions, cells, batch)
    start = 0
    for g, atoms in enumerate(atoms_list):
        atoms.calc = LennardJones(sigma=SIGMA, epsilon=EPS, rc=RC, smooth=False)
        n = len(atoms)
        np.testing.assert_allclose(float(out["energy"][g]), atoms.get_potential_energy(), rtol=1e-10)
        np.testing.assert_allclose(out["forces"][start : start + n].numpy(), atoms.get_forces(), rtol=1e-8, atol=1e-12)
        np.testing.assert_allclose(out["stress"][g].numpy(), atoms.get_stress(voigt=False), rtol=1e-8, atol=1e-12)
        np.testing.assert_allclose(out["virials"][g].numpy(), -atoms.get_stress(voigt=False) * atoms.get_volume(),
                                   rtol=1e-8, atol=1e-12)  # fmt: skip
        start += n


def test_stress_is_the_strain_derivative_of_the_energy():
    energy, positions, cells, batch = lennard_jones(structures()[:1])
    out = forces_and_stress(energy, positions, cells, batch)
    h, volume = 1e-5, float(torch.linalg.det(cells[0]))
    for i, j in ((0, 0), (1, 2), (2, 1)):
        strain = torch.zeros(3, 3, dtype=torch.float64)
        strain[i, j] = strain[j, i] = h if i == j else 0.5 * h  # symmetric: dE = sigma_ij V h either way
        values = [float(energy(positions @ (torch.eye(3) + s * strain), cells @ (torch.eye(3) + s * strain))) for s in (1, -1)]
        numeric = (values[0] - values[1]) / (2 * h) / volume
        assert abs(numeric - float(out["stress"][0, i, j])) < 1e-7 * max(1.0, abs(numeric))


def test_non_periodic_structures_get_nan_stress_and_second_derivatives_work():
    pos = (torch.randn(4, 3, dtype=torch.float64) * 2).requires_grad_()
    src, dst = torch.tensor([0, 1, 2, 3, 1, 2]), torch.tensor([1, 0, 3, 2, 2, 1])

    def energy(p, cell):
        r = (p[dst] - p[src]).norm(dim=-1)
        return (torch.exp(-r) * r).sum().reshape(1)

    out = forces_and_stress(energy, pos, torch.zeros(3, 3, dtype=torch.float64), create_graph=True)
    assert torch.isnan(out["stress"]).all()
    (grad,) = torch.autograd.grad(out["forces"].square().sum(), pos)  # a force loss reaches the positions
    assert grad.shape == (4, 3) and torch.isfinite(grad).all() and grad.abs().max() > 0


def test_species_index_energies_and_scale_shift():
    from fastso3.models import AtomicEnergies, ScaleShift, SpeciesIndex

    species = SpeciesIndex([8, 1, 29])
    z = torch.tensor([1, 29, 8, 1])
    assert species(z).tolist() == [1, 2, 0, 1]
    for bad in ([1, 6], [0], [-3], [200]):
        with pytest.raises(ValueError, match=r"atomic numbers \[.*\] are not among"):
            species(torch.tensor(bad))
    with pytest.raises(ValueError, match="distinct elements"):
        SpeciesIndex([1, 1])
    e0 = AtomicEnergies([-2.0, -0.5, -3.0])
    torch.testing.assert_close(e0(species(z)), torch.tensor([-0.5, -3.0, -2.0, -0.5]))
    block = ScaleShift(2.0, -1.0).double()
    x = torch.tensor([0.0, 1.5], dtype=torch.float64)
    torch.testing.assert_close(block(x), torch.tensor([-1.0, 2.0], dtype=torch.float64))


def test_a_zero_volume_structure_keeps_training_gradients_finite():
    """A molecule (zero cell, NaN stress) batched with a crystal: the crystal's stress loss has finite gradients."""
    from fastso3.models import forces_and_stress

    weight = torch.tensor(1.3, dtype=torch.float64, requires_grad=True)
    pos = torch.randn(4, 3, dtype=torch.float64)
    cells = torch.stack([torch.zeros(3, 3, dtype=torch.float64), torch.eye(3, dtype=torch.float64) * 4])
    batch = torch.tensor([0, 0, 1, 1])

    def energy(p, c):
        per_atom = weight * (p.square().sum(1) + c[batch].diagonal(dim1=1, dim2=2).sum(1))
        return torch.zeros(2, dtype=p.dtype).index_add(0, batch, per_atom)

    out = forces_and_stress(energy, pos, cells, batch, create_graph=True)
    assert out["stress"][0].isnan().all() and out["stress"][1].isfinite().all()
    (grad,) = torch.autograd.grad(torch.nan_to_num(out["stress"]).square().sum(), weight)
    assert grad.isfinite() and grad != 0
