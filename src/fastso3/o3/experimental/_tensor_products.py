"""``FullTensorProductv2`` and ``ElementwiseTensorProductv2`` of e3nn 0.6.0 (``e3nn/o3/experimental/``), as
fastso3 tensor-product plans (no new kernels).

They differ from :class:`~fastso3.o3.FullTensorProduct` / :class:`~fastso3.o3.ElementwiseTensorProduct`
only in their constructors: keyword-only options, ``irrep_normalization`` ``'component'`` (default) or
``'norm'``; the full product regroups (sorts and simplifies) its inputs when ``regroup_output``
(default True) and never simplifies them otherwise; the elementwise product does not simplify its
inputs and sorts its output irreps. ``forward(input1, input2)`` promotes the two inputs to a common
dtype and broadcasts their batch dimensions, as e3nn.

Differences from e3nn: the state dict holds no buffers (e3nn's constant ``cg_*`` buffers are
accepted and ignored when loading); inputs whose irreps repeat (``'0e+0e'``), which e3nn's
path dictionary mixes up or fails on, give the plain product of those irreps.
"""

from __future__ import annotations

from typing import Any

import torch

from ...core.irreps import Irreps
from ...core.tensor_product_builders import elementwise_tensor_product_spec, full_tensor_product_spec
from .._tensor_product import TensorProduct

__all__ = ["ElementwiseTensorProductv2", "FullTensorProductv2"]

_NORMALIZATIONS = ("component", "norm")


class _UnweightedProductv2(TensorProduct):
    """Shared by the v2 products: dtype promotion of the inputs and an empty state dict."""

    def __init__(self, spec: dict, irrep_normalization: str) -> None:
        if irrep_normalization not in _NORMALIZATIONS:
            raise ValueError(f"irrep_normalization={irrep_normalization!r} not supported: use one of {_NORMALIZATIONS}")
        super().__init__(**spec)
        # Constants only (an empty weight, the output mask): kept out of the state dict, as e3nn has none.
        self._non_persistent_buffers_set.update({"weight", "output_mask"})

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs):
        for key in [k for k in state_dict if k.startswith(prefix + "cg_")]:  # e3nn's Clebsch-Gordan buffers
            del state_dict[key]
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs)

    def _promoted_forward(self, input1: torch.Tensor, input2: torch.Tensor) -> torch.Tensor:
        """``(..., irreps_in1.dim) x (..., irreps_in2.dim) -> (..., irreps_out.dim)``; the inputs are promoted to
        their common dtype (which must be the module's)."""
        if isinstance(input1, torch.Tensor) and isinstance(input2, torch.Tensor):
            dtype = torch.promote_types(input1.dtype, input2.dtype)
            input1, input2 = input1.to(dtype), input2.to(dtype)
        return TensorProduct.forward(self, input1, input2)


class FullTensorProductv2(_UnweightedProductv2):
    """Every product ``x_u (x) y_v`` (unweighted), output irreps sorted, not simplified (e3nn's
    ``o3.experimental.FullTensorProductv2``). ``(..., in1.dim) x (..., in2.dim) -> (..., out.dim)``.

    With ``regroup_output`` (default) the module's ``irreps_in1`` / ``irreps_in2`` are the regrouped
    input irreps, and the inputs must be laid out in that order.
    """

    def __init__(
        self,
        irreps_in1: Any,
        irreps_in2: Any,
        *,
        filter_ir_out: Any = None,
        irrep_normalization: str = "component",
        regroup_output: bool = True,
    ) -> None:
        irreps_in1, irreps_in2 = Irreps(irreps_in1), Irreps(irreps_in2)
        if regroup_output:
            irreps_in1, irreps_in2 = irreps_in1.regroup(), irreps_in2.regroup()
        spec = full_tensor_product_spec(irreps_in1, irreps_in2, filter_ir_out, irrep_normalization)
        super().__init__(spec, irrep_normalization)
        self.irreps_in1, self.irreps_in2 = irreps_in1, irreps_in2  # as given (the plan's are simplified)

    # One forward per class, as e3nn: torch.compile counts recompilations (limit 8) per code object.
    def forward(self, input1: torch.Tensor, input2: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """``(..., irreps_in1.dim) x (..., irreps_in2.dim) -> (..., irreps_out.dim)`` (see the module docstring)."""
        return self._promoted_forward(input1, input2)


class ElementwiseTensorProductv2(_UnweightedProductv2):
    """``z_u = x_u (x) y_u`` (unweighted), inputs split so their multiplicities align (same number of
    irreps), output irreps sorted (e3nn's ``o3.experimental.ElementwiseTensorProductv2``).
    ``(..., in1.dim) x (..., in2.dim) -> (..., out.dim)``."""

    def __init__(
        self,
        irreps_in1: Any,
        irreps_in2: Any,
        *,
        filter_ir_out: Any = None,
        irrep_normalization: str = "component",
    ) -> None:
        spec = elementwise_tensor_product_spec(irreps_in1, irreps_in2, filter_ir_out, irrep_normalization)
        irreps_out, p, _ = spec["irreps_out"].sort()  # e3nn's v2 sorts the outputs (its v1 does not)
        spec["irreps_out"] = irreps_out
        spec["instructions"] = [(i1, i2, p[i_out], *rest) for i1, i2, i_out, *rest in spec["instructions"]]
        super().__init__(spec, irrep_normalization)

    # One forward per class, as e3nn: torch.compile counts recompilations (limit 8) per code object.
    def forward(self, input1: torch.Tensor, input2: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """``(..., irreps_in1.dim) x (..., irreps_in2.dim) -> (..., irreps_out.dim)`` (see the module docstring)."""
        return self._promoted_forward(input1, input2)
