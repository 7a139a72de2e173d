"""Equivariance testing utilities, with the semantics of ``e3nn.util.test`` (e3nn 0.6.0).

The central function is :func:`assert_equivariant`: it draws random rotations ``R`` (and, with parity,
improper rotations ``-R``), transforms the inputs of a function with the matching representation
matrices, and checks that ``func(D_in(R) x) == D_out(R) func(x)`` to within a dtype-dependent tolerance.

Every argument and every output of the tested function is described by one *spec*:

* an Irreps-like value (``"2x0e+1o"``, an :class:`~fastso3.core.irreps.Irreps`, a list of
  ``(mul, (l, p))``): the tensor has shape ``(..., irreps.dim)`` and transforms with
  ``irreps.D_from_matrix(R)`` acting on its last axis;
* the string ``'cartesian_points'``: the tensor has shape ``(..., 3)`` and is rotated *and translated*,
  ``x -> x @ R.T + t`` with ``t ~ 10 N(0, 1)``;
* ``None``: the argument is passed through unchanged (for outputs: compared unchanged, i.e. checked to
  be invariant).

Example::

    >>> import torch
    >>> from fastso3.testing import assert_equivariant
    >>> def cross(a, b):  # two vectors (1o) -> a pseudovector (1e)
    ...     return torch.cross(a, b, dim=-1)
    >>> errors = assert_equivariant(cross, irreps_in=["1o", "1o"], irreps_out=["1e"])

See ``docs/conventions.md`` for the rotation and parity conventions.
"""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from .core.irreps import Irrep, Irreps
from .o3._rotation import rand_matrix

__all__ = [
    "FLOAT_TOLERANCE",
    "assert_auto_jitable",
    "assert_conservative",
    "assert_equivariant",
    "assert_normalized",
    "assert_torch_compile",
    "default_dtype",
    "equivariance_error",
    "format_equivariance_error",
    "random_irreps",
    "set_random_seeds",
]

#: Default tolerance on the maximum absolute equivariance error, by the least precise floating dtype
#: among the inputs and outputs of the tested function (float32 and float64 as in e3nn 0.6.0).
FLOAT_TOLERANCE: dict[torch.dtype, float] = {
    torch.float64: 1e-9,
    torch.float32: 1e-3,
    torch.float16: 1e-1,
    torch.bfloat16: 1e-1,
}

CARTESIAN_POINTS = "cartesian_points"

_Spec = Any  # an Irreps-like value, the string 'cartesian_points', or None


