"""e3nn-style neural-network blocks: ``from fastso3 import nn`` replaces ``from e3nn import nn``.

Numerically equal to ``e3nn.nn`` 0.6.0 (same layouts, parameter names and initialisation; e3nn
state dicts load), written for ``torch.compile`` (no Python objects built in ``forward``):

* :class:`FullyConnectedNet` - bias-free MLP with second-moment normalisation;
* :class:`Activation`, :class:`Gate`, :class:`NormActivation` - equivariant nonlinearities;
* :class:`S2Activation`, :class:`SO3Activation` - pointwise nonlinearities of signals on S2 and SO(3);
* :class:`BatchNorm`, :class:`Dropout` - irreps-aware normalisation and dropout;
* :class:`Extract`, :class:`ExtractIr`, :class:`Identity` - plumbing;
* :class:`SymmetricContraction` - MACE's many-body product basis (not in e3nn; MACE's parameter layout).

Deviations from e3nn 0.6.0 (documented in each class): ``NormActivation(normalize=False)`` works
(e3nn raises TypeError); ``Gate`` computes the gated product exactly (e3nn's product carries a
``sqrt(d) / sqrt(d)`` rounding); ``Dropout`` draws its mask in one call (other random stream);
``Extract`` may return views.
"""

from ._activation import Activation, Gate
from ._batchnorm import BatchNorm
from ._dropout import Dropout
from ._extract import Extract, ExtractIr, Identity
from ._fc import FullyConnectedNet
from ._normact import NormActivation
from ._s2act import S2Activation
from ._so3act import SO3Activation
from ._symmetric_contraction import SymmetricContraction
from . import models  # e3nn.nn.models (its submodules load on first use)

__all__ = [
    "Activation",
    "BatchNorm",
    "Dropout",
    "Extract",
    "ExtractIr",
    "FullyConnectedNet",
    "Gate",
    "Identity",
    "NormActivation",
    "S2Activation",
    "SO3Activation",
    "SymmetricContraction",
]
