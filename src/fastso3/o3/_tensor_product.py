"""Tensor-product modules with e3nn 0.6.0's constructors, numbers, weight layout and state dicts.

Each module builds its :class:`~fastso3.core.tensor_product.TensorProductPlan` and its CG buffers once,
in ``__init__``; ``forward`` only executes the plan (``fastso3.kernels.reference.tensor_product``).
See ``docs/conventions.md`` section 5 for the math (connection modes, normalization, layout).
"""

from __future__ import annotations

import warnings
from typing import Any, Iterator, NamedTuple, Optional, Sequence, Union

import torch

from ..core.irreps import Irreps
from ..core.tensor_product import Instruction, TensorProductPlan, tensor_product_plan
from ..core.tensor_product_builders import (
    elementwise_tensor_product_spec,
    full_tensor_product_spec,
    fully_connected_tensor_product_spec,
    tensor_square_spec,
)
from ..core.channelwise import is_channelwise
from ..kernels import registry
from ..core.uvw import is_uvw
from ..kernels.channelwise import channelwise_factored_tensor_product, channelwise_tensor_product, register_channelwise_plan
from ..kernels.uvw import register_uvw_plan, uvw_factored_tensor_product, uvw_tensor_product
from ..kernels.reference.tensor_product import tensor_product, tensor_product_right

__all__ = [
    "FactoredWeight",
    "Instruction",
    "MissingWeightError",
    "TensorProduct",
    "FullyConnectedTensorProduct",
    "FullTensorProduct",
    "ElementwiseTensorProduct",
    "TensorSquare",
    "Norm",
]

class MissingWeightError(ValueError, RuntimeError):
    """``forward`` without ``weight`` on a module without internal weights. Also a RuntimeError, which
    e3nn 0.6.0 raises there, so code catching either works."""


# Buffers of e3nn's generated code (CG tables, triu indices): present in e3nn state dicts, never needed here.
_E3NN_CODEGEN_PREFIXES = ("_compiled_main_left_right.", "_compiled_main_right.", "_compiled_main.")



class FactoredWeight(NamedTuple):
    """Per-sample weights ``hidden @ matrix`` passed as their two factors (a radial MLP's last hidden layer
    and its last linear layer, see :meth:`fastso3.nn.FullyConnectedNet.factored`).

    * ``hidden``: ``(..., H)``, batch dimensions broadcast with the tensor product's inputs (for
      :func:`fastso3.ops.tensor_product_conv`: exactly ``(E, H)``, one row per edge);
    * ``matrix``: ``(H, weight_numel)``, the inputs' dtype.

    A fully connected (``uvw``) product applies ``matrix`` inside its kernel, and a channel-wise (``uvu``)
    product forms the weights of a block of samples at a time (up to 16 MiB, in cache), so the
    ``(..., weight_numel)`` weights and their gradient are never stored (on CPU; the Triton backend multiplies
    the factors first); other products multiply the factors first. Either way the result is
    ``forward(x, y, hidden @ matrix)``.
    """

    hidden: torch.Tensor
    matrix: torch.Tensor

    def materialize(self) -> torch.Tensor:
        """The weights ``hidden @ matrix``: ``(..., weight_numel)``."""
        return self.hidden @ self.matrix


WeightLike = Union[torch.Tensor, Sequence[torch.Tensor], FactoredWeight, None]


def _drop_e3nn_codegen_keys(state_dict: dict, prefix: str) -> None:
    """Remove e3nn's generated-code buffers (``_compiled_main_left_right._w3j_*``...) under ``prefix``."""
    drop = [k for k in state_dict if k.startswith(prefix) and k[len(prefix) :].startswith(_E3NN_CODEGEN_PREFIXES)]
    for k in drop:
        del state_dict[k]


def _prod(shape: Sequence[int]) -> int:
    out = 1
    for s in shape:
        out *= s
    return out


