"""Reduction of tensors with index symmetries into irreps: ``ReducedTensorProducts``, equal to e3nn 0.6.0's.

Source of the algorithm: e3nn 0.6.0, ``e3nn/o3/_reduce.py``. The change of basis is e3nn's entry for
entry (same irreps order, same signs), because it is built by the same steps:

1. the permutation basis ``P`` ``(d_sym, prod dims)`` of the formula (:func:`fastso3.math.reduce_permutation`);
2. the coupled bases: all chains ``((x1 (x) x2) -> ir) (x) x3 -> ir' ...`` of Clebsch-Gordan couplings
   (component normalization, ``sqrt(2 l_out + 1) C``), one per copy of each input irrep, sorted by
   output irrep (stable);
3. for each output irrep with ``u`` chains ``R`` (first component only): the null space of
   ``[[R R^T, -R P^T], [-P R^T, P P^T]]`` (``torch.linalg.eigh``, eigenvalues ``< eps``) gives the
   combinations ``x R`` lying in the span of ``P``; its projector on the chain coefficients is
   orthonormalised (:func:`fastso3.math.orthonormalize`: e3nn's signs) and each vector ``x`` gives
   one output irrep, ``sum_u x_u R_u`` rescaled to squared norm ``2l + 1``.

The projector of step 3 does not depend on the basis ``eigh`` picks in the null space, so the result
is e3nn's to rounding (about 1e-15 in float64). The bases are computed once per argument set, in
float64, and cached.
"""

from __future__ import annotations

import functools
import string
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

from ..core.cg import wigner_3j
from ..core.irreps import Irrep, Irreps
from ..core.tensor_product_builders import _irrep_filter
from ..math import germinate_formulas, orthonormalize, reduce_permutation
from ..math._reduce import FormulaError, _propagate
from ..util.jit import compile_mode

__all__ = ["ReducedTensorProducts"]


def _coupled_bases(irreps_in: Sequence[Irreps], filter_ir_mid: Optional[List[Irrep]]) -> List[Tuple[Irrep, torch.Tensor]]:
    """Every Clebsch-Gordan coupling chain of ``irreps_in``, as ``(ir, C)`` with ``C`` float64
    ``(ir.dim, irreps_in[0].dim, ..., irreps_in[-1].dim)``, in e3nn's order (``_wigner_nj``)."""
    first = irreps_in[0]
    eye = torch.eye(first.dim, dtype=torch.float64)
    chains = []
    start = 0
    for mul, ir in first:
        for _ in range(mul):
            chains.append((ir, eye[start : start + ir.dim]))
            start += ir.dim
    for k in range(1, len(irreps_in)):
        right = irreps_in[k]
        left_dims = [irreps.dim for irreps in irreps_in[:k]]
        coupled = []
        for ir_left, c_left in chains:
            offset = 0
            for mul, ir in right:
                for ir_out in ir_left * ir:
                    if filter_ir_mid is not None and ir_out not in filter_ir_mid:
                        continue
                    cg = torch.tensor(wigner_3j(ir_out.l, ir_left.l, ir.l), dtype=torch.float64) * ir_out.dim**0.5
                    c = torch.einsum("jk,ijl->ikl", c_left.flatten(1), cg).reshape(ir_out.dim, *left_dims, ir.dim)
                    for u in range(mul):
                        e = torch.zeros(ir_out.dim, *left_dims, right.dim, dtype=torch.float64)
                        e[..., offset + u * ir.dim : offset + (u + 1) * ir.dim] = c
                        coupled.append((ir_out, e))
                offset += mul * ir.dim
        chains = sorted(coupled, key=lambda chain: chain[0])
    return chains


