"""fastso3 for JAX: e3nn-jax 0.21.0's functional API on fastso3's numpy plans (imports jax and numpy, never torch).

``IrrepsArray`` (with ``None`` for chunks known to be zero), ``spherical_harmonics``, ``tensor_product``,
``elementwise_tensor_product``, ``tensor_square``, ``FunctionalTensorProduct`` / ``FunctionalFullyConnectedTensorProduct``
(``left_right(weights, x1, x2)``, composing with ``jax.vmap`` for shared weights, batch weights and extra
channel axes), ``FunctionalLinear`` and the layer ``Linear`` (``init``/``apply``), ``gate``,
``scalar_activation``, ``norm`` and ``soft_one_hot_linspace``. Every product is executed from the plans of
:mod:`fastso3.core` (the ones the torch front runs), so the two fronts give the same numbers. The seed's
spellings work too: ``IrrepsData.from_contiguous``, ``.contiguous``, ``.list``, ``full_tensor_product``;
``fastso3.jax.legacy`` holds the functional classes where e3nn-jax 0.21 keeps them.

Importing this module registers the jax rotation backend, so ``Irreps.D_from_*`` return jax arrays for jax
inputs (and for Python numbers when the torch front is not loaded). See docs/jax.md.
"""

from types import SimpleNamespace as _Namespace

from ..core.irreps import Irrep as Irrep
from ..core.irreps import Irreps as Irreps
from ._irreps_array import IrrepsArray as IrrepsArray
from ._irreps_array import IrrepsData as IrrepsData
from ._irreps_array import as_irreps_array as as_irreps_array
from ._irreps_array import concatenate as concatenate
from ._irreps_array import from_chunks as from_chunks
from ._irreps_array import zeros as zeros
from ._linear import FunctionalLinear as FunctionalLinear
from ._linear import Linear as Linear
from ._nn import gate as gate
from ._nn import norm as norm
from ._nn import normalize_function as normalize_function
from ._nn import normalspace as normalspace
from ._nn import scalar_activation as scalar_activation
from ._nn import soft_odd as soft_odd
from ._nn import soft_one_hot_linspace as soft_one_hot_linspace
from ._nn import sus as sus
from ._rotation import angles_to_matrix as angles_to_matrix
from ._rotation import matrix_to_angles as matrix_to_angles
from ._rotation import rand_matrix as rand_matrix
from ._rotation import wigner_D as wigner_D
from ._spherical_harmonics import sh as sh
from ._spherical_harmonics import spherical_harmonics as spherical_harmonics
from ._tensor_product import FunctionalFullyConnectedTensorProduct as FunctionalFullyConnectedTensorProduct
from ._tensor_product import FunctionalTensorProduct as FunctionalTensorProduct
from ._tensor_product import elementwise_tensor_product as elementwise_tensor_product
from ._tensor_product import full_tensor_product as full_tensor_product
from ._tensor_product import tensor_product as tensor_product
from ._tensor_product import tensor_square as tensor_square

legacy = _Namespace(FunctionalTensorProduct=FunctionalTensorProduct,
                    FunctionalFullyConnectedTensorProduct=FunctionalFullyConnectedTensorProduct)  # fmt: skip
"""``e3nn_jax.legacy``'s names."""

__all__ = [
    "Irrep", "Irreps", "IrrepsArray", "IrrepsData", "as_irreps_array", "concatenate", "from_chunks", "zeros",
    "FunctionalLinear", "Linear", "gate", "norm", "normalize_function", "normalspace", "scalar_activation",
    "soft_odd", "soft_one_hot_linspace", "sus", "angles_to_matrix", "matrix_to_angles", "rand_matrix",
    "wigner_D", "sh", "spherical_harmonics", "FunctionalFullyConnectedTensorProduct", "FunctionalTensorProduct",
    "elementwise_tensor_product", "full_tensor_product", "tensor_product", "tensor_square", "legacy",
]  # fmt: skip