def _kernel_forward(
    kernel: str, plan: TensorProductPlan, x: torch.Tensor, y: torch.Tensor, w: Union[torch.Tensor, FactoredWeight],
    shared: bool, backend: str,
) -> torch.Tensor:  # fmt: skip
    """The kernel op ``kernel`` ('channelwise' or 'uvw', the latter also with factored weights) on flattened,
    broadcast batches."""
    factored = isinstance(w, FactoredWeight)
    w_batch = () if shared else ((w.hidden if factored else w).shape[:-1],)
    batch = torch.broadcast_shapes(x.shape[:-1], y.shape[:-1], *w_batch)
    z = _prod(batch)

    def flat(t: torch.Tensor) -> torch.Tensor:
        return t.expand(*batch, t.shape[-1]).reshape(z, t.shape[-1])

    if factored:
        factored_product = uvw_factored_tensor_product if kernel == "uvw" else channelwise_factored_tensor_product
        out = factored_product(plan, flat(x), flat(y), flat(w.hidden), w.matrix, backend)
    elif kernel == "channelwise":
        out = channelwise_tensor_product(plan, flat(x), flat(y), flat(w), backend)
    else:
        out = uvw_tensor_product(plan, flat(x), flat(y), w if shared else flat(w), shared, backend)
    return out.reshape(*batch, plan.irreps_out.dim)


