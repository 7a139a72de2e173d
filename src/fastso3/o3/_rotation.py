"""Rotation parametrizations with e3nn 0.6.0's conventions (torch).

Conventions (docs/conventions.md section 2):

* rotations are active and right-handed; ``matrix_z(pi/2) @ e_x = e_y``;
* Euler angles are **Y-X-Y**: ``angles_to_matrix(alpha, beta, gamma) = Ry(alpha) @ Rx(beta) @ Ry(gamma)``;
  ``matrix_to_angles`` returns ``alpha, gamma`` in ``(-pi, pi]`` and ``beta`` in ``[0, pi]``;
* points on the sphere use y as the polar axis: ``angles_to_xyz(alpha, beta) = R(alpha, beta, 0) @ e_y``;
* quaternions are scalar-first ``(w, x, y, z)``, composed with the Hamilton product
  (``compose_quaternion(q1, q2)`` applies ``q2`` first), ``q = (cos(t/2), n sin(t/2))``;
* axis-angle pairs are ``(axis (..., 3), angle (...))``.

Batch dimensions of several arguments broadcast. Python numbers are accepted where a tensor is expected
(they take the dtype of the tensor arguments, or the default dtype).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "rand_matrix",
    "identity_angles",
    "rand_angles",
    "compose_angles",
    "inverse_angles",
    "identity_quaternion",
    "rand_quaternion",
    "compose_quaternion",
    "inverse_quaternion",
    "rand_axis_angle",
    "compose_axis_angle",
    "matrix_x",
    "matrix_y",
    "matrix_z",
    "angles_to_matrix",
    "matrix_to_angles",
    "angles_to_quaternion",
    "matrix_to_quaternion",
    "axis_angle_to_quaternion",
    "quaternion_to_axis_angle",
    "matrix_to_axis_angle",
    "angles_to_axis_angle",
    "axis_angle_to_matrix",
    "quaternion_to_matrix",
    "quaternion_to_angles",
    "axis_angle_to_angles",
    "angles_to_xyz",
    "xyz_to_angles",
]


# ----------------------------------------------------------------------------------------------------------------
# helpers


def _floats(*xs) -> list[Tensor]:
    """Turn the arguments into floating tensors of a common device (non-tensors take the first float dtype)."""
    ref = None
    for x in xs:
        if isinstance(x, Tensor) and x.is_floating_point():
            ref = x
            break
    if ref is None:
        for x in xs:
            if isinstance(x, Tensor):
                ref = x
                break
    dtype = ref.dtype if ref is not None and ref.is_floating_point() else torch.get_default_dtype()
    device = ref.device if ref is not None else None
    out = []
    for x in xs:
        if isinstance(x, Tensor) and x.is_floating_point():
            out.append(x)
        else:
            out.append(torch.as_tensor(x, dtype=dtype, device=device))
    return out


def _broadcast(*xs) -> list[Tensor]:
    return list(torch.broadcast_tensors(*_floats(*xs)))


def _matrix(rows: list[list[Tensor]]) -> Tensor:
    """Stack a 3x3 nested list of equally shaped tensors into ``(..., 3, 3)``."""
    return torch.stack([torch.stack(row, dim=-1) for row in rows], dim=-2)


def _det3(R: Tensor) -> Tensor:
    return (
        R[..., 0, 0] * (R[..., 1, 1] * R[..., 2, 2] - R[..., 1, 2] * R[..., 2, 1])
        - R[..., 0, 1] * (R[..., 1, 0] * R[..., 2, 2] - R[..., 1, 2] * R[..., 2, 0])
        + R[..., 0, 2] * (R[..., 1, 0] * R[..., 2, 1] - R[..., 1, 1] * R[..., 2, 0])
    )


def _is_tracing() -> bool:
    return torch.compiler.is_compiling() or torch.jit.is_tracing() or torch.jit.is_scripting()


def _check_rotation(R: Tensor, name: str) -> None:
    """Raise ValueError unless ``det R = 1`` within tolerance (skipped while compiling/tracing)."""
    if R.shape[-2:] != (3, 3):
        raise ValueError(f"{name}: expected a (..., 3, 3) tensor, got shape {tuple(R.shape)}")
    if _is_tracing() or R.numel() == 0:
        return
    det = _det3(R.detach())
    # Same tolerance as e3nn's torch.allclose(det, 1): |det - 1| <= 1e-8 + 1e-5.
    err = (det - 1).abs().max().item()
    if not err <= 1e-5 + 1e-8:
        raise ValueError(
            f"{name}: expected proper rotation matrices (det = +1), got |det - 1| up to {err:.3g}; "
            "for improper matrices use Irreps.D_from_matrix, which handles the parity"
        )


# ----------------------------------------------------------------------------------------------------------------
# random and identity elements


def rand_angles(*shape, requires_grad: bool = False, dtype=None, device=None) -> tuple[Tensor, Tensor, Tensor]:
    """Haar-random Euler angles, each of shape ``shape``.

    ``alpha, gamma ~ U[0, 2pi)`` and ``beta = acos(U[-1, 1])`` (same random stream as e3nn).
    """
    alpha, gamma = 2 * math.pi * torch.rand(2, *shape, dtype=dtype, device=device)
    beta = torch.rand(shape, dtype=dtype, device=device).mul(2).sub(1).acos()
    return (
        alpha.detach().requires_grad_(requires_grad),
        beta.detach().requires_grad_(requires_grad),
        gamma.detach().requires_grad_(requires_grad),
    )


def identity_angles(*shape, requires_grad: bool = False, dtype=None, device=None) -> tuple[Tensor, Tensor, Tensor]:
    """Euler angles ``(0, 0, 0)``, each of shape ``shape``."""
    return tuple(  # type: ignore[return-value]
        torch.zeros(shape, dtype=dtype, device=device).requires_grad_(requires_grad) for _ in range(3)
    )


def rand_matrix(*shape, requires_grad: bool = False, dtype=None, device=None) -> Tensor:
    """Haar-random rotation matrices, shape ``(*shape, 3, 3)``, det = +1."""
    R = angles_to_matrix(*rand_angles(*shape, dtype=dtype, device=device))
    return R.detach().requires_grad_(requires_grad)


def identity_quaternion(*shape, requires_grad: bool = False, dtype=None, device=None) -> Tensor:
    """The identity quaternion ``(1, 0, 0, 0)``, shape ``(*shape, 4)``."""
    q = torch.zeros(*shape, 4, dtype=dtype, device=device)
    q[..., 0] = 1
    return q.requires_grad_(requires_grad)


def rand_quaternion(*shape, requires_grad: bool = False, dtype=None, device=None) -> Tensor:
    """Haar-random unit quaternions, shape ``(*shape, 4)`` (``angles_to_quaternion`` of ``rand_angles``)."""
    q = angles_to_quaternion(*rand_angles(*shape, dtype=dtype, device=device))
    return q.detach().requires_grad_(requires_grad)


def rand_axis_angle(*shape, requires_grad: bool = False, dtype=None, device=None) -> tuple[Tensor, Tensor]:
    """Haar-random rotations as ``(axis (*shape, 3), angle (*shape))``, angle in ``[0, pi]``."""
    axis, angle = angles_to_axis_angle(*rand_angles(*shape, dtype=dtype, device=device))
    return axis.detach().requires_grad_(requires_grad), angle.detach().requires_grad_(requires_grad)


# ----------------------------------------------------------------------------------------------------------------
# composition and inverse


def compose_angles(a1, b1, c1, a2, b2, c2) -> tuple[Tensor, Tensor, Tensor]:
    """Euler angles of ``R(a1, b1, c1) @ R(a2, b2, c2)`` (the second rotation is applied first); broadcasts."""
    a1, b1, c1, a2, b2, c2 = _broadcast(a1, b1, c1, a2, b2, c2)
    return matrix_to_angles(angles_to_matrix(a1, b1, c1) @ angles_to_matrix(a2, b2, c2))


def inverse_angles(a, b, c) -> tuple[Tensor, Tensor, Tensor]:
    """Euler angles of ``R(a, b, c)^-1``: ``(-c, -b, -a)``."""
    a, b, c = _floats(a, b, c)
    return -c, -b, -a


def compose_quaternion(q1: Tensor, q2: Tensor) -> Tensor:
    """Hamilton product ``q1 q2``, shape ``(..., 4)`` (``q2`` is applied first); batch dims broadcast."""
    q1, q2 = _floats(q1, q2)
    q1, q2 = torch.broadcast_tensors(q1, q2)
    w1, x1, y1, z1 = q1.unbind(-1)
    w2, x2, y2, z2 = q2.unbind(-1)
    return torch.stack(
        [
            w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2,
            w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
            w1 * y2 + y1 * w2 + z1 * x2 - x1 * z2,
            w1 * z2 + z1 * w2 + x1 * y2 - y1 * x2,
        ],
        dim=-1,
    )


def inverse_quaternion(q: Tensor) -> Tensor:
    """Inverse of a unit quaternion (its conjugate ``(w, -x, -y, -z)``), shape ``(..., 4)``."""
    (q,) = _floats(q)
    return torch.cat([q[..., :1], -q[..., 1:]], dim=-1)


def compose_axis_angle(axis1, angle1, axis2, angle2) -> tuple[Tensor, Tensor]:
    """``(axis (..., 3), angle (...))`` of ``R(axis1, angle1) @ R(axis2, angle2)``; broadcasts."""
    q1 = axis_angle_to_quaternion(axis1, angle1)
    q2 = axis_angle_to_quaternion(axis2, angle2)
    return quaternion_to_axis_angle(compose_quaternion(q1, q2))


# ----------------------------------------------------------------------------------------------------------------
# elementary rotations and Euler angles


def matrix_x(angle) -> Tensor:
    """Rotation about x, shape ``(..., 3, 3)``: ``[[1,0,0],[0,c,-s],[0,s,c]]``."""
    (angle,) = _floats(angle)
    c, s = angle.cos(), angle.sin()
    o, z = torch.ones_like(angle), torch.zeros_like(angle)
    return _matrix([[o, z, z], [z, c, -s], [z, s, c]])


def matrix_y(angle) -> Tensor:
    """Rotation about y, shape ``(..., 3, 3)``: ``[[c,0,s],[0,1,0],[-s,0,c]]``."""
    (angle,) = _floats(angle)
    c, s = angle.cos(), angle.sin()
    o, z = torch.ones_like(angle), torch.zeros_like(angle)
    return _matrix([[c, z, s], [z, o, z], [-s, z, c]])


def matrix_z(angle) -> Tensor:
    """Rotation about z, shape ``(..., 3, 3)``: ``[[c,-s,0],[s,c,0],[0,0,1]]``."""
    (angle,) = _floats(angle)
    c, s = angle.cos(), angle.sin()
    o, z = torch.ones_like(angle), torch.zeros_like(angle)
    return _matrix([[c, -s, z], [s, c, z], [z, z, o]])


def angles_to_matrix(alpha, beta, gamma) -> Tensor:
    """``(..., 3, 3)`` matrix ``Ry(alpha) @ Rx(beta) @ Ry(gamma)``; the angle batch dims broadcast."""
    alpha, beta, gamma = _broadcast(alpha, beta, gamma)
    ca, sa = alpha.cos(), alpha.sin()
    cb, sb = beta.cos(), beta.sin()
    cg, sg = gamma.cos(), gamma.sin()
    return _matrix(
        [
            [ca * cg - sa * cb * sg, sa * sb, ca * sg + sa * cb * cg],
            [sb * sg, cb, -sb * cg],
            [-sa * cg - ca * cb * sg, ca * sb, ca * cb * cg - sa * sg],
        ]
    )


def angles_to_xyz(alpha, beta) -> Tensor:
    """Point ``(..., 3)`` on the unit sphere ``R(alpha, beta, 0) @ e_y = (sin b sin a, cos b, sin b cos a)``."""
    alpha, beta = _broadcast(alpha, beta)
    sb = beta.sin()
    return torch.stack([sb * alpha.sin(), beta.cos(), sb * alpha.cos()], dim=-1)


def xyz_to_angles(xyz: Tensor) -> tuple[Tensor, Tensor]:
    """``(alpha, beta)``, each ``(...)``, of the direction of ``xyz (..., 3)`` (y is the polar axis).

    ``beta = acos(y/|xyz|)`` in ``[0, pi]`` and ``alpha = atan2(x, z)`` in ``[-pi, pi]``, as e3nn; computed as
    ``beta = pi/2 - atan2(y, hypot(x, z))``, which is accurate near the poles and needs no normalization.
    The zero vector gives ``(0, pi/2)`` without NaN, exactly like e3nn (which normalizes it to zero first).
    """
    (xyz,) = _floats(xyz)
    x, y, z = xyz.unbind(-1)
    beta = math.pi / 2 - torch.atan2(y, torch.hypot(x, z))
    alpha = torch.atan2(x, z)
    return alpha, beta


def matrix_to_angles(R: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Euler angles ``(alpha, beta, gamma)``, each ``(...)``, of rotation matrices ``R (..., 3, 3)``.

    ``R = angles_to_matrix(alpha, beta, gamma)``, ``alpha, gamma`` in ``(-pi, pi]``, ``beta`` in ``[0, pi]``.

    Raises:
        ValueError: if ``det R`` is not 1 within ``1e-5`` (improper or non-orthogonal matrix).
    """
    (R,) = _floats(R)
    _check_rotation(R, "matrix_to_angles")
    alpha, beta = xyz_to_angles(R[..., :, 1])  # R @ e_y
    # R' = R(alpha, beta, 0)^T R = Ry(gamma); only its first row is needed.
    Rab = angles_to_matrix(alpha, beta, torch.zeros_like(alpha))
    r00 = (Rab[..., :, 0] * R[..., :, 0]).sum(-1)
    r02 = (Rab[..., :, 0] * R[..., :, 2]).sum(-1)
    gamma = torch.atan2(r02, r00)
    return alpha, beta, gamma


