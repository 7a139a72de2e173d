"""Default dtype and device helpers of ``e3nn.util.default_type`` (e3nn 0.6.0), same names and results."""

from __future__ import annotations

from typing import Optional, Tuple

import torch

__all__ = ["explicit_default_types", "torch_get_default_device", "torch_get_default_tensor_type"]


def torch_get_default_tensor_type() -> str:
    """The type string of a new tensor, e.g. ``'torch.FloatTensor'``."""
    return torch.empty(0).type()


def torch_get_default_device() -> torch.device:
    """The device new tensors are created on."""
    return torch.empty(0).device


def explicit_default_types(
    dtype: Optional[torch.dtype], device: Optional[torch.device]
) -> Tuple[torch.dtype, torch.device]:
    """``(dtype, device)`` with ``None`` replaced by torch's current defaults."""
    return (torch.get_default_dtype() if dtype is None else dtype, torch_get_default_device() if device is None else device)
