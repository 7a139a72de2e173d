"""Rotations and Wigner D matrices in jax, with e3nn's conventions (docs/conventions.md section 2).

The constant tables are the numpy ones of :mod:`fastso3.core.so3` (the same the torch front uses):
``D^l(alpha, beta, gamma) = D_y(alpha) J D_y(beta) J D_y(gamma)`` with the closed-form rotation about y,
``D_y(phi)[k, k] = cos((l-k) phi)``, ``D_y(phi)[k, 2l-k] = sin((l-k) phi)``, and ``J = wigner_J(l)``.
Y-X-Y Euler angles, ``R(alpha, beta, gamma) = Ry(alpha) Rx(beta) Ry(gamma)``; quaternions scalar-first.
Registering :data:`ROTATION_BACKEND` makes ``Irreps.D_from_*`` return jax arrays for jax inputs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ..core import so3 as _so3
from ..core.irreps import RotationBackend, register_rotation_backend

__all__ = [
    "wigner_D",
    "angles_to_matrix",
    "matrix_to_angles",
    "xyz_to_angles",
    "angles_to_xyz",
    "quaternion_to_matrix",
    "axis_angle_to_matrix",
    "rand_matrix",
]


def _floats(*values) -> list:
    """jax arrays of one floating dtype (the default float dtype if none is floating), broadcast together."""
    arrays = [jnp.asarray(v) for v in values]
    dtype = jnp.result_type(*arrays)
    if not jnp.issubdtype(dtype, jnp.floating):
        dtype = jnp.zeros(()).dtype  # float32, or float64 with jax_enable_x64
    return list(jnp.broadcast_arrays(*[a.astype(dtype) for a in arrays]))


def _D_y_mix_rows(M, c, s):
    """``D_y(phi) @ M`` for ``c = cos((l-k) phi)``, ``s = sin((l-k) phi)`` ``(..., 2l+1)``."""
    return c[..., :, None] * M + s[..., :, None] * jnp.flip(M, -2)


def wigner_D(l: int, alpha, beta, gamma) -> jax.Array:
    """``D^l(R(alpha, beta, gamma))``, shape ``(..., 2l+1, 2l+1)``; the angles broadcast, dtype follows them.

    Equal to ``e3nn.o3.wigner_D`` and to ``fastso3.o3.wigner_D`` (same closed form and J tables).
    """
    alpha, beta, gamma = _floats(alpha, beta, gamma)
    J = jnp.asarray(_so3.wigner_J(l), dtype=alpha.dtype)
    freq = jnp.arange(l, -l - 1, -1, dtype=alpha.dtype)  # l - k, k = l + m

    def cos_sin(angle):
        phase = angle[..., None] * freq
        return jnp.cos(phase), jnp.sin(phase)

    ca, sa = cos_sin(alpha)
    cb, sb = cos_sin(beta)
    cg, sg = cos_sin(gamma)
    left = _D_y_mix_rows(J, ca, sa)  # D_y(alpha) J
    # M D_y(phi): column j gets cos_j M[:, j] - sin_j M[:, 2l-j].
    left = left * cb[..., None, :] - jnp.flip(left, -1) * sb[..., None, :]  # D_y(alpha) J D_y(beta)
    right = J * cg[..., None, :] - jnp.flip(J, -1) * sg[..., None, :]  # J D_y(gamma)
    return left @ right


def _matrix_y(angle):
    c, s = jnp.cos(angle), jnp.sin(angle)
    o, z = jnp.ones_like(angle), jnp.zeros_like(angle)
    return jnp.stack([jnp.stack([c, z, s], -1), jnp.stack([z, o, z], -1), jnp.stack([-s, z, c], -1)], -2)


def _matrix_x(angle):
    c, s = jnp.cos(angle), jnp.sin(angle)
    o, z = jnp.ones_like(angle), jnp.zeros_like(angle)
    return jnp.stack([jnp.stack([o, z, z], -1), jnp.stack([z, c, -s], -1), jnp.stack([z, s, c], -1)], -2)


def angles_to_matrix(alpha, beta, gamma) -> jax.Array:
    """``Ry(alpha) @ Rx(beta) @ Ry(gamma)``, shape ``(..., 3, 3)``."""
    alpha, beta, gamma = _floats(alpha, beta, gamma)
    return _matrix_y(alpha) @ _matrix_x(beta) @ _matrix_y(gamma)


def angles_to_xyz(alpha, beta) -> jax.Array:
    """The point ``R(alpha, beta, 0) e_y = (sin b sin a, cos b, sin b cos a)`` on the sphere, ``(..., 3)``."""
    alpha, beta = _floats(alpha, beta)
    return jnp.stack([jnp.sin(beta) * jnp.sin(alpha), jnp.cos(beta), jnp.sin(beta) * jnp.cos(alpha)], -1)


def xyz_to_angles(xyz) -> tuple:
    """``(alpha, beta)`` of the direction ``xyz (..., 3)`` (y is the polar axis): ``beta = acos(y/|xyz|)``."""
    (xyz,) = _floats(xyz)
    x, y, z = xyz[..., 0], xyz[..., 1], xyz[..., 2]
    beta = jnp.pi / 2 - jnp.arctan2(y, jnp.hypot(x, z))
    return jnp.arctan2(x, z), beta


def matrix_to_angles(R) -> tuple:
    """Y-X-Y angles ``(alpha, beta, gamma)`` of proper rotations ``R (..., 3, 3)`` (no det check under jit)."""
    (R,) = _floats(R)
    alpha, beta = xyz_to_angles(R[..., :, 1])  # R @ e_y
    Rab = angles_to_matrix(alpha, beta, jnp.zeros_like(alpha))
    # R' = R(alpha, beta, 0)^T R = Ry(gamma): its first row gives gamma.
    r00 = jnp.sum(Rab[..., :, 0] * R[..., :, 0], -1)
    r02 = jnp.sum(Rab[..., :, 0] * R[..., :, 2], -1)
    return alpha, beta, jnp.arctan2(r02, r00)


def quaternion_to_matrix(q) -> jax.Array:
    """Rotation matrices ``(..., 3, 3)`` of quaternions ``q (..., 4)``, scalar first (need not be unit)."""
    (q,) = _floats(q)
    q = q / jnp.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    rows = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ]
    return jnp.stack([jnp.stack(row, -1) for row in rows], -2)


def axis_angle_to_matrix(axis, angle) -> jax.Array:
    """Rotation by ``angle (...)`` about ``axis (..., 3)`` (normalized here), shape ``(..., 3, 3)``."""
    axis, angle = _floats(axis, jnp.asarray(angle)[..., None])
    half = angle[..., 0] / 2
    n = axis / jnp.linalg.norm(axis, axis=-1, keepdims=True)
    return quaternion_to_matrix(jnp.concatenate([jnp.cos(half)[..., None], n * jnp.sin(half)[..., None]], -1))


def rand_matrix(key: jax.Array, shape: tuple = (), dtype=None) -> jax.Array:
    """Haar-random rotation matrices ``shape + (3, 3)``: ``alpha, gamma ~ U[0, 2pi)``, ``beta = acos(U[-1, 1])``."""
    dtype = dtype or jnp.zeros(()).dtype
    k1, k2, k3 = jax.random.split(key, 3)
    alpha = jax.random.uniform(k1, shape, dtype, 0, 2 * np.pi)
    beta = jnp.arccos(jax.random.uniform(k2, shape, dtype, -1, 1))
    gamma = jax.random.uniform(k3, shape, dtype, 0, 2 * np.pi)
    return angles_to_matrix(alpha, beta, gamma)


def _block_diagonal(blocks: list, dim: int) -> jax.Array:
    """``(..., dim, dim)`` with each ``D (..., d, d)`` of ``blocks = [(D, mul), ...]`` repeated ``mul`` times."""
    batch = blocks[0][0].shape[:-2]
    dtype = blocks[0][0].dtype
    out = jnp.zeros(batch + (dim, dim), dtype)
    offset = 0
    for D, mul in blocks:
        d = D.shape[-1]
        for _ in range(mul):
            out = out.at[..., offset : offset + d, offset : offset + d].set(D)
            offset += d
    return out


ROTATION_BACKEND = RotationBackend(
    name="jax",
    owns=lambda value: isinstance(value, jax.Array),
    as_angles=_floats,
    wigner_D=wigner_D,
    matrix_to_angles=matrix_to_angles,
    quaternion_to_angles=lambda q: matrix_to_angles(quaternion_to_matrix(q)),
    axis_angle_to_angles=lambda axis, angle: matrix_to_angles(axis_angle_to_matrix(axis, angle)),
    det_sign=lambda R: jnp.sign(jnp.linalg.det(R)),
    with_parity=lambda D, p, k: D * (float(p) ** k)[..., None, None].astype(D.dtype),
    block_diagonal=_block_diagonal,
)
register_rotation_backend(ROTATION_BACKEND)
