"""Ready-made tensor-product plans (numpy only): the instruction lists of e3nn 0.6.0's subclasses.

Each builder returns the :class:`~fastso3.core.tensor_product.TensorProductPlan` that the matching
module of :mod:`fastso3.o3` executes (same irreps, instructions, coefficients and weight layout), so
the plan can be used with the functional API (:func:`fastso3.functional.tensor_product`) without
building a module:

* :func:`fully_connected_tensor_product_plan`: ``FullyConnectedTensorProduct``;
* :func:`full_tensor_product_plan`: ``FullTensorProduct``;
* :func:`elementwise_tensor_product_plan`: ``ElementwiseTensorProduct``;
* :func:`tensor_square_plan`: ``TensorSquare``.

The instruction lists themselves come from the ``*_spec`` functions (a dict of the
:func:`~fastso3.core.tensor_product.tensor_product_plan` arguments), shared by these builders and by
the constructors of the :mod:`fastso3.o3` modules, so that both always describe the same product.

See ``docs/conventions.md`` section 5.4 for the definitions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .irreps import Irrep, Irreps
from .tensor_product import TensorProductPlan, tensor_product_plan

Spec = dict[str, Any]

__all__ = [
    "elementwise_tensor_product_plan",
    "full_tensor_product_plan",
    "fully_connected_tensor_product_plan",
    "tensor_square_plan",
]


def _irrep_filter(filter_ir_out: Any) -> list | None:
    """``filter_ir_out`` as a list of :class:`Irrep` (a string or Irreps is read as irreps), or None."""
    if filter_ir_out is None:
        return None
    try:
        if isinstance(filter_ir_out, (str, Irreps)):
            return [ir for _, ir in Irreps(filter_ir_out)]
        return [Irrep(ir) for ir in filter_ir_out]
    except (ValueError, TypeError) as err:
        raise ValueError(f"filter_ir_out={filter_ir_out!r} must be an iterable of irreps: {err}") from None


def _spec(irreps_in1: Irreps, irreps_in2: Irreps, irreps_out: Irreps, instructions: list, **normalization: Any) -> Spec:
    """The keyword arguments of :func:`tensor_product_plan` (and of ``o3.TensorProduct``)."""
    return {
        "irreps_in1": irreps_in1,
        "irreps_in2": irreps_in2,
        "irreps_out": irreps_out,
        "instructions": instructions,
        **normalization,
    }


def channelwise_tensor_product_spec(irreps_in1: Any, irreps_in2: Any, filter_ir_out: Any = None) -> Spec:
    """MACE/NequIP-style channel-wise product: a weighted ``uvu`` path for every ``(i1, i2)`` and every
    ``ir_out`` in ``ir1 * ir2`` (kept if in ``filter_ir_out``), each into its own output entry
    ``mul1 x ir_out`` in generation order. Its weights are per path and channel (``path_shape (mul1, mul2)``).
    """
    irreps_in1, irreps_in2 = Irreps(irreps_in1), Irreps(irreps_in2)
    keep = _irrep_filter(filter_ir_out)
    irreps_out, instructions = [], []
    for i1, (mul1, ir1) in enumerate(irreps_in1):
        for i2, (_, ir2) in enumerate(irreps_in2):
            for ir_out in ir1 * ir2:
                if keep is None or ir_out in keep:
                    instructions.append((i1, i2, len(irreps_out), "uvu", True, 1.0))
                    irreps_out.append((mul1, ir_out))
    return _spec(irreps_in1, irreps_in2, Irreps(irreps_out), instructions)


def fully_connected_tensor_product_spec(
    irreps_in1: Any,
    irreps_in2: Any,
    irreps_out: Any,
    irrep_normalization: str | None = None,
    path_normalization: str | None = None,
) -> Spec:
    """The :func:`tensor_product_plan` arguments of :func:`fully_connected_tensor_product_plan`."""
    irreps_in1, irreps_in2, irreps_out = Irreps(irreps_in1), Irreps(irreps_in2), Irreps(irreps_out)
    instructions = [
        (i1, i2, io, "uvw", True, 1.0)
        for i1, (_, ir1) in enumerate(irreps_in1)
        for i2, (_, ir2) in enumerate(irreps_in2)
        for io, (_, iro) in enumerate(irreps_out)
        if iro in ir1 * ir2
    ]
    return _spec(
        irreps_in1,
        irreps_in2,
        irreps_out,
        instructions,
        irrep_normalization=irrep_normalization,
        path_normalization=path_normalization,
    )


def fully_connected_tensor_product_plan(
    irreps_in1: Any,
    irreps_in2: Any,
    irreps_out: Any,
    irrep_normalization: str | None = None,
    path_normalization: str | None = None,
    in1_var: Sequence[float] | None = None,
    in2_var: Sequence[float] | None = None,
    out_var: Sequence[float] | None = None,
) -> TensorProductPlan:
    """A weighted ``uvw`` path for every ``(i_in1, i_in2, i_out)`` with ``ir_out in ir1 x ir2``.

    Loop order ``i_in1, i_in2, i_out``; each path's weights are a row-major ``(mul1, mul2, mul_out)``
    block of the flat weight vector. Equal to ``o3.FullyConnectedTensorProduct(...).plan``.
    """
    spec = fully_connected_tensor_product_spec(irreps_in1, irreps_in2, irreps_out, irrep_normalization, path_normalization)
    return tensor_product_plan(**spec, in1_var=in1_var, in2_var=in2_var, out_var=out_var)


def full_tensor_product_spec(
    irreps_in1: Any, irreps_in2: Any, filter_ir_out: Any = None, irrep_normalization: str | None = None
) -> Spec:
    """The :func:`tensor_product_plan` arguments of :func:`full_tensor_product_plan`."""
    irreps_in1, irreps_in2 = Irreps(irreps_in1).simplify(), Irreps(irreps_in2).simplify()
    keep = _irrep_filter(filter_ir_out)
    out: list = []
    instructions: list = []
    for i1, (m1, ir1) in enumerate(irreps_in1):
        for i2, (m2, ir2) in enumerate(irreps_in2):
            for iro in ir1 * ir2:
                if keep is not None and iro not in keep:
                    continue
                instructions.append((i1, i2, len(out), "uvuv", False))
                out.append((m1 * m2, iro))
    irreps_out, p, _ = Irreps(out).sort()
    instructions = [(i1, i2, p[io], mode, hw) for i1, i2, io, mode, hw in instructions]
    return _spec(irreps_in1, irreps_in2, irreps_out, instructions, irrep_normalization=irrep_normalization)


def full_tensor_product_plan(
    irreps_in1: Any,
    irreps_in2: Any,
    filter_ir_out: Any = None,
    irrep_normalization: str | None = None,
) -> TensorProductPlan:
    """Every product ``x_u (x) y_v`` (unweighted ``uvuv`` paths, no weights).

    The inputs are simplified first; the output irreps are sorted (``(l, p)`` order, so ``0o < 0e <
    1o < 1e``) but not simplified: ``0e+1o x 0e+1o -> 1x0e+1x0e+1x1o+1x1o+1x1e+1x2e``.
    ``filter_ir_out`` keeps only the listed output irreps. Equal to ``o3.FullTensorProduct(...).plan``.
    """
    return tensor_product_plan(**full_tensor_product_spec(irreps_in1, irreps_in2, filter_ir_out, irrep_normalization))


def elementwise_tensor_product_spec(
    irreps_in1: Any, irreps_in2: Any, filter_ir_out: Any = None, irrep_normalization: str | None = None
) -> Spec:
    """The :func:`tensor_product_plan` arguments of :func:`elementwise_tensor_product_plan`."""
    irreps_in1, irreps_in2 = Irreps(irreps_in1).simplify(), Irreps(irreps_in2).simplify()
    keep = _irrep_filter(filter_ir_out)
    if irreps_in1.num_irreps != irreps_in2.num_irreps:
        raise ValueError(
            f"ElementwiseTensorProduct needs the same number of irreps: {irreps_in1} has "
            f"{irreps_in1.num_irreps}, {irreps_in2} has {irreps_in2.num_irreps}"
        )
    a = [(mul, ir) for mul, ir in irreps_in1]
    b = [(mul, ir) for mul, ir in irreps_in2]
    i = 0
    while i < len(a):  # split the larger entry so that entry i has the same multiplicity on both sides
        (m1, ir1), (m2, ir2) = a[i], b[i]
        if m1 < m2:
            b[i : i + 1] = [(m1, ir2), (m2 - m1, ir2)]
        elif m2 < m1:
            a[i : i + 1] = [(m2, ir1), (m1 - m2, ir1)]
        i += 1
    out: list = []
    instructions: list = []
    for i, ((mul, ir1), (_, ir2)) in enumerate(zip(a, b)):
        for iro in ir1 * ir2:
            if keep is not None and iro not in keep:
                continue
            instructions.append((i, i, len(out), "uuu", False))
            out.append((mul, iro))
    return _spec(Irreps(a), Irreps(b), Irreps(out), instructions, irrep_normalization=irrep_normalization)


def elementwise_tensor_product_plan(
    irreps_in1: Any,
    irreps_in2: Any,
    filter_ir_out: Any = None,
    irrep_normalization: str | None = None,
) -> TensorProductPlan:
    """``z_u = x_u (x) y_u`` (unweighted ``uuu`` paths); the output is in generation order, unsorted.

    The inputs are simplified, then their entries are split so the multiplicities align (the number
    of copies must match). Equal to ``o3.ElementwiseTensorProduct(...).plan``.
    """
    return tensor_product_plan(**elementwise_tensor_product_spec(irreps_in1, irreps_in2, filter_ir_out, irrep_normalization))


def _alpha(normalization: str, ir1: Irrep, ir2: Irrep, iro: Irrep) -> float:
    if normalization == "component":
        return iro.dim
    if normalization == "norm":
        return ir1.dim * ir2.dim
    return 1


def _diagonal_alpha(normalization: str, ir: Irrep, iro: Irrep) -> float:
    # x_u (x) x_u has a larger variance than x_u (x) y_v: e3nn's factors (conventions section 5.4).
    if normalization == "component":
        return iro.dim / (ir.dim + 2) if iro.l == 0 else iro.dim / 2
    if normalization == "norm":
        return iro.dim * ir.dim if iro.l == 0 else ir.dim * (ir.dim + 2) / 2
    return 1


def tensor_square_spec(
    irreps_in: Any, irreps_out: Any = None, filter_ir_out: Any = None, irrep_normalization: str | None = None
) -> Spec:
    """The :func:`tensor_product_plan` arguments of :func:`tensor_square_plan` (alphas in the instructions)."""
    if irrep_normalization is None:
        irrep_normalization = "component"
    if irrep_normalization not in ("component", "norm", "none"):
        raise ValueError(f"irrep_normalization must be 'component', 'norm' or 'none', got {irrep_normalization!r}")
    irreps_in = Irreps(irreps_in).simplify()
    keep = _irrep_filter(filter_ir_out)
    instructions: list = []
    if irreps_out is None:
        out: list = []
        for i1, (m1, ir1) in enumerate(irreps_in):
            for i2, (m2, ir2) in enumerate(irreps_in):
                if i2 < i1:
                    continue
                for iro in ir1 * ir2:
                    if keep is not None and iro not in keep:
                        continue
                    alpha = _alpha(irrep_normalization, ir1, ir2, iro)
                    if i1 < i2:
                        instructions.append((i1, i2, len(out), "uvuv", False, alpha))
                        out.append((m1 * m2, iro))
                        continue
                    if m1 > 1:
                        instructions.append((i1, i1, len(out), "uvu<v", False, alpha))
                        out.append((m1 * (m1 - 1) // 2, iro))
                    if iro.l % 2 == 0:
                        instructions.append((i1, i1, len(out), "uuu", False, _diagonal_alpha(irrep_normalization, ir1, iro)))
                        out.append((m1, iro))
        irreps_out, p, _ = Irreps(out).sort()
        instructions = [(i1, i2, p[io], mode, hw, a) for i1, i2, io, mode, hw, a in instructions]
    else:
        if filter_ir_out is not None:
            raise ValueError("give irreps_out or filter_ir_out, not both (ambiguous)")
        irreps_out = Irreps(irreps_out).simplify()
        for i1, (m1, ir1) in enumerate(irreps_in):
            for i2, (_, ir2) in enumerate(irreps_in):
                if i2 < i1:
                    continue
                for io, (_, iro) in enumerate(irreps_out):
                    if iro not in ir1 * ir2:
                        continue
                    alpha = _alpha(irrep_normalization, ir1, ir2, iro)
                    if i1 < i2:
                        instructions.append((i1, i2, io, "uvw", True, alpha))
                        continue
                    if m1 > 1:
                        instructions.append((i1, i1, io, "u<vw", True, alpha))
                    if iro.l % 2 == 0:
                        instructions.append((i1, i1, io, "uuw", True, _diagonal_alpha(irrep_normalization, ir1, iro)))
    return _spec(irreps_in, irreps_in, irreps_out, instructions, irrep_normalization="none")


def tensor_square_plan(
    irreps_in: Any,
    irreps_out: Any = None,
    filter_ir_out: Any = None,
    irrep_normalization: str | None = None,
) -> TensorProductPlan:
    """The square ``x (x) x`` of one input (use it with ``x1 = x2 = x``); the input is simplified.

    Without ``irreps_out``: no weights; ``uvuv`` for pairs of different entries, ``uvu<v`` (mul > 1)
    plus ``uuu`` (even ``l_out`` only) within an entry; output sorted. With ``irreps_out`` (simplified):
    weighted ``uvw``, ``u<vw`` and ``uuw`` paths. Equal to ``o3.TensorSquare(...).plan``.
    """
    return tensor_product_plan(**tensor_square_spec(irreps_in, irreps_out, filter_ir_out, irrep_normalization))
