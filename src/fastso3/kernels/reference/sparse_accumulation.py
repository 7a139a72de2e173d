"""Reference sparse accumulation: ``out[..., idx_out[k]] += x1[..., idx1[k]] * x2[..., idx2[k]] * mult[k]``."""

from __future__ import annotations

import torch


def sparse_accumulate(
    x1: torch.Tensor,
    x2: torch.Tensor,
    idx_out: torch.Tensor,
    idx1: torch.Tensor,
    idx2: torch.Tensor,
    mult: torch.Tensor,
    output_size: int,
) -> torch.Tensor:
    """x1: (..., n1), x2: (..., n2), index tensors and mult: (nnz,) -> (..., output_size)."""
    terms = x1[..., idx1] * x2[..., idx2] * mult
    out = terms.new_zeros(*terms.shape[:-1], output_size)
    return out.index_add_(-1, idx_out, terms)