def _rand_matrix(dtype: torch.dtype, device: torch.device | None = None) -> torch.Tensor:
    with default_dtype(dtype):
        return rand_matrix(dtype=dtype, device=device)


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype):
    """Context manager: temporarily set torch's default dtype (e.g. so that tables e3nn builds on the fly
    are made in float64 and keep its precision)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


# --------------------------------------------------------------------------------------------------
# seeds and random irreps
# --------------------------------------------------------------------------------------------------
def set_random_seeds(seed: int = 0) -> None:
    """Seed every random number generator a test may touch.

    Seeds Python's :mod:`random`, :mod:`numpy` (if installed) and torch (CPU and, through
    ``torch.manual_seed``, every CUDA device).

    Args:
        seed: the seed, a non-negative int.
    """
    random.seed(seed)
    torch.manual_seed(seed)
    np.random.seed(seed)


def _irreps_string(entries: Sequence[tuple[int, tuple[int, int]]]) -> str:
    return "+".join(f"{mul}x{l}{'e' if p == 1 else 'o'}" for mul, (l, p) in entries)


def random_irreps(
    n: int = 1,
    lmax: int = 4,
    mul_min: int = 0,
    mul_max: int = 5,
    len_min: int = 0,
    len_max: int = 4,
    clean: bool = False,
    allow_empty: bool = True,
):
    """Draw random irreps, for property-based tests.

    Each irreps has between ``len_min`` and ``len_max`` entries (inclusive); each entry has a
    multiplicity in ``[mul_min, mul_max]``, a degree ``l`` in ``[0, lmax]`` and a random parity.
    Randomness comes from torch's global generator, so :func:`set_random_seeds` (or
    ``torch.manual_seed``) makes it reproducible.

    Args:
        n: how many irreps to draw (>= 1).
        lmax: the largest degree (inclusive, >= 0).
        mul_min, mul_max: the range of multiplicities (inclusive, 0 <= mul_min <= mul_max).
        len_min, len_max: the range of the number of entries (inclusive, 0 <= len_min <= len_max).
        clean: if True, always return :class:`~fastso3.core.irreps.Irreps` objects; if False (default),
            each result is randomly an ``Irreps``, a string such as ``"2x0e+1x1o"``, or a list of
            ``(mul, (l, p))`` tuples, all accepted by ``Irreps(...)``.
        allow_empty: if False, every result has ``dim > 0`` (at least one entry with a non-zero
            multiplicity).

    Returns:
        One irreps-like object if ``n == 1``, else a list of ``n`` of them.

    Raises:
        ValueError: on inconsistent ranges, or if ``allow_empty=False`` cannot be satisfied
            (``len_max == 0`` or ``mul_max == 0``).
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if lmax < 0:
        raise ValueError(f"lmax must be >= 0, got {lmax}")
    if not 0 <= mul_min <= mul_max:
        raise ValueError(f"need 0 <= mul_min <= mul_max, got mul_min={mul_min}, mul_max={mul_max}")
    if not 0 <= len_min <= len_max:
        raise ValueError(f"need 0 <= len_min <= len_max, got len_min={len_min}, len_max={len_max}")
    if not allow_empty and (len_max == 0 or mul_max == 0):
        raise ValueError("allow_empty=False needs len_max >= 1 and mul_max >= 1")

    def randint(lo: int, hi: int) -> int:  # inclusive bounds
        return int(torch.randint(lo, hi + 1, ()).item())

    out = []
    for _ in range(n):
        length = randint(max(len_min, 0 if allow_empty else 1), len_max)
        entries = [(randint(mul_min, mul_max), (randint(0, lmax), 1 if randint(0, 1) else -1)) for _ in range(length)]
        if not allow_empty and all(mul == 0 for mul, _ in entries):
            # force one entry to be non-empty (keeps its degree and parity)
            k = randint(0, length - 1)
            entries[k] = (randint(max(mul_min, 1), mul_max), entries[k][1])

        form = "irreps" if clean else ("irreps", "str", "list")[randint(0, 2)]
        if form == "irreps":
            out.append(Irreps(_irreps_string(entries)))
        elif form == "str":
            out.append(_irreps_string(entries))
        else:
            out.append([(mul, (l, p)) for mul, (l, p) in entries])
    return out[0] if n == 1 else out


# --------------------------------------------------------------------------------------------------
# specs
# --------------------------------------------------------------------------------------------------
def _is_single_spec(spec: Any) -> bool:
    """True if ``spec`` describes one tensor (rather than a list of per-argument specs)."""
    return spec is None or isinstance(spec, (str, Irreps, Irrep))


def _normalize_spec(spec: _Spec):
    if spec is None or (isinstance(spec, str) and spec == CARTESIAN_POINTS):
        return spec
    return Irreps(spec)


def _normalize_specs(specs: Any, what: str) -> list:
    if _is_single_spec(specs):
        specs = [specs]
    if not isinstance(specs, (list, tuple)):
        raise TypeError(
            f"{what} must be an Irreps-like value, 'cartesian_points', None, or a list of those; got {specs!r}"
        )
    return [_normalize_spec(s) for s in specs]


def _infer_specs(func: Callable, irreps_in: Any, irreps_out: Any) -> tuple[list, list]:
    """Resolve ``irreps_in``/``irreps_out``, reading ``func``'s attributes when they are not given."""
    if irreps_in is None:
        if getattr(func, "irreps_in", None) is not None:
            irreps_in = func.irreps_in  # one spec, or a list of per-argument specs
        elif getattr(func, "irreps_in1", None) is not None and getattr(func, "irreps_in2", None) is not None:
            irreps_in = [func.irreps_in1, func.irreps_in2]
        else:
            raise ValueError(
                f"cannot infer irreps_in: {_func_name(func)} has no 'irreps_in' nor 'irreps_in1'/'irreps_in2' "
                "attribute; pass irreps_in explicitly"
            )
    if irreps_out is None:
        if getattr(func, "irreps_out", None) is not None:
            irreps_out = func.irreps_out
        else:
            raise ValueError(
                f"cannot infer irreps_out: {_func_name(func)} has no 'irreps_out' attribute; pass irreps_out explicitly"
            )
    return _normalize_specs(irreps_in, "irreps_in"), _normalize_specs(irreps_out, "irreps_out")


