"""``Dropout``: equivariant dropout of whole irrep copies (``e3nn.nn.Dropout``)."""

from __future__ import annotations

from typing import Any

import torch

from ..core.irreps import Irreps
from ._util import copy_index

__all__ = ["Dropout"]


class Dropout(torch.nn.Module):
    r"""Drop whole irrep copies: ``out[z, ..., u] = x[z, ..., u] m[z, u] / (1 - p)``.

    Shapes and dtypes: ``(batch, ..., irreps.dim) -> (batch, ..., irreps.dim)``, in the input's
    dtype (at least 2 dimensions).

    In training, one Bernoulli(``1 - p``) variable ``m[z, u]`` is drawn per batch element ``z`` and
    irrep copy ``u`` (shared by the ``2l+1`` components of the copy, so equivariance holds, and by
    the middle axes), and kept copies are rescaled by ``1/(1 - p)`` so the expectation is preserved.
    ``p >= 1`` zeroes everything (``x * 0``); ``p <= 0`` and evaluation mode return ``x``.
    Randomness comes from torch's global generator (the draw order differs from e3nn's, which
    draws one ``(batch, mul)`` block per entry, so the masks for a given seed differ).

    Raises:
        ValueError: ``p`` not in ``[0, 1]``; in forward, an input with fewer than 2 dimensions or a
            last dimension other than ``irreps.dim``.
    """

    def __init__(self, irreps: Any, p: float) -> None:
        super().__init__()
        if not 0 <= p <= 1:
            raise ValueError(f"dropout probability must be in [0, 1], got {p}")
        self.irreps = Irreps(irreps)
        self.p = float(p)
        self._num_irreps = self.irreps.num_irreps
        self.register_buffer("_copy_index", copy_index(self.irreps), persistent=False)

    def extra_repr(self) -> str:
        return f"{self.irreps}, p={self.p}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 2 or x.shape[-1] != self.irreps.dim:
            raise ValueError(f"Dropout: expected an input (batch, ..., {self.irreps.dim}), got shape {tuple(x.shape)}")
        if not self.training or self.p <= 0:
            return x
        batch = x.shape[0]
        if self.p >= 1:
            noise = x.new_zeros(batch, self._num_irreps)
        else:
            noise = x.new_empty(batch, self._num_irreps).bernoulli_(1 - self.p).div_(1 - self.p)
        noise = noise.index_select(1, self._copy_index)  # (batch, dim)
        return x * noise.reshape((batch,) + (1,) * (x.dim() - 2) + (self.irreps.dim,))
