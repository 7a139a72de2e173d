"""eSCN SO(2) convolutions (``fastso3.so2``): FastSo3's API in the padded layout, edge frames and an
``SO2Convolution`` module on e3nn ``mul_ir`` features. See docs/so2.md.
"""

from ._conv import SO2_conv, SO2_conv_e, get_message
from ._layout import from_padded, get_mask, padded_irreps, to_padded
from ._module import SO2Convolution
from ._rotation import EdgeRotation, edge_rotation, rotate, rotate_back

__all__ = [
    "EdgeRotation",
    "SO2Convolution",
    "SO2_conv",
    "SO2_conv_e",
    "edge_rotation",
    "from_padded",
    "get_mask",
    "get_message",
    "padded_irreps",
    "rotate",
    "rotate_back",
    "to_padded",
]