def _spec_str(spec: _Spec) -> str:
    if spec is None:
        return "None (unchanged)"
    if isinstance(spec, str):
        return spec
    return str(spec) or "(empty)"


def _func_name(func: Callable) -> str:
    name = getattr(func, "__qualname__", None) or getattr(func, "__name__", None)
    if name is None:
        return type(func).__name__
    return name


# --------------------------------------------------------------------------------------------------
# transforms
# --------------------------------------------------------------------------------------------------
def _check_dim(x: Any, spec: _Spec, where: str) -> None:
    if spec is None:
        return
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{where} must be a torch.Tensor for spec {_spec_str(spec)}, got {type(x).__name__}")
    dim = 3 if isinstance(spec, str) else spec.dim
    if x.shape[-1:] != (dim,):
        raise ValueError(
            f"{where} has shape {tuple(x.shape)}, but its spec {_spec_str(spec)} needs a last dimension of {dim}"
        )


def _transform(
    x: Any,
    spec: _Spec,
    R: torch.Tensor,
    translation: torch.Tensor | None,
    cache: dict,
    out_dtype: torch.dtype | None,
):
    """Apply the action of ``R`` (float64, (3, 3)) on ``x`` according to ``spec``.

    The arithmetic is done in ``R.dtype``; the result is cast to ``out_dtype`` (None: keep ``R.dtype``).
    """
    if spec is None:
        return x
    x64 = x.to(dtype=R.dtype)
    Rx = R.to(device=x.device)
    if isinstance(spec, str):  # cartesian points
        y = x64 @ Rx.transpose(-1, -2)
        if translation is not None:
            y = y + translation.to(device=x.device)
    else:
        key = id(spec)
        if key not in cache:
            with default_dtype(R.dtype):
                cache[key] = spec.D_from_matrix(R).to(dtype=R.dtype)
        D = cache[key].to(device=x.device)
        y = x64 @ D.transpose(-1, -2)
    return y if out_dtype is None else y.to(dtype=out_dtype)


def _as_tuple(out: Any) -> tuple:
    if isinstance(out, (tuple, list)):
        return tuple(out)
    return (out,)


def _floating_dtypes(values: Sequence[Any]) -> set[torch.dtype]:
    return {v.dtype for v in values if isinstance(v, torch.Tensor) and v.is_floating_point()}


