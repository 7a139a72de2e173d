"""e3nn 0.6.0's ``e3nn.nn.models.v2104``: ``voxel_convolution`` (import it explicitly, as in e3nn, or by
attribute access)."""

from .. import _lazy_submodules

_SUBMODULES = ("voxel_convolution",)

__all__ = list(_SUBMODULES)

__getattr__ = _lazy_submodules(__name__, _SUBMODULES)
