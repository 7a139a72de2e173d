"""fastso3.data: reading labels (keys, calculator results, virials), graphs against ASE's neighbour list,
batches, statistics, the embedded data set, and the errors a user will make."""

import ase.io
import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from ase.neighborlist import neighbor_list as ase_neighbor_list

from fastso3.data import (
    DataError,
    GraphDataset,
    atomic_energies_least_squares,
    average_num_neighbors,
    collate,
    configurations_from_atoms,
    energy_scale_shift,
    generate_emt_cuau,
    read_configurations,
)


def labelled(atoms, **extra):
    atoms = atoms.copy()
    atoms.calc = EMT()
    results = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces()}
    if atoms.pbc.all():
        results["stress"] = atoms.get_stress()
    atoms.calc = SinglePointCalculator(atoms, **results)
    atoms.info.update(extra)
    return atoms


def cu_cell(seed=0):
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.numbers[0] = 79
    atoms.rattle(0.1, seed=seed)
    return atoms


def test_extxyz_round_trip_reads_calculator_results(tmp_path):
    frames = [labelled(cu_cell(s)) for s in range(3)]
    path = tmp_path / "data.extxyz"
    ase.io.write(path, frames)
    configs = read_configurations(path)
    assert len(configs) == 3 and configs[1].source.endswith(":1")
    np.testing.assert_allclose(configs[2].forces, frames[2].get_forces(), atol=1e-12)
    np.testing.assert_allclose(configs[0].energy, frames[0].get_potential_energy(), rtol=1e-12)
    xx, yy, zz, yz, xz, xy = frames[0].get_stress()
    np.testing.assert_allclose(configs[0].stress, [[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]], atol=1e-12)


def test_mace_ref_keys_virials_and_weights():
    atoms = cu_cell()
    atoms.info["REF_energy"] = -1.5
    atoms.arrays["REF_forces"] = np.ones((4, 3))
    atoms.info["REF_virials"] = np.eye(3).reshape(-1)
    atoms.info["config_weight"] = 2.0
    (c,) = configurations_from_atoms([atoms], energy_key="REF_energy", forces_key="REF_forces",
                                     stress_key="REF_stress", virials_key="REF_virials")  # fmt: skip
    assert c.energy == -1.5 and c.weight == 2.0
    np.testing.assert_allclose(c.stress, -np.eye(3) / atoms.get_volume())


def test_graph_edges_are_ases_neighbour_list():
    atoms = cu_cell()
    (c,) = configurations_from_atoms([labelled(atoms)])
    g = GraphDataset([c], 4.0, [29, 79])[0]
    i, j, shifts = ase_neighbor_list("ijS", atoms, 4.0)
    ours = sorted(zip(g.edge_src.tolist(), g.edge_dst.tolist(), map(tuple, g.shifts.tolist())))
    assert ours == sorted(zip(i.tolist(), j.tolist(), map(tuple, shifts.tolist())))


def test_collate_renumbers_edges_and_keeps_labels():
    configs = configurations_from_atoms([labelled(cu_cell(0)), labelled(molecule("CH4")), labelled(cu_cell(1))])
    data = GraphDataset(configs, 3.0, [1, 6, 29, 79])
    batch = collate([data[0], data[1], data[2]])
    assert batch.num_graphs == 3 and batch.num_atoms.tolist() == [4, 5, 4]
    assert batch.batch.tolist() == [0] * 4 + [1] * 5 + [2] * 4
    assert batch.has_stress.tolist() == [True, False, True]
    src = batch.edge_src
    assert (batch.batch[src] == batch.batch[batch.edge_dst]).all()  # no edge between structures
    assert (src[batch.batch[src] == 1] >= 4).all() and len(batch.edge_src) == sum(len(g.edge_src) for g in data.graphs)
    np.testing.assert_allclose(batch.forces[4:9].numpy(), configs[1].forces)
    assert batch.to(dtype=torch.float32).positions.dtype == torch.float32