def _equivariance_error(
    func: Callable,
    args_in: Sequence[Any],
    irreps_in: Any,
    irreps_out: Any,
    ntrials: int,
    do_parity: bool,
    do_translation: bool,
    transform_dtype: torch.dtype,
) -> tuple[dict, list, set]:
    """Like :func:`equivariance_error`, also returning the output specs and the dtypes seen."""
    specs_in, specs_out = _infer_specs(func, irreps_in, irreps_out)
    args_in = tuple(args_in) if isinstance(args_in, (list, tuple)) else (args_in,)
    if len(args_in) != len(specs_in):
        raise ValueError(f"got {len(args_in)} input(s) but {len(specs_in)} irreps_in spec(s): {specs_in}")
    for i, (a, s) in enumerate(zip(args_in, specs_in)):
        _check_dim(a, s, f"input {i}")
    if ntrials < 1:
        raise ValueError(f"ntrials must be >= 1, got {ntrials}")

    has_points = any(isinstance(s, str) for s in specs_in)
    parities = (0, 1) if do_parity else (0,)
    translations = (False, True) if (do_translation and has_points) else (False,)

    dtypes = _floating_dtypes(args_in)
    errors: dict[tuple[int, bool], torch.Tensor] = {}
    for _ in range(ntrials):
        for parity_k in parities:
            for translate in translations:
                R = _rand_matrix(dtype=transform_dtype)
                if parity_k == 1:
                    R = -R
                t = 10.0 * torch.randn(3, dtype=transform_dtype) if translate else None
                cache: dict = {}

                # func(transformed inputs): inputs are transformed in transform_dtype, then cast back
                rot_args = [
                    _transform(a, s, R, t, cache, a.dtype if isinstance(a, torch.Tensor) else None)
                    for a, s in zip(args_in, specs_in)
                ]
                out_rot = _as_tuple(func(*rot_args))
                # transformed func(inputs): outputs are transformed in transform_dtype
                out = _as_tuple(func(*args_in))
                if len(out) != len(specs_out) or len(out_rot) != len(specs_out):
                    raise ValueError(
                        f"{_func_name(func)} returned {len(out)} output(s) but {len(specs_out)} irreps_out spec(s) were given"
                    )
                dtypes |= _floating_dtypes(out) | _floating_dtypes(out_rot)

                errs = []
                for i, (a, b, s) in enumerate(zip(out_rot, out, specs_out)):
                    _check_dim(b, s, f"output {i}")
                    if not isinstance(a, torch.Tensor):
                        a, b = torch.as_tensor(a), torch.as_tensor(b)
                    expected = _transform(b, s, R, t, cache, None).to(transform_dtype)
                    got = a.to(transform_dtype)
                    if got.shape != expected.shape:
                        raise ValueError(
                            f"output {i}: shape {tuple(got.shape)} on the transformed inputs vs "
                            f"{tuple(expected.shape)} on the original inputs"
                        )
                    err = (
                        (got - expected).abs().max().detach().cpu()
                        if got.numel()
                        else torch.zeros((), dtype=transform_dtype)
                    )
                    errs.append(err)
                err_vec = torch.stack(errs) if errs else torch.zeros(0, dtype=transform_dtype)
                key = (parity_k, translate)
                errors[key] = torch.maximum(errors[key], err_vec) if key in errors else err_vec
    return errors, specs_out, dtypes


def equivariance_error(
    func: Callable,
    args_in: Sequence[Any],
    irreps_in: Any = None,
    irreps_out: Any = None,
    ntrials: int = 1,
    do_parity: bool = True,
    do_translation: bool = True,
    transform_dtype: torch.dtype = torch.float64,
) -> dict[tuple[int, bool], torch.Tensor]:
    """Largest equivariance error of ``func`` on given inputs, per (parity, translation) case and output.

    For each trial, each ``parity_k`` in ``{0, 1}`` (only 0 if ``do_parity=False``) and each
    ``translate`` in ``{False, True}`` (only False unless ``do_translation`` and some input is
    ``'cartesian_points'``), draws ``R = (-1)^parity_k * rand_matrix()`` and ``t ~ 10 N(0, 1)^3`` in
    ``transform_dtype``, and compares ``func(*transformed args)`` with ``transform(func(*args))``.
    The transformations and the comparison are done in ``transform_dtype``; transformed inputs are cast
    back to their own dtype before being passed to ``func``.

    Args:
        func: the function to test; returns a tensor or a tuple/list of tensors.
        args_in: the inputs, a sequence with one entry per argument of ``func``; an irreps input has
            shape ``(..., irreps.dim)``, a ``'cartesian_points'`` input ``(..., 3)``.
        irreps_in: one spec or a list of specs, one per input (see the module docstring). Default:
            ``[func.irreps_in]``, or ``[func.irreps_in1, func.irreps_in2]``.
        irreps_out: one spec or a list of specs, one per output. Default: ``[func.irreps_out]``.
        ntrials: how many random rotations per case; the errors are the maximum over trials.
        do_parity: also test improper rotations ``-R``.
        do_translation: also test translations of ``'cartesian_points'`` inputs.
        transform_dtype: dtype of the rotations, transformations and comparison.

    Returns:
        ``{(parity_k, translated): errors}`` with ``errors`` a 1-D ``transform_dtype`` tensor of shape
        ``(num_outputs,)``: the max absolute error of each output.

    Raises:
        ValueError: if the specs cannot be inferred, or their number or dimensions do not match the
            inputs or outputs.
    """
    errors, _, _ = _equivariance_error(
        func, args_in, irreps_in, irreps_out, ntrials, do_parity, do_translation, transform_dtype
    )
    return errors


