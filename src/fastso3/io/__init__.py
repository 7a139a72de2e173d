"""e3nn-style ``io``: ``from fastso3 import io`` replaces ``from e3nn import io`` (e3nn 0.6.0's numbers and layouts).

* :class:`CartesianTensor` - the irreps of a Cartesian tensor with index symmetries (``'ij=ji'``), and its conversions.
* :class:`SphericalTensor` - the irreps of a signal on the sphere, with tools to build, sample and plot it.
"""

from ._cartesian_tensor import CartesianTensor
from ._spherical_tensor import SphericalTensor

__all__ = [
    "CartesianTensor",
    "SphericalTensor",
]