def test_statistics():
    frames = [labelled(cu_cell(s)) for s in range(6)]
    configs = configurations_from_atoms(frames)
    e0 = atomic_energies_least_squares(configs, [29, 79])
    fitted = [sum(e0[0] if z == 29 else e0[1] for z in c.numbers) for c in configs]
    residual = np.asarray([c.energy for c in configs]) - fitted
    assert abs(residual.sum()) < 1e-10  # least squares: residuals orthogonal to the counts (same composition)
    scale, shift = energy_scale_shift(configs, [29, 79], e0)
    rms = np.sqrt(np.mean(np.concatenate([c.forces.reshape(-1) for c in configs]) ** 2))
    assert scale == pytest.approx(rms) and abs(shift) < 1e-10
    data = GraphDataset(configs, 3.0, [29, 79])
    assert average_num_neighbors(data) == pytest.approx(sum(len(g.edge_src) for g in data.graphs) / 24)


def test_embedded_data_set_is_deterministic_and_varied():
    frames = generate_emt_cuau()
    assert len(frames) > 200 and {len(f) for f in frames} >= {8, 16, 31, 32, 12}
    assert {tuple(f.pbc) for f in frames} == {(True, True, True), (True, True, False)}
    assert frames[5].get_potential_energy() == generate_emt_cuau()[5].get_potential_energy()


@pytest.mark.parametrize("case, message", [
    ("missing energy", r"data:0: no energy under the key 'energy'"),
    ("nan force", r"data:0: the forces label 'forces' contains NaN"),
    ("close atoms", r"data:0: atoms 0 and 1 are 0.0500 A apart"),
    ("zero cell", r"data:0: periodic along .* zero or degenerate lattice vector"),
    ("stress without cell", r"data:0: 'stress' given for a structure that is not periodic"),
    ("stress in GPa", r"data:0: a stress component of .* must be in eV/A\^3 \(GPa or kbar"),
])  # fmt: skip
def test_bad_structures_are_named(case, message):
    atoms = labelled(cu_cell())
    if case == "missing energy":
        atoms = cu_cell()
        atoms.arrays["forces"] = np.zeros((4, 3))
    elif case == "nan force":
        atoms.calc.results["forces"][2, 1] = np.nan
    elif case == "close atoms":
        atoms = Atoms("Cu2", positions=[[0, 0, 0], [0.05, 0, 0]])
    elif case == "zero cell":
        atoms = Atoms("Cu2", positions=[[0, 0, 0], [2.0, 0, 0]], pbc=True)
    elif case == "stress in GPa":
        atoms.calc.results["stress"] = atoms.calc.results["stress"] * 160.2e3
    elif case == "stress without cell":
        atoms = labelled(molecule("CH4"), stress=np.zeros(6))
    with pytest.raises(DataError, match=message):
        configurations_from_atoms([atoms], source="data")


def test_unknown_elements_and_isolated_atoms_are_named():
    (c,) = configurations_from_atoms([labelled(cu_cell())], source="x.xyz")
    with pytest.raises(DataError, match=r"x.xyz:0: elements \[79\] are not among the model's \[29\]"):
        GraphDataset([c], 3.0, [29])
    far = Atoms("Cu2", positions=[[0, 0, 0], [6.0, 0, 0]])
    (c,) = configurations_from_atoms([labelled(far)], source="far.xyz")
    with pytest.raises(DataError, match=r"far.xyz:0: no two atoms are within the cutoff"):
        GraphDataset([c], 3.0, [29])


def test_ase_db_files_read_like_extxyz(tmp_path):
    import ase.db

    frames = [labelled(cu_cell(s)) for s in range(2)]
    with ase.db.connect(tmp_path / "data.db") as db:
        for atoms in frames:
            db.write(atoms)
    configs = read_configurations(tmp_path / "data.db")
    assert [c.energy for c in configs] == pytest.approx([f.get_potential_energy() for f in frames], rel=1e-12)
    np.testing.assert_allclose(configs[1].forces, frames[1].get_forces(), atol=1e-12)


@pytest.mark.parametrize("content, name", [("not a structure file\n", "bad.txt"), ("", "empty.xyz")])
def test_unreadable_files_are_named(tmp_path, content, name):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DataError, match=rf"{name}: ase.io.read cannot read it .*format ASE knows"):
        read_configurations(path)