@functools.lru_cache(maxsize=64)
def _reduced_basis(formula: str, irreps_of: Tuple[Tuple[str, str], ...], filter_ir_out, filter_ir_mid, eps: float):
    """``(irreps_in, irreps_out, change_of_basis float64)`` for hashable arguments (irreps as strings)."""
    f0, formulas = germinate_formulas(formula)
    irreps = _propagate(f0, formulas, {i: Irreps(s) for i, s in irreps_of}, "irreps")
    irreps_in = [irreps[i] for i in f0]
    keep_out = None if filter_ir_out is None else [Irrep(ir) for ir in filter_ir_out]
    keep_mid = None if filter_ir_mid is None else [Irrep(ir) for ir in filter_ir_mid]
    base_perm, _ = reduce_permutation(f0, formulas, dtype=torch.float64, **{i: irs.dim for i, irs in irreps.items()})

    chains: Dict[Irrep, List[torch.Tensor]] = {}
    for ir, c in _coupled_bases(irreps_in, keep_mid):
        if keep_out is None or ir in keep_out:
            chains.setdefault(ir, []).append(c)

    P = base_perm.flatten(1)
    PP = P @ P.T
    blocks, irreps_out = [], []
    for ir, cs in chains.items():
        base_o3 = torch.stack(cs)  # (u, ir.dim, dims...)
        R = base_o3.flatten(2)[:, 0]  # the first component suffices: the others follow by equivariance
        RR, RP = R @ R.T, R @ P.T
        problem = torch.cat([torch.cat([RR, -RP], dim=1), torch.cat([-RP.T, PP], dim=1)], dim=0)
        eigenvalues, eigenvectors = torch.linalg.eigh(problem)
        X = eigenvectors[:, eigenvalues < eps][: len(cs)].T  # (solutions, u): chain coefficients
        solutions, _ = orthonormalize(X.T @ X, eps)
        for x in solutions:
            c = torch.einsum("u,ui...->i...", x, base_o3)
            blocks.append((ir.dim / c.pow(2).sum()) ** 0.5 * c)
            irreps_out.append((1, ir))
    dims = [irs.dim for irs in irreps_in]
    change = torch.cat(blocks) if blocks else torch.zeros(0, *dims, dtype=torch.float64)
    return irreps_in, Irreps(irreps_out).simplify(), change


def _filter_key(value: Any, name: str) -> Optional[Tuple[str, ...]]:
    if value is None:
        return None
    try:
        return tuple(str(ir) for ir in _irrep_filter(value))
    except ValueError:
        raise ValueError(f"{name} (={value!r}) must be an iterable of Irrep, e.g. ['0e', '2e']") from None


