"""Equivariant linear layer with e3nn 0.6.0's constructor, numbers, weight layout and state dict."""

from __future__ import annotations

from typing import Any, Iterator, NamedTuple, Optional, Sequence, Union

import torch

from ..core.irreps import Irreps
from ..core.tensor_product import LinearPlan, linear_plan
from ..kernels.reference.tensor_product import linear
from ._tensor_product import MissingWeightError, _drop_e3nn_codegen_keys

__all__ = ["Linear", "LinearSlices"]


class LinearSlices(NamedTuple):
    """Where one instruction's block lies: ``slice_1D`` of the flat vector, reshaped to ``shape_2D``."""

    slice_1D: slice
    shape_2D: tuple


class Linear(torch.nn.Module):
    r"""Equivariant linear map between irreps features (e3nn's ``o3.Linear``).

    ``forward(features, weight=None, bias=None)``:

    * ``features``: ``(..., irreps_in.dim)``, or ``(..., f_in, irreps_in.dim)`` with ``f_in``;
      float32 or float64;
    * ``weight`` (required without internal weights, else it replaces ``.weight``, e3nn's rule):
      ``([f_in, f_out,] weight_numel)`` if ``shared_weights``, else ``(..., [f_in, f_out,] weight_numel)``
      (batch dimensions broadcast);
    * ``bias`` (likewise): ``([f_out,] bias_numel)`` or ``(..., [f_out,] bias_numel)``;
    * returns ``(..., irreps_out.dim)`` or ``(..., f_out, irreps_out.dim)``.

    For each instruction ``(i_in, i_out)`` (equal irreps), ``z_w += c * sum_u W[u, w] x_u`` with
    ``W`` a row-major ``(mul_in, mul_out)`` block of the flat weight vector and ``c = 1 / sqrt(sum of
    mul_in over the instructions into the same output)`` ('element') or ``1 / sqrt(mul_in * number
    of those instructions)`` ('path'); ``f_in`` multiplies the quantity under the root. Biases (0e
    outputs only) are added with coefficient 1.

    Args:
        irreps_in, irreps_out: irreps of the input and output.
        f_in, f_out: optional feature axes (both or neither).
        internal_weights: store ``weight`` (randn) and ``bias`` (zeros) as Parameters; default True
            unless ``shared_weights=False``.
        shared_weights: default True; False means per-sample weights passed to ``forward``.
        instructions: ``(i_in, i_out)`` pairs; default every pair with equal irreps (``i_in`` outer).
        biases: a bool (bias on every 0e output) or one bool per output entry.
        path_normalization: 'element' (default) or 'path'.

    Attributes:
        plan (:class:`~fastso3.core.tensor_product.LinearPlan`), irreps_in, irreps_out, instructions
        (e3nn's, biases last with ``i_in=-1``), weight_numel, bias_numel, weight_index_slices,
        shared_weights, internal_weights, output_mask (buffer).
    """

    def __init__(
        self,
        irreps_in: Any,
        irreps_out: Any,
        *,
        f_in: Optional[int] = None,
        f_out: Optional[int] = None,
        internal_weights: Optional[bool] = None,
        shared_weights: Optional[bool] = None,
        instructions: Optional[Sequence[tuple]] = None,
        biases: Union[bool, Sequence[bool]] = False,
        path_normalization: str = "element",
        _optimize_einsums: Optional[bool] = None,
    ) -> None:
        super().__init__()
        plan = linear_plan(
            irreps_in, irreps_out, instructions=instructions, biases=biases, path_normalization=path_normalization, f_in=f_in, f_out=f_out
        )
        if shared_weights is False and internal_weights is None:
            internal_weights = False
        if shared_weights is None:
            shared_weights = True
        if internal_weights is None:
            internal_weights = True
        if internal_weights and not shared_weights:
            raise ValueError("internal_weights=True requires shared_weights=True")
        self.plan: LinearPlan = plan
        self.irreps_in: Irreps = plan.irreps_in
        self.irreps_out: Irreps = plan.irreps_out
        self.instructions = list(plan.instructions)
        self.weight_numel = plan.weight_numel
        self.bias_numel = plan.bias_numel
        self.shared_weights = bool(shared_weights)
        self.internal_weights = bool(internal_weights)
        self.f_in, self.f_out = plan.f_in, plan.f_out
        feature_w = (plan.f_in, plan.f_out) if plan.f_in is not None else ()
        feature_b = (plan.f_out,) if plan.f_out is not None else ()
        self._weight_shape = (*feature_w, plan.weight_numel)
        self._bias_shape = (*feature_b, plan.bias_numel)

        if self.internal_weights and self.weight_numel > 0:
            self.weight = torch.nn.Parameter(torch.randn(*self._weight_shape))
        else:
            self.register_buffer("weight", torch.Tensor())
        if self.internal_weights and self.bias_numel > 0:
            self.bias = torch.nn.Parameter(torch.zeros(*self._bias_shape))
        else:
            self.register_buffer("bias", torch.Tensor())
        self.register_buffer("output_mask", torch.tensor(plan.output_mask, dtype=torch.get_default_dtype()))

        # As e3nn: one entry per instruction (biases included), offsets accumulated over all of them.
        self.weight_index_slices = []
        offset = 0
        for ins in self.instructions:
            n = 1
            for s in ins.path_shape:
                n *= s
            self.weight_index_slices.append(LinearSlices(slice(offset, offset + n, None), ins.path_shape))
            offset += n

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.irreps_in} -> {self.irreps_out} | {self.weight_numel} weights)"

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs):
        _drop_e3nn_codegen_keys(state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs)

    def _external(self, value: Optional[torch.Tensor], name: str, numel: int, shape: tuple, dtype: torch.dtype) -> torch.Tensor:
        internal = self.weight if name == "weight" else self.bias
        if value is None:
            if numel > 0 and not self.internal_weights:
                raise MissingWeightError(
                    f"{self.__class__.__name__} has no internal weights: pass {name} of shape {self._shape_text(shape)}"
                )
            value = internal
        else:  # also with internal weights: an explicit value replaces the parameter (e3nn's rule)
            if not isinstance(value, torch.Tensor):
                raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
            if numel > 0:
                if self.shared_weights:
                    ok = tuple(value.shape) == shape
                else:
                    ok = value.dim() > len(shape) and tuple(value.shape[value.dim() - len(shape) :]) == shape
                if not ok:
                    raise ValueError(f"{name} must have shape {self._shape_text(shape)}, got {tuple(value.shape)}")
        if numel > 0 and value.dtype != dtype:
            raise TypeError(f"{name} is {value.dtype} but the features are {dtype}")
        return value

    def _shape_text(self, shape: tuple) -> str:
        return str(shape) if self.shared_weights else "(..., " + ", ".join(map(str, shape)) + ")"

    def forward(self, features: torch.Tensor, weight: Optional[torch.Tensor] = None, bias: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``(..., [f_in,] irreps_in.dim) -> (..., [f_out,] irreps_out.dim)``; see the class docstring."""
        if not isinstance(features, torch.Tensor):
            raise TypeError(f"features must be a torch.Tensor, got {type(features).__name__}")
        d_in = self.irreps_in.dim
        if self.f_in is None:
            if features.dim() == 0 or features.shape[-1] != d_in:
                raise ValueError(f"features must have shape (..., {d_in}), got {tuple(features.shape)}")
        elif features.dim() < 2 or features.shape[-1] != d_in or features.shape[-2] != self.f_in:
            raise ValueError(f"features must have shape (..., {self.f_in}, {d_in}), got {tuple(features.shape)}")
        if self.output_mask.dtype != features.dtype:
            raise TypeError(
                f"the features are {features.dtype} but {self.__class__.__name__} is {self.output_mask.dtype}; "
                f"convert one of them (module.to({features.dtype}))"
            )
        w = self._external(weight, "weight", self.weight_numel, self._weight_shape, features.dtype)
        b = self._external(bias, "bias", self.bias_numel, self._bias_shape, features.dtype)
        return linear(self.plan, features, w, b, self.shared_weights)

    def _weight_for_views(self, weight: Optional[torch.Tensor]) -> torch.Tensor:
        if weight is None:
            if not self.internal_weights and self.weight_numel > 0:
                raise ValueError("weights must be provided when internal_weights = False")
            return self.weight
        if weight.shape[-1] != self.weight_numel:
            raise ValueError(f"weight must have shape (..., {self.weight_numel}), got {tuple(weight.shape)}")
        return weight

    def weight_view_for_instruction(self, instruction: int, weight: Optional[torch.Tensor] = None) -> torch.Tensor:
        """View ``(...) + (mul_in, mul_out)`` of the weights of instruction ``instruction``.

        Raises ValueError for a bias instruction (``i_in == -1``; biases live in ``.bias``).
        """
        ins = self.instructions[instruction]
        if ins.i_in == -1:
            raise ValueError(f"Instruction {instruction} is a bias; its values are in .bias")
        weight = self._weight_for_views(weight)
        s = self.plan.weight_slices[sum(1 for j in self.instructions[:instruction] if j.i_in != -1)]
        return weight.narrow(-1, s.start, s.stop - s.start).view(*weight.shape[:-1], *ins.path_shape)

    def weight_views(self, weight: Optional[torch.Tensor] = None, yield_instruction: bool = False) -> Iterator[Any]:
        """Views ``(...) + (mul_in, mul_out)`` of the weights of each (non-bias) instruction, in order.

        Yields ``(instruction_index, instruction, view)`` with ``yield_instruction``, else ``view``.
        (e3nn 0.6.0 also walks the bias instructions, which fails when there are biases.)
        """
        weight = self._weight_for_views(weight)
        k = 0
        for i, ins in enumerate(self.instructions):
            if ins.i_in == -1:
                continue
            s = self.plan.weight_slices[k]
            k += 1
            view = weight.narrow(-1, s.start, s.stop - s.start).view(*weight.shape[:-1], *ins.path_shape)
            yield (i, ins, view) if yield_instruction else view
