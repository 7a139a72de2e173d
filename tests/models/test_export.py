"""Export for deployment: the exported energy, forces and stress equal eager over structures of other sizes (no
re-export), a package runs in a fresh process from its own tables, and the ASE calculator and MD run from an
AOTInductor package."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import units
from ase.build import bulk
from ase.md.verlet import VelocityVerlet

from fastso3.calculator import FastSO3Calculator
from fastso3.cli import main
from fastso3.graph import neighbor_list
from fastso3.kernels import tables
from fastso3.models import ESCN, MACE, NequIP, export_potential, forces_and_stress, save
from fastso3.models.export import OUTPUTS, export_program

TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-4}


def nequip(dtype=torch.float64):
    torch.manual_seed(0)
    return NequIP([29, 79], r_max=3.0, hidden_irreps="8x0e+8x1o", num_layers=2, avg_num_neighbors=12.0,
                  atomic_energies=[-3.5, -3.2]).to(dtype)  # fmt: skip


def mace(dtype=torch.float64):
    torch.manual_seed(0)
    return MACE([29, 79], r_max=3.0, max_ell=1, hidden_irreps="4x0e+4x1o", MLP_irreps="4x0e", radial_MLP=(8,),
                avg_num_neighbors=12.0, correlation=2).to(dtype)  # fmt: skip


def structure(repeat, seed, dtype=torch.float64):
    """A rattled Cu3Au-like periodic cell, as the program's inputs (G = 1)."""
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(repeat)
    atoms.numbers[::3] = 79
    atoms.rattle(0.1, seed=seed)
    pos, cell = torch.tensor(atoms.positions, dtype=dtype), torch.tensor(np.asarray(atoms.cell), dtype=dtype)
    src, dst, shifts = neighbor_list(pos, cell, True, 3.0)
    return pos, cell[None], torch.tensor(atoms.numbers), src, dst, shifts, torch.zeros(len(atoms), dtype=torch.int64)


def lone_atom(dtype=torch.float64):
    """One atom in a large cell: no edges."""
    empty = torch.zeros(0, dtype=torch.int64)
    return (torch.zeros(1, 3, dtype=dtype), 10 * torch.eye(3, dtype=dtype)[None], torch.tensor([79]), empty, empty,
            torch.zeros(0, 3, dtype=torch.int64), torch.zeros(1, dtype=torch.int64))  # fmt: skip


def eager(model, positions, cell, numbers, src, dst, shifts, batch):
    out = forces_and_stress(lambda p, c: model(p, numbers, src, dst, shifts, c, batch, 1), positions, cell, batch)
    return {key: out[key] for key in OUTPUTS}


def assert_equal_outputs(ours, theirs, dtype):
    tol = TOLERANCE[dtype]
    for key in OUTPUTS:
        torch.testing.assert_close(ours[key], theirs[key], rtol=tol, atol=tol, msg=key)


def escn(dtype=torch.float64):
    torch.manual_seed(0)
    return ESCN([29, 79], r_max=3.0).to(dtype)


@pytest.mark.slow
@pytest.mark.parametrize("build", [mace, escn], ids=["mace", "escn"])  # NequIP: the AOTI test below
def test_exported_program_equals_eager_over_sizes(build):
    model = build()
    program = export_program(model).module()
    for inputs in (structure((1, 1, 1), 1), structure((3, 2, 1), 2), lone_atom()):
        assert_equal_outputs(dict(zip(OUTPUTS, program(*inputs))), eager(model, *inputs), torch.float64)


def test_tables_travel_exactly():
    """Every table of a NequIP and a MACE, through JSON under another name, comes back equal (types, dtypes, bits)."""
    from fastso3.kernels import channelwise, symmetric_contraction, uvw

    nequip(), mace()
    registries = {"uvu": channelwise._TABLES, "uvw": uvw._TABLES, "symmetric_contraction": symmetric_contraction._PLANS}
    names = [name for prefix, registry in registries.items() for name in registry]
    assert {name.split(":")[0] for name in names} == set(registries)
    data = json.loads(tables.snapshot([*names, "sh_grad:2:component"]))
    assert "sh_grad:2:component" not in data  # derived from its name
    tables.restore(json.dumps({f"{name}-copy": value for name, value in data.items()}))

    def same(a, b):
        assert type(a) is type(b)
        if isinstance(a, np.ndarray):
            assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
        elif isinstance(a, (tuple, list)):
            assert len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
        else:
            assert a == b
        return True

    for name in names:
        registry = registries[name.split(":")[0]]
        same(registry.pop(f"{name}-copy"), registry[name])
    with pytest.raises(KeyError, match="no registered table 'uvu:0'"):
        tables.snapshot(["uvu:0"])