# ----------------------------------------------------------------------------------------------------------------
# quaternions and axis-angle


def axis_angle_to_quaternion(xyz, angle) -> Tensor:
    """Quaternion ``(..., 4)`` ``(cos(t/2), n sin(t/2))`` with ``n = xyz/|xyz|`` (a zero axis stays zero)."""
    xyz, angle = _floats(xyz, angle)
    xyz, angle = torch.broadcast_tensors(xyz, angle[..., None])
    xyz = F.normalize(xyz, p=2.0, dim=-1)
    half = angle[..., :1] / 2
    return torch.cat([half.cos(), xyz * half.sin()], dim=-1)


def quaternion_to_axis_angle(q: Tensor) -> tuple[Tensor, Tensor]:
    """``(axis (..., 3), angle (...))`` of quaternions ``q (..., 4)``; angle in ``[0, 2pi]``.

    ``angle = 2 atan2(|v|, w)`` (= ``2 acos(w)`` for unit ``q``, but accurate everywhere); ``axis = v/|v|``,
    zero for the identity.
    """
    (q,) = _floats(q)
    v = q[..., 1:]
    angle = 2 * torch.atan2(torch.linalg.vector_norm(v, dim=-1), q[..., 0])
    axis = F.normalize(v, p=2.0, dim=-1)
    return axis, angle


