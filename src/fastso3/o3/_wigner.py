"""Wigner D matrices in e3nn 0.6.0's real basis, by a closed form (torch).

``wigner_D(l, alpha, beta, gamma) = D_y(alpha) @ J @ D_y(beta) @ J @ D_y(gamma)``, where ``D_y`` is the
closed-form rotation about the polar axis y (``D_y(phi)[k, k] = cos((l-k) phi)``,
``D_y(phi)[k, 2l-k] = sin((l-k) phi)``) and ``J = J^T = J^-1`` is the constant ``D^l`` of the rotation by pi
about ``(e_x + e_y)/sqrt 2`` (``fastso3.core.so3.wigner_J``), so that ``J D_y(t) J = D_x(t)``. This equals e3nn's
``expm(alpha X_y) expm(beta X_x) expm(gamma X_y)`` without any matrix exponential: the three ``D_y`` act as
row/column mixes, and one batched matmul remains.
"""

from __future__ import annotations

import operator

import torch
from torch import Tensor

from fastso3.core import so3 as _so3
from fastso3.core.irreps import RotationBackend, register_rotation_backend
from fastso3.o3._rotation import axis_angle_to_angles, matrix_to_angles, quaternion_to_angles

__all__ = [
    "wigner_D",
    "wigner_D_from_matrix",
    "wigner_D_from_quaternion",
    "wigner_D_from_axis_angle",
    "so3_generators",
    "su2_generators",
]

# (l, dtype, device) -> J as a tensor. Filled eagerly; a plain dict lookup is traceable by torch.compile.
_J_CACHE: dict[tuple[int, torch.dtype, torch.device], Tensor] = {}


def _check_l(l) -> int:
    if isinstance(l, bool):
        raise ValueError(f"l must be a non-negative int, got {l!r}")
    try:
        # operator.index also turns a symbolic int into a constant under torch.compile (l must be static).
        l = operator.index(l)
    except TypeError:
        raise ValueError(f"l must be a non-negative int, got {l!r}") from None
    if l < 0:
        raise ValueError(f"l must be a non-negative int, got {l!r}")
    return l