def _case_str(key: tuple[int, bool]) -> str:
    parity_k, translated = key
    text = "rotation" if parity_k == 0 else "rotation+inversion"
    text += f" (parity_k={parity_k})"
    if translated:
        text += " + translation"
    return text


def format_equivariance_error(
    errors: dict[tuple[int, bool], torch.Tensor],
    irreps_out: Sequence[Any] | None = None,
    tolerance: float | None = None,
) -> str:
    """Render the dictionary returned by :func:`equivariance_error` as a readable table.

    Args:
        errors: ``{(parity_k, translated): (num_outputs,) tensor}`` as returned by :func:`equivariance_error`.
        irreps_out: optional list of output specs, shown next to each output.
        tolerance: optional tolerance; adds an ok/FAIL column.

    Returns:
        A multi-line string, one line per (case, output).
    """
    header = ["case", "output", "irreps", "max abs error"]
    if tolerance is not None:
        header += ["tolerance", "status"]
    rows = []
    for key in sorted(errors):
        errs = errors[key].reshape(-1)
        for i, e in enumerate(errs.tolist()):
            spec = _spec_str(irreps_out[i]) if irreps_out is not None and i < len(irreps_out) else "-"
            row = [_case_str(key), str(i), spec, f"{e:.3e}"]
            if tolerance is not None:
                row += [f"{tolerance:.1e}", "ok" if e <= tolerance else "FAIL"]
            rows.append(row)
    if not rows:
        return "(no outputs compared)"
    widths = [max(len(r[c]) for r in rows + [header]) for c in range(len(header))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)


def _default_tolerance(dtypes: set[torch.dtype]) -> tuple[float, torch.dtype]:
    if not dtypes:
        dtypes = {torch.get_default_dtype()}
    # the least precise floating dtype decides
    least = max(dtypes, key=lambda d: torch.finfo(d).eps)
    tol = FLOAT_TOLERANCE.get(least)
    if tol is None:  # pragma: no cover - exotic float dtypes
        tol = math.sqrt(torch.finfo(least).eps)
    return tol, least


def _random_input(spec: _Spec, batch: int, index: int) -> torch.Tensor:
    if spec is None:
        raise ValueError(
            f"cannot generate input {index}: its spec is None; pass args_in explicitly for non-transforming inputs"
        )
    if isinstance(spec, str):
        return torch.randn(batch, 3)
    return spec.randn(batch, -1, normalization="component")


def assert_equivariant(
    func: Callable,
    args_in: Sequence[Any] | None = None,
    irreps_in: Any = None,
    irreps_out: Any = None,
    tolerance: float | None = None,
    **kwargs: Any,
) -> dict[tuple[int, bool], torch.Tensor]:
    """Assert that ``func`` is equivariant under rotations, inversion and (for points) translations.

    Shapes: each irreps input is ``(batch, irreps.dim)``, each ``'cartesian_points'`` input
    ``(batch, 3)``. If ``args_in`` is None, inputs are drawn at random with a batch size in 1..4
    (``irreps.randn(batch, -1)`` with 'component' normalization, ``torch.randn(batch, 3)`` for points),
    in torch's default dtype.

    Args:
        func: the function to test.
        args_in: the inputs, or None to generate them (then no spec may be None).
        irreps_in: input spec(s); inferred from ``func`` when None (see :func:`equivariance_error`).
        irreps_out: output spec(s); inferred from ``func.irreps_out`` when None.
        tolerance: bound on every max absolute error. Default: :data:`FLOAT_TOLERANCE` of the least
            precise floating dtype among the inputs and outputs (1e-3 for float32, 1e-9 for float64).
        **kwargs: forwarded to :func:`equivariance_error` (``ntrials``, ``do_parity``,
            ``do_translation``, ``transform_dtype``).

    Returns:
        The errors dictionary of :func:`equivariance_error`.

    Raises:
        AssertionError: with a table of every (parity, translation) case and output if some error
            exceeds the tolerance.
    """
    specs_in, specs_out = _infer_specs(func, irreps_in, irreps_out)
    if args_in is None:
        batch = int(torch.randint(1, 5, ()).item())
        args_in = [_random_input(s, batch, i) for i, s in enumerate(specs_in)]
    errors, specs_out, dtypes = _equivariance_error(
        func,
        args_in,
        specs_in,
        specs_out,
        kwargs.pop("ntrials", 1),
        kwargs.pop("do_parity", True),
        kwargs.pop("do_translation", True),
        kwargs.pop("transform_dtype", torch.float64),
    )
    if kwargs:
        raise TypeError(f"assert_equivariant got unexpected keyword arguments: {sorted(kwargs)}")

    if tolerance is None:
        tolerance, dtype = _default_tolerance(dtypes)
        tol_text = f"{tolerance:.1e} (default for {str(dtype).replace('torch.', '')})"
    else:
        tolerance = float(tolerance)
        tol_text = f"{tolerance:.1e}"

    failures = [
        (float(err[i]), key, i)
        for key, err in errors.items()
        for i in range(err.numel())
        if not float(err[i]) <= tolerance
    ]
    if failures:
        worst, key, i = max(failures, key=lambda f: (math.isnan(f[0]), f[0]))
        raise AssertionError(
            f"{_func_name(func)} is not equivariant: {len(failures)} (case, output) pair(s) exceed the tolerance "
            f"{tol_text}.\n"
            f"Worst: output {i} ({_spec_str(specs_out[i])}) under {_case_str(key)}: max abs error {worst:.3e}.\n"
            + format_equivariance_error(errors, specs_out, tolerance)
        )
    return errors


