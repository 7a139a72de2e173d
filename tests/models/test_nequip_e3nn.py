"""NequIP on fastso3 against the same network written with e3nn 0.6.0's modules (same weights, float64)."""

import pytest
import torch

from fastso3.graph import radius_graph
from fastso3.models import NequIP

pytest.importorskip("e3nn")
from fastso3.compat import E3nnNequIP  # noqa: E402


@pytest.mark.e3nn
def test_nequip_matches_e3nn(f64):
    torch.manual_seed(0)
    model = NequIP([1, 8], r_max=3.0, hidden_irreps="4x0e + 4x1o + 4x2e", num_layers=2, atomic_energies=[-0.5, -2.0],
                   scale=1.3, shift=0.2).double()  # fmt: skip
    pos = (torch.randn(6, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 1.2).requires_grad_()
    z = torch.tensor([8, 1, 1, 8, 1, 1])
    src, dst = radius_graph(pos, 3.0)
    ours = model(pos, z, src, dst)[0]
    theirs = E3nnNequIP(model)(pos, z, src, dst)
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12)
    assert abs(float(ours.detach()) + 6.0) > 1e-3  # more than the E0s (4 H at -0.5, 2 O at -2)
    forces = [torch.autograd.grad(e, pos)[0] for e in (ours, theirs)]
    torch.testing.assert_close(forces[0], forces[1], rtol=1e-9, atol=1e-12)


@pytest.mark.e3nn
def test_periodic_nequip_matches_e3nn(f64):
    """With shifts and a cell (the peer of ``fastso3 bench model``'s periodic MD step)."""
    from ase.build import bulk

    from fastso3.graph import neighbor_list

    torch.manual_seed(0)
    model = NequIP([29, 79], r_max=3.0, hidden_irreps="4x0e + 4x1o", num_layers=2).double()
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.numbers[0] = 79
    atoms.rattle(0.1, seed=0)
    pos, cell = torch.tensor(atoms.positions).requires_grad_(), torch.tensor(atoms.cell.array)
    src, dst, shifts = neighbor_list(pos.detach(), cell, True, 3.0)
    assert shifts.abs().sum() > 0
    z = torch.tensor(atoms.numbers)
    ours = model(pos, z, src, dst, shifts, cell[None])[0]
    theirs = E3nnNequIP(model)(pos, z, src, dst, shifts, cell)
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12)
    forces = [torch.autograd.grad(e, pos)[0] for e in (ours, theirs)]
    torch.testing.assert_close(forces[0], forces[1], rtol=1e-9, atol=1e-12)