@torch.compiler.assume_constant_result
def _make_wigner_J(l: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    # Under torch.compile this runs eagerly at trace time and its result becomes a graph constant.
    return torch.tensor(_so3.wigner_J(l).tolist(), dtype=dtype, device=device)


def _wigner_J(l: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``J_l`` as a tensor, cached per ``(l, dtype, device)``; safe inside ``torch.compile(fullgraph=True)``."""
    key = (l, dtype, device)
    J = _J_CACHE.get(key)
    if J is None:
        J = _make_wigner_J(l, dtype, device)
        if not torch.compiler.is_compiling():  # no side effects while tracing
            _J_CACHE[key] = J
    return J


def _angles(alpha, beta, gamma) -> tuple[Tensor, Tensor, Tensor]:
    ref = next((x for x in (alpha, beta, gamma) if isinstance(x, Tensor) and x.is_floating_point()), None)
    dtype = ref.dtype if ref is not None else torch.get_default_dtype()
    device = ref.device if ref is not None else None
    out = [
        x if isinstance(x, Tensor) and x.is_floating_point() else torch.as_tensor(x, dtype=dtype, device=device)
        for x in (alpha, beta, gamma)
    ]
    return torch.broadcast_tensors(*out)  # type: ignore[return-value]


def wigner_D(l: int, alpha, beta, gamma) -> Tensor:
    """Wigner D matrix of ``R(alpha, beta, gamma) = Ry(alpha) Rx(beta) Ry(gamma)``, shape ``(..., 2l+1, 2l+1)``.

    The angle batch dims broadcast; dtype and device follow the angles (float32 or float64). Equal to
    ``e3nn.o3.wigner_D`` (``D^1 = angles_to_matrix``), differentiable to any order, no matrix exponential,
    and traceable by ``torch.compile(fullgraph=True)``.
    """
    l = _check_l(l)
    alpha, beta, gamma = _angles(alpha, beta, gamma)
    dtype, device = alpha.dtype, alpha.device
    J = _wigner_J(l, dtype, device)
    freq = torch.arange(l, -l - 1, -1, dtype=dtype, device=device)  # l - k, k = l + m

    def cos_sin(angle: Tensor) -> tuple[Tensor, Tensor]:
        phase = angle[..., None] * freq
        return phase.cos(), phase.sin()

    ca, sa = cos_sin(alpha)
    cb, sb = cos_sin(beta)
    cg, sg = cos_sin(gamma)
    J_r = J.flip(0)  # J_r[k, j] = J[2l-k, j]
    J_c = J.flip(1)  # J_c[k, j] = J[k, 2l-j]
    J_rc = J.flip((0, 1))
    # D_y(phi) mixes index k with 2l-k: (D_y M)[k, :] = cos_k M[k, :] + sin_k M[2l-k, :] and
    # (M D_y)[:, j] = cos_j M[:, j] - sin_j M[:, 2l-j]  (for k = l: cos = 1, sin = 0).
    # The few full-size temporaries are updated in place (addcmul_), which autograd supports here.
    ca, sa = ca[..., :, None], sa[..., :, None]
    left = ca * J  # D_y(alpha) J
    left.addcmul_(sa, J_r)
    left_c = ca * J_c  # (D_y(alpha) J) with columns reversed
    left_c.addcmul_(sa, J_rc)
    left = left.mul_(cb[..., None, :])  # D_y(alpha) J D_y(beta)
    left.addcmul_(left_c, sb[..., None, :], value=-1)
    right = J * cg[..., None, :]  # J D_y(gamma)
    right.addcmul_(J_c, sg[..., None, :], value=-1)
    return torch.matmul(left, right)


def wigner_D_from_matrix(l: int, R: Tensor) -> Tensor:
    """``D^l(R)``, shape ``(..., 2l+1, 2l+1)``, for proper rotation matrices ``R (..., 3, 3)``.

    Raises:
        ValueError: if ``det R != 1`` (use ``Irreps.D_from_matrix`` for improper rotations).
    """
    return wigner_D(l, *matrix_to_angles(R))


def wigner_D_from_quaternion(l: int, q: Tensor) -> Tensor:
    """``D^l`` of the rotation of quaternions ``q (..., 4)`` (scalar first), shape ``(..., 2l+1, 2l+1)``."""
    return wigner_D(l, *quaternion_to_angles(q))


def wigner_D_from_axis_angle(l: int, axis, angle) -> Tensor:
    """``D^l`` of the rotation by ``angle (...)`` about ``axis (..., 3)``, shape ``(..., 2l+1, 2l+1)``."""
    return wigner_D(l, *axis_angle_to_angles(axis, angle))


def so3_generators(l: int, dtype=None, device=None) -> Tensor:
    """Real SO(3) generators ``(3, 2l+1, 2l+1)`` (x, y, z), as ``e3nn.o3.so3_generators``; default dtype."""
    l = _check_l(l)
    return torch.tensor(_so3.so3_generators(l).tolist(), dtype=dtype or torch.get_default_dtype(), device=device)


def su2_generators(j, dtype=None, device=None) -> Tensor:
    """Complex SU(2) generators ``(3, 2j+1, 2j+1)``, as ``e3nn.o3.su2_generators``.

    ``dtype`` defaults to the complex type matching the default dtype; a real dtype is promoted to complex.
    """
    if dtype is None:
        dtype = torch.get_default_dtype()
    if not dtype.is_complex:
        dtype = {torch.float64: torch.complex128, torch.float32: torch.complex64, torch.float16: torch.complex32}.get(
            dtype, torch.complex128
        )
    return torch.tensor(_so3.su2_generators(j), dtype=dtype, device=device)


# ----------------------------------------------------------------------------------------------------------------
# Irreps.D_from_* for torch tensors (fastso3.core.irreps dispatches here)


def _angles_as_tensors(*values) -> list:
    """Tensors of one floating dtype and device (the default dtype if none is floating), broadcast."""
    tensors = [v if isinstance(v, Tensor) else torch.as_tensor(v) for v in values]
    dtype = tensors[0].dtype
    for t in tensors[1:]:
        dtype = torch.promote_types(dtype, t.dtype)
    if not dtype.is_floating_point:
        dtype = torch.get_default_dtype()
    device = tensors[0].device
    return list(torch.broadcast_tensors(*[t.to(dtype=dtype, device=device) for t in tensors]))


def _with_parity(D: Tensor, p: int, k: Tensor) -> Tensor:
    """``p^k D`` for ``k (...)`` of 0/1 values."""
    return D * (float(p) ** k)[..., None, None].to(D.dtype)


def _block_diagonal(blocks: list, dim: int) -> Tensor:
    """``(..., dim, dim)`` with each ``D (..., d, d)`` of ``blocks = [(D, mul), ...]`` repeated ``mul`` times."""
    D0 = blocks[0][0]
    batch = D0.shape[:-2]
    out = torch.zeros(*batch, dim, dim, dtype=D0.dtype, device=D0.device)
    offset = 0
    for D, mul in blocks:
        d = D.shape[-1]
        s = slice(offset, offset + mul * d)
        offset += mul * d
        # The (mul d, mul d) block seen as (..., mul, d, mul, d); its diagonal over the two mul
        # axes, a (..., d, d, mul) view, receives D for every copy.
        block = out[..., s, s].view(*batch, mul, d, mul, d)
        torch.diagonal(block, dim1=-4, dim2=-2).copy_(D.unsqueeze(-1).expand(*batch, d, d, mul))
    return out


register_rotation_backend(
    RotationBackend(
        name="torch",
        owns=lambda value: isinstance(value, Tensor),
        as_angles=_angles_as_tensors,
        wigner_D=wigner_D,
        matrix_to_angles=matrix_to_angles,
        quaternion_to_angles=quaternion_to_angles,
        axis_angle_to_angles=axis_angle_to_angles,
        det_sign=lambda R: torch.det(R).sign(),
        with_parity=_with_parity,
        block_diagonal=_block_diagonal,
        default=True,  # Python numbers become tensors of the default dtype, as before two fronts existed
    )
)
