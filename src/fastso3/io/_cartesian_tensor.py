"""Cartesian tensors of 3-d vectors as irreps: ``CartesianTensor``, equal to e3nn 0.6.0's
(``e3nn/io/_cartesian_tensor.py``).

A ``CartesianTensor(formula)`` is the :class:`~fastso3.core.irreps.Irreps` of the tensors with
``formula``'s index symmetries, every index a vector (``1o``); its conversions use the change of
basis of :class:`fastso3.o3.ReducedTensorProducts` (e3nn's entries and signs, so that, e.g., the
``'ij=ji'`` stress and polarizability heads of mace-torch give e3nn's numbers).
"""

from __future__ import annotations

from typing import Optional

import torch

from ..core.irreps import Irreps
from ..o3._reduce import ReducedTensorProducts

__all__ = ["CartesianTensor"]


class CartesianTensor(Irreps):
    r"""The irreps of a Cartesian tensor with index symmetries (e3nn's ``io.CartesianTensor``).

    Args:
        formula: e.g. ``'ij=ji'`` (symmetric matrix: ``1x0e+1x2e``), ``'ij=-ji'`` (``1x1e``),
            ``'ijkl=jikl=klij'`` (elasticity tensor, 21 components); see :class:`~fastso3.o3.ReducedTensorProducts`.

    Attributes:
        formula: the formula; indices: its index letters (first index string).

    Shapes: a Cartesian tensor is ``(..., 3, ..., 3)`` (one axis of 3 per index), its irreps
    ``(..., self.dim)``, in the dtype and device of the data.
    """

    formula: str
    indices: str

    def __new__(cls, formula: str) -> "CartesianTensor":
        if not isinstance(formula, str):
            raise TypeError(f"formula must be a str such as 'ij=ji', got {type(formula).__name__}")
        indices = formula.split("=")[0].replace("-", "")
        rtp = ReducedTensorProducts(formula, **{i: "1o" for i in indices})
        out = super().__new__(cls, rtp.irreps_out)
        out.formula = formula
        out.indices = indices
        return out

    def __getnewargs__(self):  # pickling rebuilds from the formula (tuple pickling would pass the irreps)
        return (self.formula,)

    def _check_cartesian(self, data: torch.Tensor, name: str) -> None:
        n = len(self.indices)
        if not isinstance(data, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(data).__name__}")
        if data.dim() < n or tuple(data.shape[data.dim() - n :]) != (3,) * n:
            raise ValueError(f"{name} must have shape (..., {', '.join(['3'] * n)}) for {self.formula!r}, got {tuple(data.shape)}")

    def from_cartesian(self, data: torch.Tensor, rtp: Optional[ReducedTensorProducts] = None) -> torch.Tensor:
        """Cartesian ``(..., 3, ..., 3)`` -> irreps ``(..., self.dim)``: the projection on the symmetric
        subspace (the antisymmetric part of an ``'ij=ji'`` tensor is dropped)."""
        self._check_cartesian(data, "data")
        if rtp is None:
            rtp = self.reduced_tensor_products(data)
        n = len(self.indices)
        return data.flatten(-n) @ rtp.change_of_basis.flatten(-n).T

    def from_vectors(self, *xs: torch.Tensor, rtp: Optional[ReducedTensorProducts] = None) -> torch.Tensor:
        """Irreps ``(..., self.dim)`` of ``x_1 (x) x_2 (x) ...``, each ``x_k`` ``(..., 3)``."""
        if not xs:
            raise TypeError(f"from_vectors needs {len(self.indices)} vectors")
        if rtp is None:
            rtp = self.reduced_tensor_products(xs[0])
        return rtp(*xs)

    def to_cartesian(self, data: torch.Tensor, rtp: Optional[ReducedTensorProducts] = None) -> torch.Tensor:
        """Irreps ``(..., self.dim)`` -> Cartesian ``(..., 3, ..., 3)``, the inverse of :meth:`from_cartesian`
        on tensors with the formula's symmetries."""
        if not isinstance(data, torch.Tensor):
            raise TypeError(f"data must be a torch.Tensor, got {type(data).__name__}")
        if data.dim() == 0 or data.shape[-1] != self.dim:
            raise ValueError(f"data must have shape (..., {self.dim}) ({self}), got {tuple(data.shape)}")
        if rtp is None:
            rtp = self.reduced_tensor_products(data)
        Q = rtp.change_of_basis
        return (data @ Q.flatten(-len(self.indices))).reshape(*data.shape[:-1], *Q.shape[1:])

    def reduced_tensor_products(self, data: Optional[torch.Tensor] = None) -> ReducedTensorProducts:
        """A new :class:`~fastso3.o3.ReducedTensorProducts` of this formula (every index ``1o``), moved to
        the dtype and device of ``data`` if given (else torch's default dtype, CPU)."""
        rtp = ReducedTensorProducts(self.formula, **{i: "1o" for i in self.indices})
        if data is not None:
            rtp = rtp.to(device=data.device, dtype=data.dtype)
        return rtp
