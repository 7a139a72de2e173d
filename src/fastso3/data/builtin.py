"""The embedded default data set: Cu/Au structures labelled with ASE's EMT calculator, generated on first use.

``emt_cuau()`` returns the path of an extxyz file (cached under ``$FASTSO3_CACHE/data``, nothing downloaded):
fcc bulk cells of 8-32 atoms (pure Cu, pure Au and random alloys) strained by up to 4 % and rattled, frames of
short 300-1500 K Langevin runs, single vacancies, and (111) / (100) slabs with vacuum. Energies (eV), forces
(eV/A) and, for the 3D-periodic cells, stresses (eV/A^3) sit on each frame's calculator, as ASE writes them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..kernels.cpu.loader import cache_dir

__all__ = ["EMT_CUAU_VERSION", "emt_cuau", "generate_emt_cuau"]

EMT_CUAU_VERSION = 1
_LATTICE = {29: 3.61, 79: 4.08}


def _alloy(rng, repeat, fraction_au):
    from ase.build import bulk

    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(repeat)
    atoms.numbers[rng.random(len(atoms)) < fraction_au] = 79
    # Vegard's law for the lattice constant, then a random symmetric strain
    a = (1 - fraction_au) * _LATTICE[29] + fraction_au * _LATTICE[79]
    atoms.set_cell(atoms.cell * a / 3.61, scale_atoms=True)
    strain = rng.uniform(-0.04, 0.04, (3, 3))
    atoms.set_cell(atoms.cell @ (np.eye(3) + (strain + strain.T) / 2), scale_atoms=True)
    return atoms


def _labelled(atoms, rng, rattle):
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator

    atoms = atoms.copy()
    atoms.rattle(rattle, seed=int(rng.integers(1 << 31)))
    atoms.calc = EMT()
    results = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces()}
    if atoms.pbc.all():
        results["stress"] = atoms.get_stress()
    atoms.calc = SinglePointCalculator(atoms, **results)
    return atoms


def _heated(atoms, rng, temperature, frames):
    from ase import units
    from ase.calculators.emt import EMT
    from ase.md.langevin import Langevin
    from ase.md.velocitydistribution import thermalize_momenta

    atoms = atoms.copy()
    atoms.calc = EMT()
    thermalize_momenta(atoms, temperature_K=temperature, rng=rng)
    dyn = Langevin(atoms, 2 * units.fs, temperature_K=temperature, friction=0.02, rng=rng, fixcm=False)
    out = []
    for _ in range(frames):
        dyn.run(10)
        out.append(_labelled(atoms, rng, 0.0))
    return out


def generate_emt_cuau(seed: int = 0) -> list:
    """The data set's frames (``ase.Atoms`` with single-point calculators), deterministic in ``seed``."""
    from ase.build import fcc100, fcc111

    rng = np.random.default_rng(seed)
    frames = []
    for repeat in [(2, 1, 1), (2, 2, 1), (2, 2, 2)]:
        for fraction in (0.0, 0.25, 0.5, 0.75, 1.0):
            for _ in range(10):
                frames.append(_labelled(_alloy(rng, repeat, fraction), rng, rng.uniform(0.03, 0.15)))
    for temperature in (300, 800, 1500):
        for fraction in (0.0, 0.5, 1.0):
            frames += _heated(_alloy(rng, (2, 2, 1), fraction), rng, temperature, frames=6)
    for fraction in (0.0, 0.25, 0.5):
        for _ in range(6):
            atoms = _alloy(rng, (2, 2, 2), fraction)
            del atoms[int(rng.integers(len(atoms)))]
            frames.append(_labelled(atoms, rng, 0.08))
    for build in (fcc111, fcc100):
        for symbol in ("Cu", "Au"):
            for _ in range(5):
                slab = build(symbol, size=(2, 2, 3), vacuum=6.0, a=_LATTICE[29 if symbol == "Cu" else 79])
                slab.numbers[rng.random(len(slab)) < 0.3] = 79 if symbol == "Cu" else 29
                slab.info.pop("adsorbate_info", None)  # not a label; extxyz cannot store it
                frames.append(_labelled(slab, rng, 0.1))
    return frames


def emt_cuau() -> Path:
    """The cached extxyz file of :func:`generate_emt_cuau` (written on first use, atomically)."""
    import ase.io

    path = cache_dir() / "data" / f"emt_cuau_v{EMT_CUAU_VERSION}.extxyz"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{np.random.default_rng().integers(1 << 31)}")
        ase.io.write(tmp, generate_emt_cuau(), format="extxyz")
        tmp.replace(path)
    return path