# ----------------------------------------------------------------------------------------------------
# force fields
# ----------------------------------------------------------------------------------------------------


def _energy_and_forces(model: Callable, x: torch.Tensor, create_graph: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """``model(x)`` is an energy (forces by autograd) or ``(energy, forces)``."""
    x = x.detach().requires_grad_(True)
    out = model(x)
    if isinstance(out, (tuple, list)):
        energy, forces = out
    else:
        energy = out
        (grad,) = torch.autograd.grad(energy.sum(), x, create_graph=create_graph)
        forces = -grad
    if energy.numel() != 1:
        raise ValueError(f"assert_conservative: the model must return one energy, got shape {tuple(energy.shape)}")
    if forces.shape != x.shape:
        raise ValueError(f"assert_conservative: forces must have the positions' shape {tuple(x.shape)}, got {tuple(forces.shape)}")
    return energy.reshape(()), forces


def _fail_above(err: float, tol: float, finding: str, meaning: str) -> None:
    if err > tol:
        raise AssertionError(f"assert_conservative: {finding}, tolerance {tol:g}): {meaning}")


def assert_conservative(
    model: Callable[[torch.Tensor], Any],
    positions: torch.Tensor,
    *,
    directions: int = 4,
    step: float | None = None,
    rtol: float | None = None,
    generator: torch.Generator | None = None,
) -> dict[str, float]:
    """Check that a force field is conservative: forces are ``-dE/dr`` and their Jacobian is symmetric.

    Args:
        model: ``positions (N, 3) -> energy`` (a scalar tensor; forces are then its negative autograd
            gradient, which is what a kernel's backward must get right) or ``-> (energy, forces (N, 3))``.
        positions: ``(N, 3)`` float; float64 is recommended (float32 finite differences resolve only
            errors of ~1%).
        directions: random unit displacement directions ``d`` (of all 3N coordinates) to test along.
        step: the central finite-difference step in the positions' units (default 1e-4 in float64,
            1e-2 in float32).
        rtol: allowed error relative to the largest force component (default 1e-6 in float64, 3e-2 in
            float32).
        generator: for the random directions.

    Checks, along each direction ``d`` and pair ``(d, d')``:

    * ``(E(r + h d) - E(r - h d)) / 2h == -F(r) . d`` (central differences, error O(h^2));
    * ``d' . dF/dd == d . dF/dd'``: the force Jacobian (minus the Hessian) is symmetric, i.e. the force
      field has no curl; ``dF/dd`` is a central difference of the forces.

    Returns:
        ``{"force_error": ..., "curl_error": ...}``: the largest errors, relative to the largest force and to
        the largest force derivative ``|dF/dd|``.

    Raises:
        AssertionError: naming the check, the direction and the errors, when either exceeds ``rtol``.
    """
    if not isinstance(positions, torch.Tensor) or not positions.is_floating_point() or positions.dim() != 2 \
            or positions.shape[1] != 3:  # fmt: skip
        raise ValueError("assert_conservative: positions must be a floating-point (N, 3) tensor")
    double = positions.dtype == torch.float64
    h = step if step is not None else (1e-4 if double else 1e-2)
    tol = rtol if rtol is not None else (1e-6 if double else 3e-2)
    x = positions.detach()
    _, forces = _energy_and_forces(model, x, create_graph=False)
    forces = forces.detach()
    scale = float(forces.abs().max()) or 1.0
    d = torch.randn((directions, *x.shape), generator=generator, dtype=torch.float64).to(x)
    d = d / d.flatten(1).norm(dim=1).reshape(-1, 1, 1)
    force_error, curl_error = 0.0, 0.0
    jac = []  # dF/dd for each direction
    for k in range(directions):
        e_plus, f_plus = _energy_and_forces(model, x + h * d[k], create_graph=False)
        e_minus, f_minus = _energy_and_forces(model, x - h * d[k], create_graph=False)
        numeric = float(e_plus.detach() - e_minus.detach()) / (2 * h)
        analytic = -float((forces * d[k]).sum())
        err = abs(numeric - analytic) / scale
        force_error = max(force_error, err)
        _fail_above(err, tol, f"along direction {k} the energy's finite difference is {numeric:.10g} but -F.d is "
                    f"{analytic:.10g} (error {err:.3g} of the largest force {scale:.3g}", "the forces are not the "
                    "negative gradient of the energy")  # fmt: skip
        jac.append((f_plus.detach() - f_minus.detach()) / (2 * h))
    stiffness = max(float(j.abs().max()) for j in jac) or 1.0
    for i in range(directions):
        for j in range(i + 1, directions):
            a, b = float((d[j] * jac[i]).sum()), float((d[i] * jac[j]).sum())
            err = abs(a - b) / stiffness
            curl_error = max(curl_error, err)
            _fail_above(err, tol, f"the force Jacobian is not symmetric: d{j} . dF/dd{i} = {a:.10g} but d{i} . dF/dd{j} "
                        f"= {b:.10g} (error {err:.3g} of the largest force derivative {stiffness:.3g}",
                        "the force field has a curl")  # fmt: skip
    return {"force_error": force_error, "curl_error": curl_error}


# ----------------------------------------------------------------------------------------------------
# normalization, torch.compile and the float_tolerance fixture (e3nn.util.test)
# ----------------------------------------------------------------------------------------------------


def assert_normalized(
    func: Callable,
    irreps_in: Any = None,
    irreps_out: Any = None,
    normalization: str = "component",
    n_input: int = 10_000,
    n_weight: int | None = None,
    weights: Any = None,
    atol: float = 0.1,
) -> None:
    """Assert that ``func`` maps normalized inputs to normalized outputs, as ``e3nn.util.test.assert_normalized``.

    Inputs: ``n_input`` samples ``(n_input, irreps.dim)`` per irreps input (``irreps.randn`` with
    'component' normalization, ``E[x_i^2] = 1``; with ``normalization='norm'`` each irrep is divided by
    ``sqrt(2l+1)``), in torch's default dtype. The weights (default ``func.parameters()`` for a module)
    are redrawn from ``N(0, 1)`` ``n_weight`` times (default 20; 1 without weights). Every component of
    every irreps output must have ``E[y_i^2]`` within ``atol`` of 1 ('component') or ``1/(2l+1)``
    ('norm'); ``'cartesian_points'`` and ``None`` outputs are not checked.

    Raises:
        ValueError: an unknown ``normalization``, or inputs that cannot be generated (a ``None`` spec).
        AssertionError: naming the output irrep and its worst component error.
    """
    if normalization not in ("component", "norm"):
        raise ValueError(f"invalid normalization {normalization!r}: use 'component' or 'norm'")
    specs_in, specs_out = _infer_specs(func, irreps_in, irreps_out)
    if any(all(s.num_irreps == 0 for s in specs if isinstance(s, Irreps)) for specs in (specs_in, specs_out)):
        return  # nothing to normalize
    if weights is None:
        weights = func.parameters() if isinstance(func, torch.nn.Module) else []
    weights = list(weights)
    if not weights:
        if n_weight not in (None, 1):
            raise ValueError(f"without weights to redraw, n_weight must be 1 or None, got {n_weight}")
        n_weight = 1
    elif n_weight is None:
        n_weight = 20

    sums: list | None = None
    with torch.no_grad():
        for _ in range(n_weight):
            for w in weights:
                w.normal_()
            args = [_random_input(s, n_input, i) for i, s in enumerate(specs_in)]
            if normalization == "norm":
                for x, spec in zip(args, specs_in):
                    if isinstance(spec, Irreps):
                        for mul_ir, sl in zip(spec, spec.slices()):
                            x[:, sl] /= math.sqrt(mul_ir.ir.dim)
            outs = _as_tuple(func(*args))
            if len(outs) != len(specs_out):
                raise AssertionError(f"{_func_name(func)} returned {len(outs)} outputs for {len(specs_out)} irreps_out")
            squares = [y.detach().to(torch.float64).square().sum(dim=0) for y in outs]
            sums = squares if sums is None else [a + b for a, b in zip(sums, squares)]
    for k, (total, spec) in enumerate(zip(sums, specs_out)):
        if not isinstance(spec, Irreps):
            continue
        mean = total / (n_weight * n_input)
        for mul_ir, sl in zip(spec, spec.slices()):
            if sl.start == sl.stop:
                continue
            target = 1.0 if normalization == "component" else 1.0 / mul_ir.ir.dim
            worst = float((mean[sl] - target).abs().max())
            assert worst <= atol, (
                f"{_func_name(func)} output {k}, irrep {mul_ir}: < y_i^2 > is not ~= {target:.6f} "
                f"(max componentwise error {worst:.6f} > atol {atol})"
            )


def assert_torch_compile(compile_mode: str, func: Callable, *args: Any, **kwargs: Any):
    """Build ``func()`` (a module factory, e.g. ``functools.partial(Module, ...)``) with e3nn's ``jit_mode`` set
    to ``compile_mode`` (``'inductor'``, ``'eager'`` or ``'script'``; no effect on fastso3 modules), compile it
    with ``torch.compile(fullgraph=True)`` (default backend) after ``torch._dynamo.reset()``, run it on
    ``args``/``kwargs`` and return the compiled module, as ``e3nn.util.test.assert_torch_compile``. A graph
    break raises torch's error."""
    from .util import get_optimization_defaults, set_optimization_defaults

    before = get_optimization_defaults()["jit_mode"]
    try:
        set_optimization_defaults(jit_mode=compile_mode)
        module = func()
        torch._dynamo.reset()  # no cache from earlier compilations
        compiled = torch.compile(module, fullgraph=True)
        compiled(*args, **kwargs)
    finally:
        set_optimization_defaults(jit_mode=before)
    return compiled


def assert_auto_jitable(func: Callable, error_on_warnings: bool = True, n_trace_checks: int = 2, strict_shapes: bool = True):
    """e3nn's check that a module marked with ``@compile_mode`` compiles to TorchScript. fastso3 has no
    TorchScript: a marked module raises ``NotImplementedError`` (from :func:`fastso3.util.jit.compile`),
    an unmarked one ``ValueError`` as in e3nn. Present so that code importing it keeps importing."""
    from .util.jit import compile, get_compile_mode

    if get_compile_mode(func) is None:
        raise ValueError("assert_auto_jitable is only for modules marked with @compile_mode")
    return compile(func, n_trace_checks=n_trace_checks)


try:  # the float_tolerance fixture of e3nn's pytest plugin, where pytest is installed
    import pytest as _pytest
except ImportError:  # pragma: no cover - pytest is a test dependency only
    _pytest = None

if _pytest is not None:

    @_pytest.fixture(scope="session", autouse=True, params=["float32", "float64"])
    def float_tolerance(request):
        """e3nn's session fixture: runs the tests once with torch's default dtype float32 and once with
        float64, and yields the tolerance of that dtype as a 0-d tensor (1e-3 and 1e-9, as e3nn). Active
        only where a conftest imports it (``float_tolerance = fastso3.testing.float_tolerance``)."""
        dtype = {"float32": torch.float32, "float64": torch.float64}[request.param]
        with default_dtype(dtype):
            yield torch.as_tensor(FLOAT_TOLERANCE[dtype], dtype=dtype)