def _check_features(x: Any, dim: int, name: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() == 0 or x.shape[-1] != dim:
        raise ValueError(f"{name} must have shape (..., {dim}), got {tuple(x.shape)}")


class TensorProduct(torch.nn.Module):
    r"""Tensor product of two irreps features with weighted paths (e3nn's ``o3.TensorProduct``).

    ``forward(x, y, weight=None)``:

    * ``x``: ``(..., irreps_in1.dim)``, float32 or float64;
    * ``y``: ``(..., irreps_in2.dim)``, same dtype (batch dimensions broadcast);
    * ``weight``: ``(weight_numel,)`` if ``shared_weights``, ``(..., weight_numel)`` otherwise (batch
      dimensions broadcast with the inputs'), or a list of per-instruction tensors of shape
      ``path_shape`` (``(...) + path_shape``), or a :class:`FactoredWeight` ``(hidden, matrix)`` (per-sample
      weights ``hidden @ matrix``, applied inside the kernel of fully connected products); only for modules
      without ``internal_weights``. A module with internal weights uses an explicit ``weight`` instead of
      its ``.weight`` (e3nn's rule); one without raises :class:`MissingWeightError` when it is omitted;
    * returns ``(..., irreps_out.dim)`` in the inputs' dtype.

    Each instruction ``(i_in1, i_in2, i_out, mode, has_weight[, path_weight])`` is a path
    ``c * sum_ijk C_ijk x_ui y_vj`` with the weights of its connection mode (uvw, uvu, uvv, uuw, uuu,
    uvuv, uvu<v, u<vw); ``c`` follows ``irrep_normalization`` ('component', 'norm', 'none') and
    ``path_normalization`` ('element', 'path', 'none'), see :mod:`fastso3.core.tensor_product`.

    Args:
        irreps_in1, irreps_in2, irreps_out: irreps of ``x``, ``y`` and the output.
        instructions: list of e3nn instruction tuples.
        in1_var, in2_var, out_var: variances per entry (default 1).
        irrep_normalization: default 'component'.
        path_normalization: default 'element'.
        internal_weights: store the weights as a Parameter ``weight`` (randn init). Default:
            ``shared_weights and any(has_weight)``.
        shared_weights: one weight vector for the whole batch (default True); False: per-sample
            weights ``(..., weight_numel)`` passed to ``forward``.
        compile_left_right, compile_right, _specialized_code, _optimize_einsums: accepted for e3nn
            compatibility and ignored (``right`` is always available).
        normalization: deprecated alias of ``irrep_normalization``.
        backend: None (default: a compiled CPU kernel on CPU float32/float64 for channel-wise ``uvu``
            products with per-sample weights and multiplicity-1 second inputs, and for products whose
            paths are all weighted ``uvw`` (fully connected); the Triton kernel for channel-wise products
            on CUDA; the reference otherwise),
            ``'cpu'`` or ``'triton'`` (those kernels; raise where they do not apply) or ``'reference'`` (per-path
            einsums).

    Attributes:
        plan: the :class:`~fastso3.core.tensor_product.TensorProductPlan`.
        irreps_in1, irreps_in2, irreps_out, instructions, weight_numel, shared_weights, internal_weights.
        output_mask: buffer ``(irreps_out.dim,)``, 1 where a path reaches.
    """

    def __init__(
        self,
        irreps_in1: Any,
        irreps_in2: Any,
        irreps_out: Any,
        instructions: Sequence[Any],
        in1_var: Optional[Sequence[float]] = None,
        in2_var: Optional[Sequence[float]] = None,
        out_var: Optional[Sequence[float]] = None,
        irrep_normalization: Optional[str] = None,
        path_normalization: Optional[str] = None,
        internal_weights: Optional[bool] = None,
        shared_weights: Optional[bool] = None,
        compile_left_right: bool = True,
        compile_right: bool = False,
        normalization: Optional[str] = None,
        _specialized_code: Optional[bool] = None,
        _optimize_einsums: Optional[bool] = None,
        *,
        backend: Optional[str] = None,
    ) -> None:
        super().__init__()
        if backend is not None and backend not in registry.BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose one of {registry.BACKENDS} or None")
        self.backend = backend
        if normalization is not None:
            warnings.warn("`normalization` is deprecated; use `irrep_normalization`", DeprecationWarning, stacklevel=2)
            irrep_normalization = normalization
        plan = tensor_product_plan(
            irreps_in1,
            irreps_in2,
            irreps_out,
            instructions,
            in1_var=in1_var,
            in2_var=in2_var,
            out_var=out_var,
            irrep_normalization=irrep_normalization,
            path_normalization=path_normalization,
        )
        self._setup(plan, internal_weights, shared_weights)

    # --- construction ---------------------------------------------------------------------------

    def _setup(self, plan: TensorProductPlan, internal_weights: Optional[bool], shared_weights: Optional[bool]) -> None:
        if shared_weights is False and internal_weights is None:
            internal_weights = False
        if shared_weights is None:
            shared_weights = True
        if internal_weights is None:
            internal_weights = shared_weights and any(ins.has_weight for ins in plan.instructions)
        if internal_weights and not shared_weights:
            raise ValueError("internal_weights=True requires shared_weights=True")
        self.plan = plan
        # The compiled CPU kernels cover channel-wise products with per-sample weights (MACE/NequIP's
        # interaction) and fully connected ('uvw') products; their tables are registered once, here.
        self._kernel: Optional[str] = None
        if not shared_weights and is_channelwise(plan):
            self._kernel = "channelwise"
            register_channelwise_plan(plan)
        elif is_uvw(plan):
            self._kernel = "uvw"
            register_uvw_plan(plan)
        self.irreps_in1 = plan.irreps_in1
        self.irreps_in2 = plan.irreps_in2
        self.irreps_out = plan.irreps_out
        self.instructions = list(plan.instructions)
        self.weight_numel = plan.weight_numel
        self.shared_weights = bool(shared_weights)
        self.internal_weights = bool(internal_weights)
        self._in1_dim = plan.irreps_in1.dim
        self._in2_dim = plan.irreps_in2.dim

        if self.internal_weights and self.weight_numel > 0:
            self.weight = torch.nn.Parameter(torch.randn(self.weight_numel))
        else:
            self.register_buffer("weight", torch.Tensor())
        self.register_buffer("output_mask", torch.tensor(plan.output_mask, dtype=torch.get_default_dtype()))

        # Constants of the execution, built once: CG blocks (shared by equal (l1, l2, l3)) and the
        # u < v pair indices. Non-persistent: they follow .to() but stay out of the state dict.
        cg_names = []
        pair_names = []
        for p in plan.paths:
            if p.empty:
                cg_names.append(None)
            else:
                name = "_cg_{}_{}_{}".format(*p.cg_key)
                if name not in self._buffers:
                    self.register_buffer(name, torch.tensor(p.cg, dtype=torch.get_default_dtype()), persistent=False)
                cg_names.append(name)
            if p.pairs is None or p.empty:
                pair_names.append(None)
            else:
                name = f"_pairs_{p.mul1}"
                if name not in self._buffers:
                    self.register_buffer(name, torch.tensor(p.pairs, dtype=torch.long), persistent=False)
                pair_names.append(name)
        self._cg_names = tuple(cg_names)
        self._pair_names = tuple(pair_names)

    def _apply(self, fn: Any, recurse: bool = True) -> "TensorProduct":
        # After a dtype/device change, rebuild the CG buffers from the plan's float64 values, so that
        # a float32 module converted to float64 has exact (not float32-rounded) coefficients.
        super()._apply(fn, recurse)
        exact = {}
        for p, name in zip(self.plan.paths, self._cg_names):
            if name is not None and name not in exact:
                old = self._buffers[name]
                exact[name] = torch.tensor(p.cg, dtype=old.dtype, device=old.device)
        self._buffers.update(exact)
        return self

    @classmethod
    def _from_plan(
        cls, plan: TensorProductPlan, internal_weights: Optional[bool] = None, shared_weights: Optional[bool] = None
    ) -> "TensorProduct":
        """A module of this class executing ``plan`` (used by :mod:`fastso3.compat`)."""
        module = cls.__new__(cls)
        torch.nn.Module.__init__(module)
        module.backend = None
        module._setup(plan, internal_weights, shared_weights)
        return module

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}({self.irreps_in1.simplify()} x {self.irreps_in2.simplify()} -> "
            f"{self.irreps_out.simplify()} | {self.plan.num_paths} paths | {self.weight_numel} weights)"
        )

    # --- state dict -----------------------------------------------------------------------------

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs):
        # Accept e3nn state dicts: their generated-code buffers (CG tables) are recomputed here.
        _drop_e3nn_codegen_keys(state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs)

    # --- weights --------------------------------------------------------------------------------

    def _constants(self) -> tuple:
        buffers = self._buffers
        cgs = tuple(None if n is None else buffers[n] for n in self._cg_names)
        pairs = tuple(None if n is None else buffers[n] for n in self._pair_names)
        return cgs, pairs

    def _flatten_weight_list(self, weight: Sequence[torch.Tensor]) -> torch.Tensor:
        shapes = [ins.path_shape for ins in self.instructions if ins.has_weight]
        if len(weight) != len(shapes):
            raise ValueError(f"expected {len(shapes)} weight tensors (one per weighted instruction), got {len(weight)}")
        flat = []
        for i, (w, shape) in enumerate(zip(weight, shapes)):
            if not isinstance(w, torch.Tensor):
                raise TypeError(f"weight[{i}] must be a torch.Tensor, got {type(w).__name__}")
            n = len(shape)
            if tuple(w.shape[w.dim() - n :]) != tuple(shape) or w.dim() < n or (self.shared_weights and w.dim() != n):
                expected = shape if self.shared_weights else "(...) + " + str(tuple(shape))
                raise ValueError(f"weight[{i}] must have shape {expected}, got {tuple(w.shape)}")
            flat.append(w.reshape(*w.shape[: w.dim() - n], _prod(shape)))
        if not self.shared_weights:
            batch = torch.broadcast_shapes(*[w.shape[:-1] for w in flat])
            flat = [w.expand(*batch, w.shape[-1]) for w in flat]
        return torch.cat(flat, dim=-1)

    def _get_weights(self, weight: WeightLike, dtype: Optional[torch.dtype] = None) -> torch.Tensor:
        if isinstance(weight, FactoredWeight):  # a NamedTuple: not a list of per-instruction weights
            weight = self._check_factored(weight).materialize()
        if isinstance(weight, (list, tuple)):
            weight = self._flatten_weight_list(weight)
        if weight is None:
            if self.weight_numel > 0 and not self.internal_weights:
                raise MissingWeightError(
                    f"{self.__class__.__name__} has no internal weights: pass weight of shape "
                    + (f"({self.weight_numel},)" if self.shared_weights else f"(..., {self.weight_numel})")
                )
            weight = self.weight
        else:
            if not isinstance(weight, torch.Tensor):
                raise TypeError(f"weight must be a torch.Tensor or a list of tensors, got {type(weight).__name__}")
            if self.shared_weights:
                if tuple(weight.shape) != (self.weight_numel,):
                    raise ValueError(f"weight must have shape ({self.weight_numel},) (shared weights), got {tuple(weight.shape)}")
            elif weight.dim() < 2 or weight.shape[-1] != self.weight_numel:
                raise ValueError(
                    f"weight must have shape (..., {self.weight_numel}) with batch dimensions (shared_weights=False), "
                    f"got {tuple(weight.shape)}"
                )
        if dtype is not None and self.weight_numel > 0 and weight.dtype != dtype:
            raise TypeError(f"weight is {weight.dtype} but the inputs are {dtype}")
        return weight

    def _check_dtype(self, dtype: torch.dtype) -> None:
        if self.output_mask.dtype != dtype:
            raise TypeError(
                f"the inputs are {dtype} but {self.__class__.__name__} is {self.output_mask.dtype}; "
                f"convert one of them (module.to({dtype}))"
            )

    # --- execution ------------------------------------------------------------------------------

    def forward(self, x: torch.Tensor, y: torch.Tensor, weight: WeightLike = None) -> torch.Tensor:
        """``(..., irreps_in1.dim) x (..., irreps_in2.dim) -> (..., irreps_out.dim)``; see the class docstring."""
        _check_features(x, self._in1_dim, "x")
        _check_features(y, self._in2_dim, "y")
        if x.dtype != y.dtype:
            raise TypeError(f"x and y must have the same dtype, got {x.dtype} and {y.dtype}")
        self._check_dtype(x.dtype)
        if isinstance(weight, FactoredWeight):
            weight = self._check_factored(weight, x)
            if self._kernel in ("uvw", "channelwise"):
                return _kernel_forward(self._kernel, self.plan, x, y, weight, False, self._run_backend(x))
            weight = weight.materialize()
        w = self._get_weights(weight, x.dtype)
        backend = self._run_backend(x)
        if backend != "reference":
            return _kernel_forward(self._kernel, self.plan, x, y, w, self.shared_weights, backend)
        cgs, pairs = self._constants()
        return tensor_product(self.plan, x, y, w, cgs, pairs, self.shared_weights)

    def _check_factored(self, weight: FactoredWeight, x: Optional[torch.Tensor] = None) -> FactoredWeight:
        """Checks a FactoredWeight for this module (and the dtype and device of the inputs ``x``, if given)."""
        if self.internal_weights or self.shared_weights:
            raise ValueError(
                f"FactoredWeight gives per-sample weights: build {self.__class__.__name__} with "
                "shared_weights=False (and no internal weights)"
            )
        hidden, matrix = weight
        for name, t in (("hidden", hidden), ("matrix", matrix)):
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"FactoredWeight.{name} must be a torch.Tensor, got {type(t).__name__}")
            if x is not None and (t.dtype != x.dtype or t.device != x.device):
                raise TypeError(f"FactoredWeight.{name} is {t.dtype} on {t.device}; the inputs are {x.dtype} on {x.device}")
        if matrix.dim() != 2 or matrix.shape[1] != self.weight_numel:
            raise ValueError(f"FactoredWeight.matrix must have shape (H, {self.weight_numel}), got {tuple(matrix.shape)}")
        if hidden.dim() < 2 or hidden.shape[-1] != matrix.shape[0]:
            raise ValueError(
                f"FactoredWeight.hidden must have shape (..., {matrix.shape[0]}) with batch dimensions, got {tuple(hidden.shape)}"
            )
        return weight

    def _run_backend(self, x: torch.Tensor) -> str:
        """The backend of this call: a kernel backend where the plan has a kernel, else 'reference'. An
        explicitly requested backend that cannot run raises."""
        if self._kernel is None:
            if self.backend not in (None, "reference"):
                raise registry.BackendUnavailable(
                    f"tensor_product: backend {self.backend!r} covers channel-wise ('uvu') products with per-sample "
                    "weights and multiplicity-1 second inputs, and fully connected ('uvw') products, only; use "
                    "backend='reference' or None"
                )
            return "reference"
        return registry.resolve_backend(f"{self._kernel}_tensor_product", self.backend, x.device, x.dtype)

    def right(self, y: torch.Tensor, weight: WeightLike = None) -> torch.Tensor:
        """The operator of ``x -> forward(x, y)``: ``(..., irreps_in2.dim) -> (..., irreps_in1.dim, irreps_out.dim)``.

        ``forward(x, y, w) == einsum('...i,...ij->...j', x, right(y, w))``. Same dtype and weight rules
        as ``forward``. Raises NotImplementedError for modes ``uvu<v`` and ``u<vw`` (as e3nn).
        """
        _check_features(y, self._in2_dim, "y")
        self._check_dtype(y.dtype)
        w = self._get_weights(weight, y.dtype)
        cgs, _ = self._constants()
        return tensor_product_right(self.plan, y, w, cgs, self.shared_weights)

    # --- weight views ---------------------------------------------------------------------------

    def _weight_for_views(self, weight: WeightLike) -> torch.Tensor:
        if isinstance(weight, (list, tuple)):
            return self._flatten_weight_list(weight)
        if weight is None:
            if not self.internal_weights and self.weight_numel > 0:
                raise MissingWeightError("weights must be provided when the module has no internal weights")
            return self.weight
        if weight.shape[-1] != self.weight_numel:
            raise ValueError(f"weight must have shape (..., {self.weight_numel}), got {tuple(weight.shape)}")
        return weight

    def weight_view_for_instruction(self, instruction: int, weight: WeightLike = None) -> torch.Tensor:
        """View ``(...) + path_shape`` of the weights of instruction ``instruction`` (which must have weights).

        Unlike e3nn 0.6.0 (which also counts the sizes of earlier unweighted instructions), the
        offset is that of the flat weight layout used by ``forward``.
        """
        ins = self.instructions[instruction]
        if not ins.has_weight:
            raise ValueError(f"Instruction {instruction} has no weights.")
        weight = self._weight_for_views(weight)
        s = self.plan.paths[instruction].weight_slice
        return weight.narrow(-1, s.start, s.stop - s.start).view(*weight.shape[:-1], *ins.path_shape)

    def weight_views(self, weight: WeightLike = None, yield_instruction: bool = False) -> Iterator[Any]:
        """Views ``(...) + path_shape`` of the weights of each weighted instruction, in order.

        Yields ``(instruction_index, instruction, view)`` with ``yield_instruction``, else ``view``.
        """
        weight = self._weight_for_views(weight)
        for i, (ins, p) in enumerate(zip(self.instructions, self.plan.paths)):
            if ins.has_weight:
                s = p.weight_slice
                view = weight.narrow(-1, s.start, s.stop - s.start).view(*weight.shape[:-1], *ins.path_shape)
                yield (i, ins, view) if yield_instruction else view

    # --- drawing --------------------------------------------------------------------------------

    def visualize(self, weight: WeightLike = None, plot_weight: bool = True, aspect_ratio: Any = 1, ax: Any = None):
        """Draw the paths: in1 and in2 entries (left), one node per instruction, output entries (right).

        Weighted paths are coloured by the mean square of their weights (``plot_weight``, when weights
        are available), unweighted ones black. Works with any matplotlib backend (Agg included).

        Args:
            weight: like ``forward``'s (default: the internal weights, if any).
            plot_weight: colour weighted paths by their weights.
            aspect_ratio: a positive number or 'auto' (passed to ``ax.set_aspect``).
            ax: matplotlib Axes to draw on; a new Figure is made if None.

        Returns:
            ``(fig, ax)``.
        """
        import matplotlib
        from matplotlib.figure import Figure

        if not (aspect_ratio == "auto" or (isinstance(aspect_ratio, (int, float)) and aspect_ratio > 0)):
            raise ValueError(f"aspect_ratio must be 'auto' or a positive number, got {aspect_ratio!r}")
        if ax is None:
            fig = Figure()
            ax = fig.add_subplot()
        else:
            fig = ax.get_figure()

        strength = None
        if plot_weight and (weight is not None or self.internal_weights) and self.weight_numel > 0:
            with torch.no_grad():
                values = [0.0] * len(self.instructions)
                for i, _, view in self.weight_views(weight, yield_instruction=True):
                    values[i] = float(view.detach().double().pow(2).mean().cpu())
            top = max(values) or 1.0
            strength = [v / top for v in values]
        cmap = matplotlib.colormaps["Blues"]

        def ys(n: int) -> list:
            return [(k + 1) / (n + 1) for k in range(n)]

        n_in = len(self.irreps_in1) + len(self.irreps_in2)
        y_in = ys(n_in + (1 if self.irreps_in1 and self.irreps_in2 else 0))
        y1 = y_in[: len(self.irreps_in1)]
        y2 = y_in[len(y_in) - len(self.irreps_in2) :]
        yo = ys(len(self.irreps_out))
        yp = ys(len(self.instructions))
        for k, ins in enumerate(self.instructions):
            if not ins.has_weight:
                color = "black"
            elif strength is not None:
                color = cmap(0.3 + 0.7 * strength[k])
            else:
                color = "green"
            node = (1.0, yp[k])
            for start in ((0.0, y1[ins.i_in1]), (0.0, y2[ins.i_in2])):
                ax.plot([start[0], node[0]], [start[1], node[1]], color=color, lw=1.2, alpha=0.7)
            ax.plot([node[0], 2.0], [node[1], yo[ins.i_out]], color=color, lw=1.2, alpha=0.7)
            ax.plot([node[0]], [node[1]], marker="o", ms=3, color=color)
            ax.annotate(ins.connection_mode, node, textcoords="offset points", xytext=(0, 4), ha="center", fontsize=7)

        def label(mul_ir: Any) -> str:
            return f"${mul_ir.ir}$" if mul_ir.mul == 1 else f"${mul_ir.mul} \\times {mul_ir.ir}$"

        for y, mul_ir in zip(y1, self.irreps_in1):
            ax.annotate(label(mul_ir), (0.0, y), textcoords="offset points", xytext=(-4, 0), ha="right", va="center")
        for y, mul_ir in zip(y2, self.irreps_in2):
            ax.annotate(label(mul_ir), (0.0, y), textcoords="offset points", xytext=(-4, 0), ha="right", va="center", color="dimgray")
        for y, mul_ir in zip(yo, self.irreps_out):
            ax.annotate(label(mul_ir), (2.0, y), textcoords="offset points", xytext=(4, 0), ha="left", va="center")
        ax.set_xlim(-0.6, 2.6)
        ax.set_ylim(0, 1)
        ax.set_aspect(aspect_ratio)
        ax.axis("off")
        return fig, ax


