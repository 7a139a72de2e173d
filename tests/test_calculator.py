"""FastSO3Calculator: the model's numbers through ASE, forces and stress against ASE's finite differences, the
Hessian, saved models, and energy conservation in NVE molecular dynamics."""

import ase.io
import numpy as np
import pytest
import torch
from ase import units
from ase.build import bulk, molecule
from ase.md.velocitydistribution import thermalize_momenta
from ase.md.verlet import VelocityVerlet

from fastso3.calculator import FastSO3Calculator
from fastso3.models import MACE, NequIP, load, save


def mace(dtype=torch.float64):
    torch.manual_seed(0)
    net = MACE([29, 79], r_max=3.0, max_ell=2, hidden_irreps="4x0e+4x1o", MLP_irreps="4x0e", radial_MLP=(8, 8),
               avg_num_neighbors=12.0, atomic_energies=[-3.5, -3.2], scale=20.0)  # fmt: skip
    return net.to(dtype)


def alloy():
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.numbers[[0, 2]] = 79
    atoms.rattle(0.05, seed=3)
    return atoms


def test_energy_forces_and_stress_match_finite_differences():
    atoms = alloy()
    atoms.calc = FastSO3Calculator(mace())
    forces = atoms.get_forces()
    assert np.abs(forces).max() > 1e-3
    np.testing.assert_allclose(forces, atoms.calc.calculate_numerical_forces(atoms, d=1e-4), atol=1e-7)
    stress = atoms.get_stress()
    np.testing.assert_allclose(stress, atoms.calc.calculate_numerical_stress(atoms, d=1e-5), atol=1e-7)
    assert atoms.get_potential_energy() == atoms.calc.results["free_energy"]


def test_molecules_have_no_stress():
    atoms = molecule("H2O")
    torch.manual_seed(0)
    atoms.calc = FastSO3Calculator(NequIP([1, 8], r_max=3.0, num_layers=1).double())
    assert atoms.get_forces().shape == (3, 3)
    with pytest.raises(ValueError, match="periodic along all three axes"):
        atoms.get_stress()


def test_hessian_is_symmetric_and_the_force_derivative():
    atoms = alloy()
    calc = FastSO3Calculator(mace())
    atoms.calc = calc
    hessian = calc.get_hessian(atoms)
    assert hessian.shape == (3 * len(atoms), 3 * len(atoms))
    np.testing.assert_allclose(hessian, hessian.T, atol=1e-10)
    step = 1e-4
    for k in (0, 7):  # two columns: central differences of the forces
        shifted = []
        for sign in (1, -1):
            moved = atoms.copy()
            moved.positions.reshape(-1)[k] += sign * step
            moved.calc = calc
            shifted.append(-moved.get_forces().reshape(-1))
        np.testing.assert_allclose(hessian[:, k], (shifted[0] - shifted[1]) / (2 * step), atol=1e-6)


def test_a_saved_model_loads_in_one_line(tmp_path):
    net = mace()
    path = save(net, tmp_path / "model.pt")
    assert torch.load(path, weights_only=True)["model"] == "MACE"
    atoms = alloy()
    atoms.calc = FastSO3Calculator(path)
    expected = FastSO3Calculator(net).get_potential_energy(alloy())
    assert atoms.get_potential_energy() == pytest.approx(expected, rel=1e-14)
    assert load(path).atomic_energies.energies.dtype == torch.float64


def test_files_that_are_not_models_are_named_as_such(tmp_path):
    structures = tmp_path / "data.extxyz"
    ase.io.write(structures, alloy())
    checkpoint = tmp_path / "best.pt"
    torch.save({"epoch": 3, "model_state": {}}, checkpoint)
    for path in (structures, checkpoint):
        with pytest.raises(ValueError, match="is not a fastso3 model file .* best.pt and last.pt are training"):
            FastSO3Calculator(path)


def test_dtype_by_name_and_bad_dtypes():
    e64 = FastSO3Calculator(mace()).get_potential_energy(alloy())
    calc = FastSO3Calculator(mace(), dtype="float32")
    assert calc.dtype == torch.float32
    assert calc.get_potential_energy(alloy()) == pytest.approx(e64, rel=1e-5)
    for bad in ("float16", "cpu", torch.int64):
        with pytest.raises(ValueError, match="dtype must be torch.float32 or torch.float64"):
            FastSO3Calculator(mace(), dtype=bad)


def test_nve_dynamics_conserves_energy():
    atoms = alloy().repeat((2, 1, 1))
    atoms.calc = FastSO3Calculator(mace())
    thermalize_momenta(atoms, temperature_K=300, rng=np.random.default_rng(0))
    start = atoms.get_total_energy()
    energies = []
    dyn = VelocityVerlet(atoms, timestep=1.0 * units.fs)
    dyn.attach(lambda: energies.append(atoms.get_total_energy()), interval=5)
    dyn.run(50)
    drift = max(abs(e - start) for e in energies) / len(atoms)
    assert drift < 1e-4  # eV/atom over 50 fs; the kinetic energy is ~0.04 eV/atom
    assert atoms.get_kinetic_energy() > 0


@pytest.mark.compile
@pytest.mark.slow
# dynamo itself reads .grad of the strained (non-leaf) positions while tracing: torch's warning, not ours
@pytest.mark.filterwarnings("ignore:The .grad attribute of a Tensor that is not a leaf")
def test_compiled_calculator_matches_eager_as_edges_change():
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()  # the graph count of this test only
    net = mace()
    eager, compiled = FastSO3Calculator(net), FastSO3Calculator(net, compile=True)
    counts = set()
    for seed in range(3):  # an MD-like sequence: same atoms, other positions and numbers of edges
        atoms = alloy().repeat((2, 1, 1))
        atoms.rattle(0.3, seed=seed)
        counts.add(len(compiled._inputs(atoms)[3]))
        np.testing.assert_allclose(compiled.get_forces(atoms), eager.get_forces(atoms), atol=1e-10)
        np.testing.assert_allclose(compiled.get_stress(atoms), eager.get_stress(atoms), atol=1e-12)
    assert len(counts) > 1 and torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1