def angles_to_quaternion(alpha, beta, gamma) -> Tensor:
    """Quaternion ``(..., 4)`` of ``R(alpha, beta, gamma)``: ``qY(alpha) qX(beta) qY(gamma)``."""
    alpha, beta, gamma = _broadcast(alpha, beta, gamma)
    ca, sa = (alpha / 2).cos(), (alpha / 2).sin()
    cb, sb = (beta / 2).cos(), (beta / 2).sin()
    cg, sg = (gamma / 2).cos(), (gamma / 2).sin()
    # qY(a) qX(b) = (ca cb, ca sb, sa cb, -sa sb); then times qY(g) = (cg, 0, sg, 0).
    return torch.stack(
        [
            cb * (ca * cg - sa * sg),
            sb * (ca * cg + sa * sg),
            cb * (sa * cg + ca * sg),
            sb * (ca * sg - sa * cg),
        ],
        dim=-1,
    )


def quaternion_to_matrix(q: Tensor) -> Tensor:
    """Rotation matrix ``(..., 3, 3)`` of quaternions ``q (..., 4)`` (normalized first)."""
    (q,) = _floats(q)
    w, x, y, z = q.unbind(-1)
    s = 2 / (q * q).sum(-1).clamp_min(torch.finfo(q.dtype).tiny)
    xx, yy, zz = s * x * x, s * y * y, s * z * z
    xy, xz, yz = s * x * y, s * x * z, s * y * z
    wx, wy, wz = s * w * x, s * w * y, s * w * z
    return _matrix(
        [
            [1 - (yy + zz), xy - wz, xz + wy],
            [xy + wz, 1 - (xx + zz), yz - wx],
            [xz - wy, yz + wx, 1 - (xx + yy)],
        ]
    )


