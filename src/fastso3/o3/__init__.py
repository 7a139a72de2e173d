"""e3nn-style namespace: ``from fastso3 import o3`` replaces ``from e3nn import o3``.

Irreps, rotations, Wigner D matrices, Clebsch-Gordan coefficients and spherical harmonics,
with e3nn 0.6.0's conventions (see docs/conventions.md).
"""

from ..core.cg import wigner_3j as _wigner_3j_numpy
from ..core.irreps import Irrep as Irrep
from ..core.irreps import Irreps as Irreps
from ._rotation import *  # noqa: F403  (the rotation helpers, listed in _rotation.__all__)
from ._rotation import __all__ as _rotation_all
from ._spherical_harmonics import SphericalHarmonics as SphericalHarmonics
from ._spherical_harmonics import spherical_harmonics as spherical_harmonics
from ._angular_spherical_harmonics import Legendre as Legendre
from ._angular_spherical_harmonics import SphericalHarmonicsAlphaBeta as SphericalHarmonicsAlphaBeta
from ._angular_spherical_harmonics import spherical_harmonics_alpha as spherical_harmonics_alpha
from ._angular_spherical_harmonics import spherical_harmonics_alpha_beta as spherical_harmonics_alpha_beta
from ._s2grid import FromS2Grid as FromS2Grid
from ._s2grid import ToS2Grid as ToS2Grid
from ._s2grid import irfft as irfft
from ._s2grid import rfft as rfft
from ._s2grid import s2_grid as s2_grid
from ._s2grid import spherical_harmonics_s2_grid as spherical_harmonics_s2_grid
from ._so3grid import SO3Grid as SO3Grid
from ._linear import Linear as Linear
from ._tensor_product import ElementwiseTensorProduct as ElementwiseTensorProduct
from ._tensor_product import FactoredWeight as FactoredWeight
from ._tensor_product import FullTensorProduct as FullTensorProduct
from ._tensor_product import FullyConnectedTensorProduct as FullyConnectedTensorProduct
from ._tensor_product import Instruction as Instruction
from ._tensor_product import Norm as Norm
from ._tensor_product import TensorProduct as TensorProduct
from ._tensor_product import TensorSquare as TensorSquare
from ._reduce import ReducedTensorProducts as ReducedTensorProducts
from . import experimental as experimental
from . import irrep as irrep
from .experimental import FullTensorProductv2 as FullTensorProductv2
from ._wigner import so3_generators as so3_generators
from ._wigner import su2_generators as su2_generators
from ._wigner import wigner_D as wigner_D
from ._wigner import wigner_D_from_axis_angle as wigner_D_from_axis_angle
from ._wigner import wigner_D_from_matrix as wigner_D_from_matrix
from ._wigner import wigner_D_from_quaternion as wigner_D_from_quaternion


def wigner_3j(l1: int, l2: int, l3: int, dtype=None, device=None, *, allow_large: bool = False):
    """Real Clebsch-Gordan coefficients ``(2l1+1, 2l2+1, 2l3+1)`` as a tensor, equal to ``e3nn.o3.wigner_3j``.

    ``dtype`` defaults to torch's default dtype; the values are computed once in float64 and cached.
    Tables of more than ``fastso3.core.limits.WIGNER_3J_MAX_ENTRIES`` entries (l ~ 62 each) raise
    ``TooLarge`` unless ``allow_large=True``: they take minutes.
    """
    import torch

    return torch.tensor(_wigner_3j_numpy(l1, l2, l3, allow_large=allow_large), dtype=dtype or torch.get_default_dtype(), device=device)


__all__ = [
    "Irrep",
    "Irreps",
    "ElementwiseTensorProduct",
    "FactoredWeight",
    "FullTensorProduct",
    "FullTensorProductv2",
    "ReducedTensorProducts",
    "irrep",
    "FullyConnectedTensorProduct",
    "Instruction",
    "Linear",
    "Norm",
    "TensorProduct",
    "TensorSquare",
    "SphericalHarmonics",
    "spherical_harmonics",
    "so3_generators",
    "su2_generators",
    "wigner_3j",
    "wigner_D",
    "wigner_D_from_axis_angle",
    "wigner_D_from_matrix",
    "wigner_D_from_quaternion",
    "Legendre",
    "SphericalHarmonicsAlphaBeta",
    "spherical_harmonics_alpha",
    "spherical_harmonics_alpha_beta",
    "s2_grid",
    "spherical_harmonics_s2_grid",
    "rfft",
    "irfft",
    "ToS2Grid",
    "FromS2Grid",
    "SO3Grid",
    *_rotation_all,
]
