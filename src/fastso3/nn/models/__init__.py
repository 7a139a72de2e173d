"""e3nn 0.6.0's model zoo (``e3nn.nn.models``) on fastso3, module for module:

* :mod:`~fastso3.nn.models.gate_points_2101`, :mod:`~fastso3.nn.models.gate_points_2102`: ``Network``,
  ``Convolution`` and their helpers;
* :mod:`~fastso3.nn.models.v2103` and :mod:`~fastso3.nn.models.v2106`: ``points_convolution``,
  ``gate_points_message_passing`` and ``gate_points_networks`` (v2103 also ``conv_points_in_out`` and
  ``voxel_convolution``);
* :mod:`~fastso3.nn.models.v2104`: ``voxel_convolution``.

Not provided: ``v2203.sparse_voxel_convolution`` (it needs MinkowskiEngine).

Same constructor arguments, defaults, submodule and parameter names as e3nn, so e3nn state dicts load with
``strict=True`` and give e3nn's outputs. The graphs come from :mod:`fastso3.graph` (no ``torch_cluster`` /
``torch_scatter``). Submodules are imported on first access (``fastso3.nn.models.v2106``) or explicitly
(``import fastso3.nn.models.v2106.gate_points_networks``).
"""

import importlib

_SUBMODULES = ("gate_points_2101", "gate_points_2102", "v2103", "v2104", "v2106")

__all__ = list(_SUBMODULES)


def _lazy_submodules(package: str, submodules: tuple):
    """A module ``__getattr__`` that imports ``package.NAME`` on first access, for ``NAME`` in ``submodules``."""

    def __getattr__(name: str):
        if name in submodules:
            return importlib.import_module(f"{package}.{name}")
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__


__getattr__ = _lazy_submodules(__name__, _SUBMODULES)
