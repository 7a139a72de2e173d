"""Labelled structures from any file ASE reads (extxyz, ase.db, ...), checked before anything trains on them.

Keys: ``energy_key``/``forces_key``/``stress_key``/``virials_key``/``weight_key`` name entries of ``atoms.info``
(per structure) or ``atoms.arrays`` (per atom), as MACE's ``REF_energy``-style files store them. When a key is
ASE's own name (``energy``, ``forces``, ``stress``) and the file put the value on a calculator instead (what
``ase.io.read`` does with extxyz ``energy=`` / ``forces`` columns), the calculator's results are read.
Units: eV, eV/A, eV/A^3 (stress, ASE's sign: positive under tension); virials (eV) become stress
``-virials / volume``. Forces beyond ``MAX_FORCE`` and stresses beyond ``MAX_STRESS`` are taken for another
unit system and raise.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["Configuration", "DataError", "MAX_FORCE", "MAX_STRESS", "MIN_DISTANCE", "configurations_from_atoms", "read_configurations"]

MIN_DISTANCE = 0.1  # Angstrom: closer atoms are an error in the data, not physics
# Labels beyond these are another unit system, not physics: 1e3 eV/A forces, 10 eV/A^3 (1.6 TPa) stresses.
MAX_FORCE = 1e3
MAX_STRESS = 10.0


class DataError(ValueError):
    """A structure of a data file cannot be trained on; the message names the file, the index and the key."""


@dataclass
class Configuration:
    """One labelled structure. Shapes: ``numbers (N,)`` int, ``positions (N, 3)`` A, ``cell (3, 3)`` rows (A),
    ``pbc (3,)`` bool; labels (None when absent): ``energy`` eV, ``forces (N, 3)`` eV/A, ``stress (3, 3)``
    eV/A^3; ``weight`` of the structure in the loss; ``source`` ``"file:index"`` for messages."""

    numbers: np.ndarray
    positions: np.ndarray
    cell: np.ndarray
    pbc: np.ndarray
    energy: float | None
    forces: np.ndarray | None
    stress: np.ndarray | None
    weight: float
    source: str


def _calculator_value(atoms, key: str):
    calc = atoms.calc
    if calc is None or key not in ("energy", "forces", "stress", "free_energy"):
        return None
    return calc.results.get(key)


def _lookup(atoms, key: str | None, per_atom: bool):
    if key is None:
        return None
    table = atoms.arrays if per_atom else atoms.info
    if key in table:
        return table[key]
    return _calculator_value(atoms, key)


def _voigt_to_matrix(value: np.ndarray) -> np.ndarray:
    xx, yy, zz, yz, xz, xy = value
    return np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])


def _as_stress(value, source: str, key: str) -> np.ndarray:
    value = np.asarray(value, dtype=np.float64).reshape(-1)
    if value.size == 6:
        return _voigt_to_matrix(value)
    if value.size == 9:
        return value.reshape(3, 3)
    raise DataError(f"{source}: {key!r} must have 6 (Voigt) or 9 entries, got {value.size}")


def _check_structure(atoms, source: str) -> None:
    pbc = np.asarray(atoms.pbc, dtype=bool)
    cell = np.asarray(atoms.cell, dtype=np.float64)
    if pbc.any() and np.linalg.matrix_rank(cell[pbc]) < pbc.sum():
        raise DataError(f"{source}: periodic along {pbc.tolist()} but the cell {cell.tolist()} has a zero or "
                        "degenerate lattice vector on a periodic axis (set pbc=False or give the cell)")  # fmt: skip
    positions = atoms.positions
    if not np.isfinite(positions).all():
        raise DataError(f"{source}: positions contain NaN or inf")
    if len(atoms) > 1:
        from ase.neighborlist import neighbor_list

        i, j, d = neighbor_list("ijd", atoms, MIN_DISTANCE)
        if len(d):
            raise DataError(f"{source}: atoms {int(i[0])} and {int(j[0])} are {float(d[0]):.4f} A apart, closer "
                            f"than {MIN_DISTANCE} A (duplicated atoms or wrong units?)")  # fmt: skip


def configurations_from_atoms(frames, source: str = "atoms", energy_key: str | None = "energy",
                              forces_key: str | None = "forces", stress_key: str | None = "stress",
                              virials_key: str | None = "virials", weight_key: str | None = "config_weight",
                              require: tuple[str, ...] = ("energy", "forces")) -> list[Configuration]:  # fmt: skip
    """:class:`Configuration` of each ``ase.Atoms`` in ``frames`` (see the module docstring for keys and units).

    ``require``: the labels every structure must have (``"energy"``, ``"forces"``, ``"stress"``); a missing
    one raises :class:`DataError` naming the structure and the key. NaN labels raise too.
    """
    out = []
    for index, atoms in enumerate(frames):
        where = f"{source}:{index}"
        _check_structure(atoms, where)
        energy = _lookup(atoms, energy_key, per_atom=False)
        forces = _lookup(atoms, forces_key, per_atom=True)
        stress = _lookup(atoms, stress_key, per_atom=False)
        if stress is not None:
            stress = _as_stress(stress, where, stress_key)
        elif (virials := _lookup(atoms, virials_key, per_atom=False)) is not None:
            if not np.asarray(atoms.pbc).all():
                raise DataError(f"{where}: {virials_key!r} given for a structure that is not periodic")
            stress = -_as_stress(virials, where, virials_key) / atoms.get_volume()
        if stress is not None and not np.asarray(atoms.pbc).all():
            raise DataError(f"{where}: {stress_key!r} given for a structure that is not periodic in 3D")
        labels = {"energy": (energy, energy_key), "forces": (forces, forces_key), "stress": (stress, stress_key)}
        for name in require:
            value, key = labels[name]
            if value is None:
                found = sorted(atoms.info) + sorted(k for k in atoms.arrays if k not in ("numbers", "positions"))
                raise DataError(f"{where}: no {name} under the key {key!r} (found {found}"
                                f"{', and calculator results' if atoms.calc is not None else ''}); "
                                f"set --{name}_key")  # fmt: skip
        if forces is not None:
            forces = np.asarray(forces, dtype=np.float64)
            if forces.shape != (len(atoms), 3):
                raise DataError(f"{where}: {forces_key!r} has shape {forces.shape}, expected ({len(atoms)}, 3)")
        for name, (value, key) in labels.items():
            if value is not None and not np.isfinite(np.asarray(value, dtype=np.float64)).all():
                raise DataError(f"{where}: the {name} label {key!r} contains NaN or inf")
        if forces is not None and np.abs(forces).max() > MAX_FORCE:
            raise DataError(f"{where}: a force component of {np.abs(forces).max():.3g} under {forces_key!r}: forces "
                            "must be in eV/A (wrong units, e.g. meV/A?)")  # fmt: skip
        if stress is not None and np.abs(stress).max() > MAX_STRESS:
            raise DataError(f"{where}: a stress component of {np.abs(stress).max():.3g} under {stress_key!r}: stress "
                            "must be in eV/A^3 (GPa or kbar? 1 eV/A^3 = 160.2 GPa)")  # fmt: skip
        weight = float(atoms.info.get(weight_key, 1.0)) if weight_key else 1.0
        out.append(Configuration(
            numbers=np.asarray(atoms.numbers, dtype=np.int64), positions=np.asarray(atoms.positions, dtype=np.float64),
            cell=np.asarray(atoms.cell, dtype=np.float64), pbc=np.asarray(atoms.pbc, dtype=bool),
            energy=None if energy is None else float(np.asarray(energy).reshape(())), forces=forces, stress=stress,
            weight=weight, source=where,
        ))  # fmt: skip
    return out


def read_configurations(path: str | Path, index: str = ":", **keys) -> list[Configuration]:
    """Read every structure of ``path`` (any format ``ase.io.read`` knows; extxyz, ``.db``, ...).

    ``keys``: the keyword arguments of :func:`configurations_from_atoms` (``energy_key``, ``forces_key``, ...).
    """
    import ase.io

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"read_configurations: {path} does not exist")
    try:
        frames = ase.io.read(path, index=index)
    except Exception as exc:  # ASE raises many types for unreadable files; all mean the same to a user
        raise DataError(f"{path}: ase.io.read cannot read it ({type(exc).__name__}: {exc}); give a file in a format "
                        "ASE knows, e.g. extxyz (.xyz/.extxyz) or an ase.db (.db)") from exc  # fmt: skip
    return configurations_from_atoms(frames if isinstance(frames, list) else [frames], source=str(path), **keys)
