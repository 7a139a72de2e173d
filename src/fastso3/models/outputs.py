"""Forces, virials and stress from an energy model, through positions and a symmetric strain of the cell.

With a symmetric strain ``eps`` per structure applied as ``r -> r (1 + eps)`` to the positions and
``cell -> cell (1 + eps)`` to the lattice vectors (rows), at ``eps = 0``:

- forces ``F = -dE/dr``, ``(N, 3)``;
- virials ``W = -dE/deps``, ``(G, 3, 3)``;
- stress ``sigma = (1 / V) dE/deps`` ``(G, 3, 3)``, ASE's sign convention (positive under tension), in energy
  per volume units (eV / A^3 for eV and A). Structures of zero volume (no periodic cell) get NaN stress.

This is how MACE (``get_outputs`` in ``mace/modules/utils.py``) and NequIP (``ForceStressOutput``) obtain
stress; restated here, not copied.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..kernels._checks import tracing

__all__ = ["forces_and_stress"]


def forces_and_stress(
    energy_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    positions: torch.Tensor,
    cell: torch.Tensor,
    batch: torch.Tensor | None = None,
    *,
    stress: bool = True,
    create_graph: bool = False,
) -> dict[str, torch.Tensor]:
    """Energy, forces and (optionally) virials and stress of a batch of structures.

    Args:
        energy_fn: ``(positions (N, 3), cell (G, 3, 3)) -> energy (G,)``, differentiable; it must build its
            edge vectors from the positions and cell it is given (e.g. ``fastso3.graph.edge_vectors`` with
            the shifts of a neighbour list), so the strain reaches them.
        positions: ``(N, 3)`` float, length units.
        cell: ``(G, 3, 3)`` (or ``(3, 3)`` for one structure; ``energy_fn`` always gets ``(G, 3, 3)``) lattice
            vectors as rows, same dtype; zeros for a non-periodic structure.
        batch: ``(N,)`` int64 structure index of each atom in ``[0, G)``; None: all atoms in structure 0.
        stress: also compute virials and stress (one more gradient, same backward pass).
        create_graph: keep the graph of the derivatives (training with forces or stress in the loss);
            without it every output is detached (inference).

    Returns:
        ``{"energy": (G,), "forces": (N, 3)}`` plus ``"virials"`` and ``"stress"`` ``(G, 3, 3)`` when ``stress``.
    """
    if not isinstance(positions, torch.Tensor) or not positions.is_floating_point() or positions.dim() != 2 \
            or positions.shape[1] != 3:  # fmt: skip
        raise ValueError(f"forces_and_stress: positions must be a floating-point (N, 3) tensor, got {getattr(positions, 'shape', None)}")
    cells = cell.unsqueeze(0) if cell.dim() == 2 else cell
    if cells.dim() != 3 or cells.shape[1:] != (3, 3):
        raise ValueError(f"forces_and_stress: cell must have shape (G, 3, 3) or (3, 3), got {tuple(cell.shape)}")
    if cells.dtype != positions.dtype or cells.device != positions.device:
        raise TypeError(f"forces_and_stress: cell ({cells.dtype}, {cells.device}) must match positions "
                        f"({positions.dtype}, {positions.device})")  # fmt: skip
    graphs = cells.shape[0]
    if batch is None:
        batch = torch.zeros(positions.shape[0], dtype=torch.int64, device=positions.device)
    if batch.dtype != torch.int64 or batch.shape != (positions.shape[0],):
        raise ValueError(f"forces_and_stress: batch must be an int64 (N,) tensor, got {batch.dtype} {tuple(batch.shape)}")
    if batch.numel() and not tracing() and (int(batch.min()) < 0 or int(batch.max()) >= graphs):
        raise IndexError(f"forces_and_stress: batch has values outside [0, {graphs}) (the cells given)")

    pos = positions if positions.requires_grad else positions.detach().requires_grad_(True)
    strain = torch.zeros_like(cells, requires_grad=stress)
    if stress:
        sym = 0.5 * (strain + strain.transpose(-1, -2))
        pos_in = pos + torch.einsum("ni,nij->nj", pos, sym[batch])
        cell_in = cells + cells @ sym
    else:
        pos_in, cell_in = pos, cells
    energy = energy_fn(pos_in, cell_in)
    if energy.shape != (graphs,):
        raise ValueError(f"forces_and_stress: energy_fn must return one energy per structure ({graphs},), got {tuple(energy.shape)}")
    inputs = [pos, strain] if stress else [pos]
    grads = torch.autograd.grad(energy.sum(), inputs, create_graph=create_graph, allow_unused=True)
    out = {"energy": energy, "forces": -_or_zeros(grads[0], pos)}
    if stress:
        d_eps = _or_zeros(grads[1], strain)
        volume = torch.linalg.det(cells).abs()
        out["virials"] = -d_eps
        has_volume = volume[:, None, None] > 0
        # double where: the NaN of a zero volume never enters a gradient (0 / 0 would poison a training step)
        safe = torch.where(has_volume, volume[:, None, None], torch.ones_like(volume[:, None, None]))
        out["stress"] = torch.where(has_volume, d_eps / safe, torch.nan)
    return out if create_graph else {key: value.detach() for key, value in out.items()}


def _or_zeros(grad: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(like) if grad is None else grad