LOADER = """
import json, sys, torch
from fastso3.kernels import channelwise, uvw
from fastso3.models import load_exported
inputs = torch.load(sys.argv[2], weights_only=True)
potential = load_exported(sys.argv[1])
built = sorted([*channelwise._TABLES, *uvw._TABLES])  # every table came from the package: no module was built
out = potential(*inputs)
torch.save({**out, "built": built, "tables": sorted(json.loads(potential.metadata["tables"]))}, sys.argv[3])
"""


@pytest.mark.slow
def test_package_runs_in_a_fresh_process_from_its_tables(tmp_path):
    """``fastso3 export --no-aoti --dtype float32`` of a saved float64 model, loaded where its tables were never
    built."""
    save(nequip(), tmp_path / "model.pt")
    assert main(["export", str(tmp_path / "model.pt"), str(tmp_path / "nequip.pt2"), "--no-aoti", "--dtype", "float32"]) == 0
    model, path = nequip(torch.float32), tmp_path / "nequip.pt2"
    inputs = structure((2, 2, 1), 3, torch.float32)
    torch.save(inputs, tmp_path / "inputs.pt")
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    subprocess.run([sys.executable, "-c", LOADER, str(path), str(tmp_path / "inputs.pt"), str(tmp_path / "out.pt")],
                   check=True, timeout=300, env=env)  # fmt: skip
    out = torch.load(tmp_path / "out.pt", weights_only=True)
    assert out["built"] == [name for name in out["tables"] if not name.startswith("symmetric_contraction:")]
    assert_equal_outputs(out, eager(model, *inputs), torch.float32)


def test_cli_export_refuses_bad_paths(tmp_path, capsys):
    assert main(["export", str(tmp_path / "missing.pt"), str(tmp_path / "out.pt2")]) == 2
    save(nequip(), tmp_path / "model.pt")
    assert main(["export", str(tmp_path / "model.pt"), str(tmp_path / "out.zip")]) == 2
    assert "must end in .pt2" in capsys.readouterr().err


def test_every_table_argument_is_known():
    """A new ``str`` argument of a fastso3 op must be sorted into ``kernels.tables`` (a table name travels with a
    package, a backend or normalization does not)."""
    tables.register_ops()
    found = {arg.name for name in torch._C._dispatch_get_all_op_names() if name.startswith("fastso3::")
             for overload in getattr(torch.ops.fastso3, name[9:]).overloads()
             for arg in getattr(getattr(torch.ops.fastso3, name[9:]), overload)._schema.arguments
             if str(arg.type) == "str"}  # fmt: skip
    assert found == {*tables.TABLE_ARGUMENTS, "backend", "normalization"}
    defining = {p.stem for p in Path(tables.__file__).parent.glob("*.py") if "custom_op(" in p.read_text()}
    assert defining == set(tables.OP_MODULES)


@pytest.mark.slow
def test_calculator_and_md_run_from_an_aoti_package(tmp_path):
    model = nequip()
    path = export_potential(model, tmp_path / "nequip.pt2")
    ours, theirs = FastSO3Calculator(path), FastSO3Calculator(model)
    metadata = ours.package.metadata
    assert (metadata["r_max"], metadata["atomic_numbers"], metadata["dtype"], metadata["runtime"]) == (3.0, [29, 79], "float64", "aoti")
    for repeat, seed in (((1, 1, 1), 0), ((2, 2, 2), 1), ((3, 2, 1), 2)):  # 4 to 32 atoms, one package
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(repeat)
        atoms.numbers[::3] = 79
        atoms.rattle(0.1, seed=seed)
        for name in ("get_potential_energy", "get_forces", "get_stress"):
            np.testing.assert_allclose(getattr(ours, name)(atoms), getattr(theirs, name)(atoms), rtol=1e-10, atol=1e-10)
    lone = lone_atom()
    assert_equal_outputs(ours.package(*lone[:-1]), eager(model, *lone), torch.float64)
    atoms.calc = ours
    dyn = VelocityVerlet(atoms, timestep=1 * units.fs)
    energies = []
    dyn.attach(lambda: energies.append(atoms.get_total_energy()))
    dyn.run(5)
    assert len(energies) == 6 and np.isfinite(energies).all()
    np.testing.assert_allclose(ours.get_forces(atoms), theirs.get_forces(atoms), rtol=1e-10, atol=1e-10)
    pos, cell, numbers, src, dst, shifts, _ = structure((1, 1, 1), 0)
    with pytest.raises(ValueError, match="positions must be torch.float64"):
        ours.package(pos.float(), cell, numbers, src, dst, shifts)
    with pytest.raises(IndexError, match="edge_dst has values outside"):
        ours.package(pos, cell, numbers, src, dst + 4, shifts)
    with pytest.raises(ValueError, match=r"atomic numbers \[8\] are not among the model's \[29, 79\]"):
        ours.package(pos, cell, torch.full_like(numbers, 8), src, dst, shifts)
    with pytest.raises(NotImplementedError, match="first derivatives only"):
        ours.get_hessian(atoms)