@compile_mode("trace")
class ReducedTensorProducts(torch.nn.Module):
    r"""Reduce a tensor with index symmetries into irreps (e3nn's ``o3.ReducedTensorProducts``).

    ``forward(*xs)``: one tensor ``(..., irreps_in[k].dim)`` per index of the formula (batch dimensions
    broadcast), in the module's dtype; returns ``(..., irreps_out.dim)``, the irreps of ``x_1 (x) x_2 (x) ...``
    projected on the symmetric subspace: ``einsum('z i j ..., ...i, ...j -> ...z', change_of_basis, *xs)``.

    Args:
        formula: index strings joined by ``=``, each but the first optionally prefixed by ``-``:
            ``'ij=ji'`` (symmetric), ``'ij=-ji'`` (antisymmetric), ``'ijkl=jikl=klij'`` (elasticity).
        filter_ir_out: irreps allowed in the output (list of Irrep-like), or None.
        filter_ir_mid: irreps allowed in the intermediate couplings (and the output), or None.
        eps: threshold of the null-space and Gram-Schmidt steps (default 1e-9).
        **irreps: the irreps of each index, e.g. ``i='1o'``; an index exchanged with another by the
            formula can be left out.

    Attributes:
        irreps_in: list of :class:`Irreps`, one per index of the formula (its order).
        irreps_out: :class:`Irreps`, simplified, in e3nn's order.
        change_of_basis: buffer ``(irreps_out.dim, irreps_in[0].dim, ..., irreps_in[-1].dim)`` in
            torch's default dtype, orthonormal rows (each irrep's block of squared norm ``2l + 1``), e3nn's
            values and signs.

    Differences from e3nn: ``forward`` contracts with ``change_of_basis`` instead of running e3nn's
    generated chain of tensor products (the same numbers to rounding); the state dict holds only
    ``change_of_basis`` (the ``main.*`` buffers of e3nn's generated code are accepted and ignored
    when loading); a formula with no invariant component gives ``irreps_out`` empty where e3nn fails;
    inconsistent formulas raise :class:`fastso3.math.FormulaError` (a ``ValueError`` and a
    ``RuntimeError``, the latter as e3nn).
    A dtype or device change (``module.to(torch.float64)``) rebuilds ``change_of_basis`` from its
    float64 values, so the entries are exact in every dtype (e3nn rounds them to the dtype they were
    built in).
    """

    def __init__(self, formula: str, filter_ir_out=None, filter_ir_mid=None, eps: float = 1e-9, **irreps: Any) -> None:
        super().__init__()
        for index in irreps:
            if len(index) != 1:
                raise TypeError(f"got an unexpected keyword argument '{index}' (indices are single letters)")
        f0, _ = germinate_formulas(formula)
        for index in irreps:
            if index not in f0:
                raise FormulaError(f"index {index} has an irreps but does not appear in the formula {formula!r}")
        irreps_of = tuple(sorted((i, str(Irreps(irs))) for i, irs in irreps.items()))
        filters = (_filter_key(filter_ir_out, "filter_ir_out"), _filter_key(filter_ir_mid, "filter_ir_mid"))
        irreps_in, irreps_out, change = _reduced_basis(formula, irreps_of, *filters, float(eps))
        self.formula = formula
        self.irreps_in = list(irreps_in)
        self.irreps_out = irreps_out
        self._exact_change_of_basis = change  # float64, shared with the cache: never modified
        self.register_buffer("change_of_basis", change.to(dtype=torch.get_default_dtype(), copy=True))
        n = len(irreps_in)
        letters = string.ascii_letters[:n]
        self._equation = f"z{letters}," + ",".join(f"...{c}" for c in letters) + "->...z"

    def __repr__(self) -> str:
        return f"ReducedTensorProducts(\n    in: {' times '.join(map(repr, self.irreps_in))}\n    out: {self.irreps_out}\n)"

    def _apply(self, fn: Any, recurse: bool = True) -> "ReducedTensorProducts":
        # After a dtype/device change, rebuild the buffer from the float64 values, so that a float32
        # module converted to float64 has exact (not float32-rounded) entries.
        super()._apply(fn, recurse)
        old = self.change_of_basis
        self.change_of_basis = self._exact_change_of_basis.to(dtype=old.dtype, device=old.device, copy=True)
        return self

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs):
        for key in [k for k in state_dict if k.startswith(prefix + "main.")]:  # e3nn's generated tensor products
            del state_dict[key]
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs)

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        """``(..., irreps_in[0].dim), ..., (..., irreps_in[-1].dim) -> (..., irreps_out.dim)``."""
        if len(xs) != len(self.irreps_in):
            raise TypeError(f"ReducedTensorProducts({self.formula!r}) takes {len(self.irreps_in)} tensors, got {len(xs)}")
        Q = self.change_of_basis
        for k, (x, irreps) in enumerate(zip(xs, self.irreps_in)):
            if not isinstance(x, torch.Tensor):
                raise TypeError(f"input {k} must be a torch.Tensor, got {type(x).__name__}")
            if x.dim() == 0 or x.shape[-1] != irreps.dim:
                raise ValueError(f"input {k} must have shape (..., {irreps.dim}) ({irreps}), got {tuple(x.shape)}")
            if x.dtype != Q.dtype:
                raise TypeError(f"input {k} is {x.dtype} but the module is {Q.dtype}; convert one (module.to({x.dtype}))")
        if Q.shape[0] == 0:
            batch = torch.broadcast_shapes(*(x.shape[:-1] for x in xs))
            return Q.new_zeros(*batch, 0)
        return torch.einsum(self._equation, Q, *xs)