class FullyConnectedTensorProduct(TensorProduct):
    """Weighted ``uvw`` paths for every ``(i_in1, i_in2, i_out)`` with ``ir_out in ir1 x ir2``.

    Loop order ``i_in1, i_in2, i_out``; weights ``(m1, m2, mo)`` row-major per path. Shapes as
    :class:`TensorProduct`: ``(..., in1.dim) x (..., in2.dim) -> (..., out.dim)``.
    """

    def __init__(
        self,
        irreps_in1: Any,
        irreps_in2: Any,
        irreps_out: Any,
        irrep_normalization: Optional[str] = None,
        path_normalization: Optional[str] = None,
        **kwargs: Any,
    ) -> None:
        spec = fully_connected_tensor_product_spec(irreps_in1, irreps_in2, irreps_out, irrep_normalization, path_normalization)
        super().__init__(**spec, **kwargs)


class FullTensorProduct(TensorProduct):
    """All products ``x_u (x) y_v`` (unweighted ``uvuv`` paths), output sorted (torch order), not simplified.

    The inputs are simplified first. ``(..., in1.dim) x (..., in2.dim) -> (..., out.dim)``, e.g.
    ``0e+1o x 0e+1o -> 1x0e+1x0e+1x1o+1x1o+1x1e+1x2e``.
    """

    def __init__(
        self,
        irreps_in1: Any,
        irreps_in2: Any,
        filter_ir_out: Any = None,
        irrep_normalization: Optional[str] = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**full_tensor_product_spec(irreps_in1, irreps_in2, filter_ir_out, irrep_normalization), **kwargs)