def matrix_to_quaternion(R: Tensor) -> Tensor:
    """Unit quaternion ``(..., 4)`` of rotation matrices ``R (..., 3, 3)``, sign fixed by ``w >= 0``.

    Shepperd's method: the largest of ``w^2, x^2, y^2, z^2`` is taken from the diagonal and the other components
    from the off-diagonal sums, so it is accurate for every rotation (including angle pi).

    Raises:
        ValueError: if ``det R`` is not 1 within ``1e-5``.
    """
    (R,) = _floats(R)
    _check_rotation(R, "matrix_to_quaternion")
    r00, r01, r02 = R[..., 0, 0], R[..., 0, 1], R[..., 0, 2]
    r10, r11, r12 = R[..., 1, 0], R[..., 1, 1], R[..., 1, 2]
    r20, r21, r22 = R[..., 2, 0], R[..., 2, 1], R[..., 2, 2]
    # 4 q_i q_j for the four candidate pivots i (rows: pivot w, x, y, z).
    d = torch.stack([1 + r00 + r11 + r22, 1 + r00 - r11 - r22, 1 - r00 + r11 - r22, 1 - r00 - r11 + r22], dim=-1)
    a, b, c = r21 - r12, r02 - r20, r10 - r01  # 4 w x, 4 w y, 4 w z
    e, f, g = r01 + r10, r02 + r20, r12 + r21  # 4 x y, 4 x z, 4 y z
    cand = torch.stack(
        [
            torch.stack([d[..., 0], a, b, c], dim=-1),
            torch.stack([a, d[..., 1], e, f], dim=-1),
            torch.stack([b, e, d[..., 2], g], dim=-1),
            torch.stack([c, f, g, d[..., 3]], dim=-1),
        ],
        dim=-2,
    )  # cand[i] = 4 q_i q
    pivot = d.argmax(dim=-1, keepdim=True)
    row = torch.take_along_dim(cand, pivot[..., None], dim=-2).squeeze(-2)  # 4 q_p q, with q_p > 0
    q = F.normalize(row, p=2.0, dim=-1)
    return torch.where(q[..., :1] < 0, -q, q)


