"""``NormActivation``: a nonlinearity of the norm of each irrep copy (``e3nn.nn.NormActivation``)."""

from __future__ import annotations

from typing import Any, Callable, Optional

import torch

from ..core.irreps import Irreps
from ._util import IgnoreE3nnKeys, copy_index, entries, per_copy_reduce

__all__ = ["NormActivation"]


class NormActivation(IgnoreE3nnKeys, torch.nn.Module):
    r"""Scale each irrep copy by a scalar nonlinearity of its norm.

    Shapes and dtypes: ``(..., irreps_in.dim) -> (..., irreps_in.dim)``, in the input's dtype;
    ``irreps_out == irreps_in``.

    Per copy ``x_u``: ``n_u = ||x_u||`` (Euclidean norm of the ``2l+1`` components), then

    * ``normalize=True`` (default): ``n_u`` is clamped below at ``epsilon`` (default 1e-8; e3nn clamps
      ``n_u^2`` at ``epsilon^2``, which is the same), and the output is ``phi(n_u + b_u) x_u / n_u``;
    * ``normalize=False``: the output is ``phi(n_u + b_u) x_u`` with the exact norm (no clamp).

    ``phi`` is *not* moment-normalised (as e3nn). ``b`` (``biases``, one per copy, zero-initialised)
    exists only with ``bias=True``.

    Fix of an e3nn 0.6.0 bug: there, ``normalize=False`` with the default ``epsilon=None`` raises
    ``TypeError`` (``None > 0``), so that mode cannot be built at all. Here it works and computes the
    formula above; its norm uses a safe square root (value ``||x_u||``, gradient 0 at ``x_u = 0``
    instead of NaN). As in e3nn, giving ``epsilon`` together with ``normalize=False`` is a ValueError.

    e3nn state dicts load directly (the parameter-free ``norm.tp.*`` and ``scalar_multiplier.*``
    entries of e3nn's internal products are ignored).

    Args:
        irreps_in: the input irreps.
        scalar_nonlinearity: an elementwise function, e.g. ``torch.sigmoid``.
        normalize: divide by the norm (see above).
        epsilon: the norm clamp when normalising (> 0); must be None when ``normalize=False``.
        bias: add a learnable per-copy bias to the norm before ``phi``.
    """

    _e3nn_ignored_keys = (
        "norm.tp.weight",
        "norm.tp.output_mask",
        "scalar_multiplier.weight",
        "scalar_multiplier.output_mask",
    )
    epsilon: Optional[float]
    _eps_squared: float

    def __init__(
        self,
        irreps_in: Any,
        scalar_nonlinearity: Callable,
        normalize: bool = True,
        epsilon: Optional[float] = None,
        bias: bool = False,
    ) -> None:
        super().__init__()
        self.irreps_in = Irreps(irreps_in)
        self.irreps_out = Irreps(irreps_in)
        if not callable(scalar_nonlinearity):
            raise TypeError(f"scalar_nonlinearity must be callable, got {scalar_nonlinearity!r}")
        if epsilon is None and normalize:
            epsilon = 1e-8
        elif epsilon is not None and not normalize:
            raise ValueError("epsilon and normalize = False don't make sense together")
        if epsilon is not None and not epsilon > 0:
            raise ValueError(f"epsilon {epsilon} is invalid, must be strictly positive.")
        self.epsilon = epsilon
        self._eps_squared = epsilon * epsilon if epsilon is not None else 0.0
        self.scalar_nonlinearity = scalar_nonlinearity
        self.normalize = bool(normalize)
        self.bias = bool(bias)
        if self.bias:
            self.biases = torch.nn.Parameter(torch.zeros(self.irreps_in.num_irreps))
        self._entries = entries(self.irreps_in)
        self.register_buffer("_copy_index", copy_index(self.irreps_in), persistent=False)

    def extra_repr(self) -> str:
        return f"{self.irreps_in}, normalize={self.normalize}, epsilon={self.epsilon}, bias={self.bias}"

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if features.shape[-1] != self.irreps_in.dim:
            raise ValueError(f"NormActivation: expected a last dimension of {self.irreps_in.dim}, got {features.shape[-1]}")
        n2 = per_copy_reduce(features * features, self._entries, mean=False)  # (..., num_irreps)
        if self.epsilon is not None:
            norms = torch.clamp(n2, min=self._eps_squared).sqrt()
        else:
            positive = n2 > 0
            norms = torch.where(positive, torch.where(positive, n2, torch.ones_like(n2)).sqrt(), torch.zeros_like(n2))
        arg = norms + self.biases if self.bias else norms
        scalings = self.scalar_nonlinearity(arg)
        if self.normalize:
            scalings = scalings / norms
        return features * scalings.index_select(-1, self._copy_index)
