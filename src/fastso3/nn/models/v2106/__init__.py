"""e3nn 0.6.0's ``e3nn.nn.models.v2106``: ``points_convolution``, ``gate_points_message_passing``,
``gate_points_networks`` (import them explicitly, as in e3nn, or by attribute access)."""

from .. import _lazy_submodules

_SUBMODULES = ("points_convolution", "gate_points_message_passing", "gate_points_networks")

__all__ = list(_SUBMODULES)

__getattr__ = _lazy_submodules(__name__, _SUBMODULES)