class ElementwiseTensorProduct(TensorProduct):
    """``z_u = x_u (x) y_u`` (unweighted ``uuu`` paths); output in generation order, unsorted.

    The inputs are simplified, then split so that their multiplicities align (``num_irreps`` must
    match). ``(..., in1.dim) x (..., in2.dim) -> (..., out.dim)``.
    """

    def __init__(
        self,
        irreps_in1: Any,
        irreps_in2: Any,
        filter_ir_out: Any = None,
        irrep_normalization: Optional[str] = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**elementwise_tensor_product_spec(irreps_in1, irreps_in2, filter_ir_out, irrep_normalization), **kwargs)


class TensorSquare(TensorProduct):
    """Square ``x (x) x`` of one input, reduced to irreps.

    Without ``irreps_out``: no weights; ``uvuv`` for pairs of different entries, ``uvu<v`` (mul > 1)
    plus ``uuu`` (even ``l_out`` only) within an entry; output sorted (torch order). With
    ``irreps_out``: weighted ``uvw``, ``u<vw`` and ``uuw`` paths into the given (simplified) output.
    The input is simplified. ``forward(x, weight=None)``: ``(..., irreps_in.dim) -> (..., irreps_out.dim)``.
    """

    def __init__(
        self,
        irreps_in: Any,
        irreps_out: Any = None,
        filter_ir_out: Any = None,
        irrep_normalization: Optional[str] = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**tensor_square_spec(irreps_in, irreps_out, filter_ir_out, irrep_normalization), **kwargs)

    def _setup(self, plan: TensorProductPlan, internal_weights: Optional[bool], shared_weights: Optional[bool]) -> None:
        super()._setup(plan, internal_weights, shared_weights)
        self.irreps_in = plan.irreps_in1

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}({self.irreps_in} -> {self.irreps_out.simplify()} | "
            f"{self.plan.num_paths} paths | {self.weight_numel} weights)"
        )

    def forward(self, x: torch.Tensor, weight: WeightLike = None) -> torch.Tensor:  # type: ignore[override]
        """``(..., irreps_in.dim) -> (..., irreps_out.dim)``, float32 or float64."""
        return super().forward(x, x, weight)


