"""``BatchNorm``: irreps-aware batch (or instance) normalisation, as ``e3nn.nn.BatchNorm``."""

from __future__ import annotations

from typing import Any

import torch

from ..core.irreps import Irreps
from ._util import copy_index, entries, per_copy_reduce

__all__ = ["BatchNorm"]


class BatchNorm(torch.nn.Module):
    r"""Batch normalisation of irreps features by the norm of each copy (equivariant).

    Shapes and dtypes: ``(batch, ..., irreps.dim) -> (batch, ..., irreps.dim)``, in the input's dtype
    (at least 2 dimensions; the middle axes are "samples").

    With ``x`` seen as ``(batch, sample, dim)``:

    * only ``0e`` copies are centred: by their mean over batch and samples in training (running
      mean updated), by ``running_mean`` in evaluation, by their per-batch-element mean over samples
      with ``instance=True``;
    * each copy's "variance" is the component mean (``normalization='component'``) or sum
      (``'norm'``) of its squared (centred) components, reduced over samples by ``reduce``
      (``'mean'`` or ``'max'``), then averaged over the batch (not with ``instance``); in evaluation
      it is ``running_var``. No unbiased correction (as e3nn);
    * running statistics follow ``new = (1 - momentum) old + momentum batch_value`` (``running_mean``
      one entry per ``0e`` copy, zeros; ``running_var`` one per copy, ones);
    * output ``x (var + eps)^{-1/2} weight + bias`` (``weight`` per copy, ``bias`` per ``0e`` copy,
      with ``affine``; ``bias`` only if ``include_bias``).

    Parameter and buffer names, shapes and values are those of e3nn, so state dicts load both ways.
    With ``instance=True`` there are no running statistics (``running_mean``/``running_var`` are None).

    Raises:
        ValueError: unknown ``reduce``/``normalization``, a bad ``eps``/``momentum``, or (in forward)
            an input whose last dimension is not ``irreps.dim`` or with fewer than 2 dimensions.
    """

    def __init__(
        self,
        irreps: Any,
        eps: float = 1e-5,
        momentum: float = 0.1,
        affine: bool = True,
        reduce: str = "mean",
        instance: bool = False,
        include_bias: bool = True,
        normalization: str = "component",
    ) -> None:
        super().__init__()
        if reduce not in ("mean", "max"):
            raise ValueError(f"reduce needs to be 'mean' or 'max', got {reduce!r}")
        if normalization not in ("norm", "component"):
            raise ValueError(f"normalization needs to be 'norm' or 'component', got {normalization!r}")
        if not eps >= 0:
            raise ValueError(f"eps must be >= 0, got {eps}")
        if not 0 <= momentum <= 1:
            raise ValueError(f"momentum must be in [0, 1], got {momentum}")
        self.irreps = Irreps(irreps)
        self.eps = eps
        self.momentum = momentum
        self.affine = affine
        self.instance = instance
        self.include_bias = include_bias
        self.reduce = reduce
        self.normalization = normalization

        num_scalar = sum(mul for mul, ir in self.irreps if ir.is_scalar())
        num_features = self.irreps.num_irreps
        if instance:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
        else:
            self.register_buffer("running_mean", torch.zeros(num_scalar))
            self.register_buffer("running_var", torch.ones(num_features))
        if affine:
            self.weight = torch.nn.Parameter(torch.ones(num_features))
            if include_bias:
                self.bias = torch.nn.Parameter(torch.zeros(num_scalar))
        else:
            self.register_parameter("weight", None)
            if include_bias:
                self.register_parameter("bias", None)

        self._dim = self.irreps.dim
        self._num_scalar = num_scalar
        self._entries = entries(self.irreps)
        positions = [sl.start + k for (mul, ir), sl in zip(self.irreps, self.irreps.slices()) if ir.is_scalar() for k in range(mul)]
        self.register_buffer("_scalar_pos", torch.tensor(positions, dtype=torch.long), persistent=False)
        self.register_buffer("_copy_index", copy_index(self.irreps), persistent=False)

    def extra_repr(self) -> str:
        return f"{self.irreps}, eps={self.eps}, momentum={self.momentum}"

    def _scatter_scalars(self, values: torch.Tensor) -> torch.Tensor:
        """``(..., num_scalar) -> (..., dim)``: the values at the 0e positions, zeros elsewhere."""
        full = values.new_zeros(values.shape[:-1] + (self._dim,))
        return full.index_copy(-1, self._scalar_pos, values)

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002  (e3nn's name)
        if input.dim() < 2 or input.shape[-1] != self._dim:
            raise ValueError(f"BatchNorm: expected an input (batch, ..., {self._dim}), got shape {tuple(input.shape)}")
        state = next((t for t in (self.running_var, getattr(self, "weight", None)) if t is not None), None)
        if state is not None and input.dtype != state.dtype:
            raise TypeError(
                f"BatchNorm: the input is {input.dtype} but the module is {state.dtype}; convert one of them "
                f"(module.to({input.dtype}))"
            )
        if input.numel() == 0:  # no samples: nothing to normalise, and no statistics to update (a mean of none is NaN)
            return input.clone()
        orig_shape = input.shape
        batch = input.shape[0]
        x = input.reshape(batch, -1, self._dim)  # (batch, sample, dim)
        use_batch_stats = self.training or self.instance
        update = self.training and not self.instance

        new_mean = None
        if self._num_scalar > 0:
            if use_batch_stats:
                xs = x.index_select(-1, self._scalar_pos)
                if self.instance:
                    mean = xs.mean(1)  # (batch, num_scalar)
                else:
                    mean = xs.mean([0, 1])  # (num_scalar,)
                    new_mean = (1 - self.momentum) * self.running_mean + self.momentum * mean.detach()
            else:
                mean = self.running_mean
            mean_full = self._scatter_scalars(mean)
            x = x - (mean_full.unsqueeze(1) if self.instance else mean_full)

        new_var = None
        if use_batch_stats:
            var = per_copy_reduce(x * x, self._entries, mean=self.normalization == "component")  # (b, s, copies)
            var = var.mean(1) if self.reduce == "mean" else var.max(1).values  # (batch, copies)
            if not self.instance:
                var = var.mean(0)  # (copies,)
                new_var = (1 - self.momentum) * self.running_var + self.momentum * var.detach()
        else:
            var = self.running_var

        scale = (var + self.eps).pow(-0.5)
        if self.affine:
            scale = scale * self.weight
        scale_full = scale.index_select(-1, self._copy_index)
        out = x * (scale_full.unsqueeze(1) if self.instance else scale_full)
        if self.affine and self.include_bias and self._num_scalar > 0:
            out = out + self._scatter_scalars(self.bias)

        if update:
            with torch.no_grad():
                if new_mean is not None:
                    self.running_mean.copy_(new_mean)
                if new_var is not None:
                    self.running_var.copy_(new_var)
        return out.reshape(orig_shape)
