"""Public low-level ops (validated wrappers around the registered ``torch.library`` ops)."""

from __future__ import annotations

import torch

from .kernels import registry
from .kernels.ops import sparse_accumulate_op

__all__ = ["sparse_accumulate"]


def _check_index(name: str, idx: torch.Tensor, nnz: int, bound: int, device: torch.device) -> None:
    if not isinstance(idx, torch.Tensor) or idx.dtype != torch.int64 or idx.ndim != 1:
        raise TypeError(f"{name} must be a 1-D int64 tensor, got {getattr(idx, 'dtype', type(idx))}")
    if idx.numel() != nnz:
        raise ValueError(f"{name} has {idx.numel()} entries but multipliers has {nnz}")
    if idx.device != device:
        raise ValueError(f"{name} is on {idx.device}, expected {device}")
    # Range checks read the data (a device sync), so they run in eager mode only.
    if nnz and not torch.compiler.is_compiling():
        lo, hi = int(idx.min()), int(idx.max())
        if lo < 0 or hi >= bound:
            raise IndexError(f"{name} has values in [{lo}, {hi}], outside [0, {bound})")


def sparse_accumulate(
    X1: torch.Tensor,
    X2: torch.Tensor,
    idx_output: torch.Tensor,
    output_size: int,
    idx_1: torch.Tensor,
    idx_2: torch.Tensor,
    multipliers: torch.Tensor,
    *,
    backend: str | None = None,
) -> torch.Tensor:
    """Sparse accumulation: ``out[..., idx_output[k]] += X1[..., idx_1[k]] * X2[..., idx_2[k]] * multipliers[k]``.

    Args:
        X1: ``(..., n1)`` float32 or float64.
        X2: ``(..., n2)``, same leading shape, dtype and device as ``X1``.
        idx_output, idx_1, idx_2: ``(nnz,)`` int64, in ``[0, output_size)``, ``[0, n1)``, ``[0, n2)``.
        output_size: size of the last output dimension.
        multipliers: ``(nnz,)`` constants (no gradient), cast to ``X1``'s dtype.
        backend: None (device default), ``'cpu'`` or ``'reference'``; see ``fastso3.kernels.registry``.

    Returns:
        ``(..., output_size)``, differentiable to any order in ``X1`` and ``X2``.
    """
    for name, x in (("X1", X1), ("X2", X2)):
        if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.ndim == 0:
            raise TypeError(f"{name} must be a floating-point tensor with at least one dimension")
    if X1.shape[:-1] != X2.shape[:-1]:
        raise ValueError(f"X1 {tuple(X1.shape)} and X2 {tuple(X2.shape)} must have the same leading dimensions")
    if X1.dtype != X2.dtype or X1.device != X2.device:
        raise TypeError(f"X1 ({X1.dtype}, {X1.device}) and X2 ({X2.dtype}, {X2.device}) must match in dtype and device")
    if isinstance(output_size, bool) or not isinstance(output_size, int) or output_size < 0:
        raise ValueError(f"output_size must be a non-negative int, got {output_size!r}")
    if not isinstance(multipliers, torch.Tensor) or multipliers.ndim != 1:
        raise TypeError("multipliers must be a 1-D tensor")
    if multipliers.requires_grad:
        raise ValueError("multipliers are constants; gradients with respect to them are not supported")
    nnz = multipliers.numel()
    _check_index("idx_output", idx_output, nnz, output_size, X1.device)
    _check_index("idx_1", idx_1, nnz, X1.shape[-1], X1.device)
    _check_index("idx_2", idx_2, nnz, X2.shape[-1], X1.device)
    backend = registry.resolve_backend("sparse_accumulate", backend, X1.device, X1.dtype)
    mult = multipliers.to(device=X1.device, dtype=X1.dtype)
    return sparse_accumulate_op(X1, X2, idx_output, idx_1, idx_2, mult, output_size, backend)