class Norm(torch.nn.Module):
    """Euclidean norm of each irrep copy: ``(..., irreps_in.dim) -> (..., irreps_out.dim)`` with
    ``irreps_out = num_irreps x 0e`` (simplified). ``squared=True`` gives the squared norm.

    A ``uuu`` tensor product of the (simplified) input with itself, ``path_weight = 2l+1``; the
    square root goes through ``relu`` so that the gradient at 0 is finite where possible (as e3nn).
    State-dict keys: ``tp.weight``, ``tp.output_mask`` (as e3nn).
    """

    def __init__(self, irreps_in: Any, squared: bool = False) -> None:
        super().__init__()
        irreps_in = Irreps(irreps_in).simplify()
        irreps_out = Irreps([(mul, "0e") for mul, _ in irreps_in])
        instructions = [(i, i, i, "uuu", False, ir.dim) for i, (mul, ir) in enumerate(irreps_in)]
        self.tp = TensorProduct(irreps_in, irreps_in, irreps_out, instructions, irrep_normalization="component")
        self.irreps_in = irreps_in
        self.irreps_out = irreps_out.simplify()
        self.squared = squared

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.irreps_in})"

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``(..., irreps_in.dim) -> (..., irreps_out.dim)``, float32 or float64."""
        out = self.tp(features, features)
        return out if self.squared else out.relu().sqrt()

