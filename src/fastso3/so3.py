"""FastSo3's ``so3`` module on fastso3: edge frames, padded Wigner blocks and their rotation of padded features.

With ``fastso3.so2`` (FastSo3's ``so2`` API) a FastSo3 script runs on fastso3 by changing its two imports
(``import fastso3.so3 as so3``, ``import fastso3.so2 as so2``). The layout is FastSo3's: degrees ``1..L`` of
``C`` channels as ``(B, C, L, 2L+1)``, degree ``l`` centred (zero padded by ``L - l`` on both sides).

Facts restated from FastSo3 (github.com/wzm2256/FastSo3, ``FastSo3/so3.py``), not copied:

- ``init_edge_rot_mat(edge_vec)``: rotations ``R (B, 3, 3)`` with ``R @ edge_vec/|edge_vec| = e_y``. FastSo3
  completes the frame with a random vector; fastso3 uses its deterministic frame (``so2.edge_rotation``), which
  differs from any of FastSo3's by a roll about ``y``, a symmetry of the SO(2) convolutions.
- ``RotationToWignerDMatrix(R, end_lmax, start_lmax=1)``: the Wigner blocks ``D^l(R)`` for ``l = start..end``,
  each zero padded to ``2 end_lmax + 1``: ``(B, end - start + 1, 2L+1, 2L+1)``; ``D^l`` is e3nn's
  (``D^1(R) = R`` in the ``(x, y, z)`` basis), computed from ``R`` by ``fastso3.o3.wigner_D_from_matrix``.
- ``wigner_D(l, alpha, beta, gamma)``: e3nn's Y-X-Y Euler-angle Wigner D.
- ``rotate(W, x)``: ``y[b, c, l] = W[b, l] @ x[b, c, l]`` (a batch of 1 broadcasts against ``B``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .o3 import wigner_D, wigner_D_from_matrix
from .so2 import edge_rotation

__all__ = ["RotationToWignerDMatrix", "init_edge_rot_mat", "rotate", "wigner_D"]


def init_edge_rot_mat(edge_distance_vec: Tensor) -> Tensor:
    """``(B, 3)`` edge vectors -> ``(B, 3, 3)`` rotations taking each edge direction to ``+y`` (detached, as
    FastSo3's). Raises ``ValueError`` for an edge shorter than 1e-4 (FastSo3 only logs it)."""
    if edge_distance_vec.dim() != 2 or edge_distance_vec.shape[1] != 3:
        raise ValueError(f"init_edge_rot_mat: expected (B, 3) edge vectors, got {tuple(edge_distance_vec.shape)}")
    lengths = torch.linalg.vector_norm(edge_distance_vec, dim=1)
    if lengths.numel() and float(lengths.min()) < 1e-4:
        raise ValueError(f"init_edge_rot_mat: an edge is {float(lengths.min()):.2e} long; its direction is undefined")
    return edge_rotation(edge_distance_vec).detach()


def RotationToWignerDMatrix(edge_rot_mat: Tensor, end_lmax: int, start_lmax: int = 1) -> Tensor:  # noqa: N802
    """``(B, 3, 3)`` rotations -> ``(B, end_lmax - start_lmax + 1, 2 end_lmax + 1, 2 end_lmax + 1)`` padded
    Wigner blocks (see the module docstring)."""
    if not 0 <= start_lmax <= end_lmax:
        raise ValueError(f"RotationToWignerDMatrix: need 0 <= start_lmax <= end_lmax, got {start_lmax}, {end_lmax}")
    blocks = []
    for l in range(start_lmax, end_lmax + 1):
        pad = end_lmax - l
        blocks.append(torch.nn.functional.pad(wigner_D_from_matrix(l, edge_rot_mat), [pad] * 4))
    return torch.stack(blocks, 1)


def rotate(W: Tensor, x: Tensor) -> Tensor:
    """``W (B, L, 2L+1, 2L+1)``, ``x (B, C, L, 2L+1)`` -> ``(B, C, L, 2L+1)``: each degree's block times its
    features (``B`` of ``W`` may be 1)."""
    return torch.einsum("blde,bcle->bcld", W, x)
