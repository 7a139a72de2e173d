"""fastso3: fast, exact E(3)/SO(3)-equivariant building blocks for PyTorch.

``fastso3.core`` (irreps, Clebsch-Gordan tables, plans) needs only numpy; everything that needs
torch (``o3``, ``ops``, ``testing`` and the names re-exported here) is imported on first use.
"""

import importlib

__version__ = "0.1.0"

_SUBMODULES = {"calculator", "compat", "core", "data", "functional", "graph", "io", "irreps_tensor", "jax", "kernels", "math", "models", "nn",
               "o3", "ops", "so2", "so3", "testing", "training", "util"}  # fmt: skip
_FROM_O3 = {"Irrep", "Irreps", "spherical_harmonics", "SphericalHarmonics", "wigner_3j", "wigner_D"}
_FROM_UTIL = {"get_optimization_defaults", "set_optimization_defaults"}  # e3nn's top-level switches


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    if name in _FROM_O3:
        return getattr(importlib.import_module(".o3", __name__), name)
    if name in _FROM_UTIL:
        return getattr(importlib.import_module(".util", __name__), name)
    if name == "sparse_accumulate":
        return importlib.import_module(".ops", __name__).sparse_accumulate
    if name == "IrrepsTensor":
        return importlib.import_module(".irreps_tensor", __name__).IrrepsTensor
    raise AttributeError(f"module 'fastso3' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_SUBMODULES, *_FROM_O3, *_FROM_UTIL, "sparse_accumulate", "IrrepsTensor"])