def matrix_to_axis_angle(R: Tensor) -> tuple[Tensor, Tensor]:
    """``(axis (..., 3), angle (...))`` of rotation matrices ``R (..., 3, 3)``, angle in ``[0, pi]``.

    Goes through ``matrix_to_quaternion``, so it stays accurate near angle 0 and pi.

    Raises:
        ValueError: if ``det R`` is not 1 within ``1e-5``.
    """
    return quaternion_to_axis_angle(matrix_to_quaternion(R))


def angles_to_axis_angle(alpha, beta, gamma) -> tuple[Tensor, Tensor]:
    """``(axis (..., 3), angle (...))`` of ``R(alpha, beta, gamma)``, angle in ``[0, pi]`` (as e3nn)."""
    q = angles_to_quaternion(alpha, beta, gamma)
    return quaternion_to_axis_angle(torch.where(q[..., :1] < 0, -q, q))


def axis_angle_to_matrix(axis, angle) -> Tensor:
    """Rotation matrix ``(..., 3, 3)`` by ``angle (...)`` about ``axis (..., 3)`` (normalized); broadcasts.

    Rodrigues' formula. As in e3nn (which goes through ``xyz_to_angles``), a zero axis means the z axis.
    """
    axis, angle = _floats(axis, angle)
    axis, angle = torch.broadcast_tensors(axis, angle[..., None])
    angle = angle[..., 0]
    norm = torch.linalg.vector_norm(axis, dim=-1, keepdim=True)
    e_z = torch.zeros_like(axis)
    e_z[..., 2] = 1
    n = torch.where(norm > 0, axis / norm.clamp_min(torch.finfo(axis.dtype).tiny), e_z)
    x, y, z = n.unbind(-1)
    c, s = angle.cos(), angle.sin()
    t = 2 * (angle / 2).sin() ** 2  # 1 - cos(angle), without cancellation
    return _matrix(
        [
            [c + t * x * x, t * x * y - s * z, t * x * z + s * y],
            [t * x * y + s * z, c + t * y * y, t * y * z - s * x],
            [t * x * z - s * y, t * y * z + s * x, c + t * z * z],
        ]
    )


def quaternion_to_angles(q: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Euler angles ``(alpha, beta, gamma)``, each ``(...)``, of quaternions ``q (..., 4)``."""
    return matrix_to_angles(quaternion_to_matrix(q))


def axis_angle_to_angles(axis, angle) -> tuple[Tensor, Tensor, Tensor]:
    """Euler angles ``(alpha, beta, gamma)``, each ``(...)``, of the rotation by ``angle`` about ``axis``."""
    return matrix_to_angles(axis_angle_to_matrix(axis, angle))
