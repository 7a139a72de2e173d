"""Edge frames and their Wigner blocks (torch), without Euler angles.

``edge_rotation(v)`` is a rotation ``R`` with ``R v/|v| = e_y`` (y is e3nn's polar axis). Two charts, each the
minimal rotation ``I + K + K^2/(1 + c)`` (Rodrigues form of the quaternion ``(1 + c, a x b)``):

* ``y >= 0``: ``v_hat -> e_y``, denominator ``1 + y >= 1``;
* ``y < 0``: ``v_hat -> -e_y``, then the half-turn ``Rx(pi)``, denominator ``1 - y > 1``.

Each chart is a rational function of ``v_hat`` with a denominator >= 1 where it is used, so ``R`` and all its
derivatives are finite for every direction, ``+-y`` included. The charts differ by a roll about ``y`` at the
switch; the SO(2) convolutions commute with that roll, so messages are smooth across it. The roll is
deterministic (no random vector, unlike eSCN/FastSo3).

Wigner blocks: ``D^1(R) = R`` (e3nn's l=1 basis is (x, y, z)) and ``D^l = (2l+1) C^T (D^{l-1} x D^1) C`` with
``C = wigner_3j(l-1, 1, l)``, polynomial in ``R`` (``fastso3::wigner_step``, one op per degree).
"""

from __future__ import annotations

import torch
from torch import Tensor

from fastso3.kernels import registry
from fastso3.kernels.so2_rotation import so2_rotation_op
from fastso3.kernels.wigner_step import wigner_step_op

__all__ = ["EdgeRotation", "edge_rotation", "rotate", "rotate_back"]


def edge_rotation(vec: Tensor, eps: float = 1e-9) -> Tensor:
    """Rotation matrices ``R (..., 3, 3)`` with ``R @ vec/|vec| = e_y``, for ``vec (..., 3)`` (float32/64).

    Row 1 of ``R`` is the unit edge direction. Vectors with ``|vec| <= eps`` are treated as pointing along
    ``+y`` (``R = I``) with a zero gradient; every value and gradient stays finite.
    """
    if vec.shape[-1:] != (3,):
        raise ValueError(f"edge_rotation: expected vectors (..., 3), got shape {tuple(vec.shape)}")
    norm = torch.linalg.vector_norm(vec, dim=-1, keepdim=True)
    short = norm <= eps
    e_y = torch.zeros_like(vec)
    e_y[..., 1] = 1
    # double where: the short branch never sees a division by ~0, so its gradient is 0 rather than NaN
    u = torch.where(short, e_y, vec / torch.where(short, torch.ones_like(norm), norm))
    x, y, z = u.unbind(-1)
    s = 2 * (y >= 0).to(u.dtype) - 1  # chart: minimal rotation to s e_y, then Rx(pi) if s = -1
    k = 1 / (1 + s * y)  # 1 + |y| >= 1
    xx, xz, zz = k * x * x, k * x * z, k * z * z
    one = torch.ones_like(x)
    # chart s: rows (1 - x^2 k, -s x, -x z k), (x, y, z), s (-x z k, -s z, 1 - z^2 k)
    R = torch.stack(
        [
            torch.stack([one - xx, -s * x, -xz], -1),
            torch.stack([x, y, z], -1),
            torch.stack([-s * xz, -z, s * (one - zz)], -1),
        ],
        -2,
    )
    return R


class EdgeRotation(torch.nn.Module):
    """Padded Wigner blocks of the edge frames, FastSo3's ``W`` layout.

    ``forward(vec (E, 3)) -> W (E, L, 2L+1, 2L+1)`` with ``W[:, l-1]`` = ``D^l(edge_rotation(vec))`` centred and
    zero-padded; in the dtype and device of ``vec``. With ``mmax < L`` the rows are cut to ``|m| <= mmax``:
    ``(E, L, 2 mmax + 1, 2L+1)``. ``backend`` (None: the default for the device, see ``fastso3.kernels.registry``)
    runs the recursion's steps (``fastso3::wigner_step``).
    """

    def __init__(self, L: int, mmax: int | None = None, eps: float = 1e-9, backend: str | None = None) -> None:
        super().__init__()
        if isinstance(L, bool) or not isinstance(L, int) or L < 1:
            raise ValueError(f"L must be an int >= 1, got {L!r}")
        mmax = L if mmax is None else mmax
        if isinstance(mmax, bool) or not isinstance(mmax, int) or not 0 <= mmax <= L:
            raise ValueError(f"mmax must be an int in 0..L={L}, got {mmax!r}")
        self.L, self.mmax, self.eps, self.backend = L, mmax, eps, backend

    def blocks(self, R: Tensor) -> list[Tensor]:
        """Full Wigner blocks ``[D^1 (E, 3, 3), ..., D^L (E, 2L+1, 2L+1)]`` of rotations ``R (E, 3, 3)``."""
        chosen = registry.resolve_backend("wigner_step", self.backend, R.device, R.dtype)
        D = [R]
        for _ in range(2, self.L + 1):
            D.append(wigner_step_op(D[-1], R, None, [2], chosen)[0])
        return D

    def forward(self, vec: Tensor) -> Tensor:
        L, mmax = self.L, self.mmax
        blocks = self.blocks(edge_rotation(vec, self.eps))
        W = vec.new_zeros(vec.shape[0], L, 2 * mmax + 1, 2 * L + 1)
        for l, D in enumerate(blocks, start=1):  # rows |m| <= min(l, mmax), columns |n| <= l, centred
            k = min(l, mmax)
            W[:, l - 1, mmax - k : mmax + k + 1, L - l : L + l + 1] = D[:, l - k : l + k + 1]
        return W


def _rotation(features: Tensor, W: Tensor, slot: int, backend: str | None) -> Tensor:
    """The op into ``slot`` (0: rotate, 2: rotate back); it checks shapes, dtypes and devices."""
    chosen = registry.resolve_backend("so2_rotation", backend, W.device, W.dtype)
    args = (None, W, features) if slot == 0 else (features, W, None)
    return so2_rotation_op(*args, [slot], chosen)[0]


def rotate(W: Tensor, x: Tensor, backend: str | None = None) -> Tensor:
    """``y[b, c, l] = W[b, l] @ x[b, c, l]``: ``W (B, L, M, 2L+1)``, ``x (B, C, L, 2L+1)`` -> ``(B, C, L, M)``.

    Only each degree's block of ``W`` (rows and columns of order ``<= l``) and its ``2l+1`` entries of ``x`` are
    read. The result is a view of m-major memory ``(M, B, L, C)``: channels innermost, the layout the CPU kernels
    (:func:`rotate_back`, the SO(2) layers) gather fastest. ``backend``: None (the compiled CPU kernel for CPU float32/float64,
    else the reference), ``'cpu'`` or ``'reference'`` (one einsum); see ``fastso3.kernels.so2_rotation``.
    """
    return _rotation(x, W, 0, backend)


def rotate_back(W: Tensor, y: Tensor, backend: str | None = None) -> Tensor:
    """``x[b, c, l] = W[b, l]^T @ y[b, c, l]``: ``W (B, L, M, 2L+1)``, ``y (B, C, L, M)`` -> ``(B, C, L, 2L+1)``.

    Zero outside each degree's ``2l+1`` columns (only ``W``'s blocks and ``y``'s rows of order ``<= l`` are read);
    contiguous. ``backend`` as for :func:`rotate`.
    """
    return _rotation(y, W, 2, backend)
