"""Conversion between e3nn 0.6.0 modules and their fastso3 twins, with the same weights.

* :func:`from_e3nn` turns an e3nn ``TensorProduct`` (or ``FullyConnectedTensorProduct``,
  ``FullTensorProduct``, ``ElementwiseTensorProduct``, ``TensorSquare``), ``Linear`` or ``Norm`` into
  the fastso3 module of the same kind, computing the same numbers;
* :func:`to_e3nn` does the reverse (needs e3nn installed);
* :func:`alias_e3nn` makes ``import e3nn`` resolve to fastso3 (:mod:`fastso3.compat_e3nn`).

The tensor-product twins reproduce the other library's stored path coefficients ``c`` exactly: the
twin is built with ``irrep_normalization='none'``, ``path_normalization='none'`` and user path weight
``c * c``, whose coefficient is ``sqrt(c * c) == c`` bit for bit (IEEE round-to-nearest). Weights,
biases, dtype and device are copied. fastso3 modules also load e3nn state dicts directly
(``module.load_state_dict(e3nn_module.state_dict())``): e3nn's generated-code buffers
(``_compiled_main_left_right._w3j_*``, ``_compiled_main_right.*``) are ignored, everything else
(``weight``, ``bias``, ``output_mask``) must match as usual.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any, Iterator

import torch

from .compat_e3nn import alias_e3nn
from .core.cg import e3nn_044_sign
from .core.irreps import Irreps
from .core.tensor_product import linear_plan, tensor_product_plan
from .o3._linear import Linear
from .o3._tensor_product import (
    ElementwiseTensorProduct,
    FullTensorProduct,
    FullyConnectedTensorProduct,
    Norm,
    TensorProduct,
    TensorSquare,
)

__all__ = ["E3nnNequIP", "alias_e3nn", "from_e3nn", "from_mace", "mace_inputs", "to_e3nn", "to_mace"]

_TP_CLASSES = ("TensorSquare", "FullTensorProduct", "ElementwiseTensorProduct", "FullyConnectedTensorProduct", "TensorProduct")
_OURS = {
    "TensorSquare": TensorSquare,
    "FullTensorProduct": FullTensorProduct,
    "ElementwiseTensorProduct": ElementwiseTensorProduct,
    "FullyConnectedTensorProduct": FullyConnectedTensorProduct,
    "TensorProduct": TensorProduct,
}


def _kind(module: Any, names: tuple) -> str:
    """The first of ``names`` that is the name of a class in ``module``'s MRO."""
    mro = [c.__name__ for c in type(module).__mro__]
    for name in names:
        if name in mro:
            return name
    raise TypeError(f"unsupported module type {type(module).__name__}")


def _dtype_device(module: torch.nn.Module) -> tuple:
    mask = module.output_mask
    return mask.dtype, mask.device


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype) -> Iterator[None]:
    """Build e3nn modules with ``dtype`` as the default dtype: e3nn computes its CG tables in the
    default dtype, and a float32 table converted to float64 stays float32-rounded."""
    old = torch.get_default_dtype()
    if dtype.is_floating_point:
        torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def _copy(dst: torch.Tensor, src: torch.Tensor) -> None:
    with torch.no_grad():
        dst.copy_(src.detach())


# ------------------------------------------------------------------------------------------------
# e3nn -> fastso3
# ------------------------------------------------------------------------------------------------


def _tp_from_e3nn(module: Any) -> TensorProduct:
    kind = _kind(module, _TP_CLASSES)
    instructions = [
        (ins.i_in1, ins.i_in2, ins.i_out, ins.connection_mode, ins.has_weight, float(ins.path_weight) * float(ins.path_weight))
        for ins in module.instructions
    ]
    plan = tensor_product_plan(
        Irreps(str(module.irreps_in1)),
        Irreps(str(module.irreps_in2)),
        Irreps(str(module.irreps_out)),
        instructions,
        irrep_normalization="none",
        path_normalization="none",
    )
    twin = _OURS[kind]._from_plan(plan, internal_weights=module.internal_weights, shared_weights=module.shared_weights)
    dtype, device = _dtype_device(module)
    twin.to(dtype=dtype, device=device)
    if twin.internal_weights and twin.weight_numel > 0:
        _copy(twin.weight, module.weight)
    _copy(twin.output_mask, module.output_mask)
    return twin


def _linear_config_from_e3nn(module: Any) -> dict:
    """The Linear constructor arguments that reproduce ``module``'s instructions and coefficients."""
    irreps_in, irreps_out = Irreps(str(module.irreps_in)), Irreps(str(module.irreps_out))
    pairs = [(ins.i_in, ins.i_out) for ins in module.instructions if ins.i_in != -1]
    flags = [False] * len(irreps_out)
    for ins in module.instructions:
        if ins.i_in == -1:
            flags[ins.i_out] = True
    f_in = f_out = None
    weight = getattr(module, "weight", None)
    if module.internal_weights and weight is not None and weight.dim() == 3:
        f_in, f_out = int(weight.shape[0]), int(weight.shape[1])
    coefficients = [float(ins.path_weight) for ins in module.instructions if ins.i_in != -1]
    for norm in ("element", "path"):
        plan = linear_plan(irreps_in, irreps_out, pairs, flags, norm, f_in, f_out)
        if [ins.path_weight for ins in plan.weight_instructions] == coefficients:
            return dict(instructions=pairs, biases=flags, path_normalization=norm, f_in=f_in, f_out=f_out)
    raise ValueError(
        "from_e3nn: cannot reproduce the coefficients of this e3nn Linear (is it built with f_in/f_out and external "
        "weights? those sizes cannot be read back); build fastso3.o3.Linear directly"
    )


def _linear_from_e3nn(module: Any) -> Linear:
    config = _linear_config_from_e3nn(module)
    twin = Linear(
        Irreps(str(module.irreps_in)),
        Irreps(str(module.irreps_out)),
        internal_weights=module.internal_weights,
        shared_weights=module.shared_weights,
        **config,
    )
    dtype, device = _dtype_device(module)
    twin.to(dtype=dtype, device=device)
    if twin.internal_weights:
        if twin.weight_numel > 0:
            _copy(twin.weight, module.weight)
        if twin.bias_numel > 0:
            _copy(twin.bias, module.bias)
    return twin


def from_e3nn(module: Any) -> torch.nn.Module:
    """The fastso3 twin of an e3nn 0.6.0 module, with the same weights, biases, dtype and device.

    Supported: ``TensorProduct``, ``FullyConnectedTensorProduct``, ``FullTensorProduct``,
    ``ElementwiseTensorProduct``, ``TensorSquare``, ``Linear``, ``Norm``. The twin has the same
    irreps, instructions (coefficients bit-identical), weight layout and state-dict keys (minus
    e3nn's generated-code buffers); its ``forward`` gives the same values.

    Raises:
        TypeError: for other module types.
    """
    names = [c.__name__ for c in type(module).__mro__]
    if "Linear" in names and hasattr(module, "irreps_in"):
        return _linear_from_e3nn(module)
    if "Norm" in names and hasattr(module, "tp"):
        twin = Norm(Irreps(str(module.irreps_in)), squared=module.squared)
        return twin.to(*_dtype_device(module.tp)[::-1])
    if any(n in names for n in _TP_CLASSES):
        return _tp_from_e3nn(module)
    raise TypeError(f"from_e3nn: unsupported module type {type(module).__name__}")


# ------------------------------------------------------------------------------------------------
# fastso3 -> e3nn
# ------------------------------------------------------------------------------------------------


def to_e3nn(module: torch.nn.Module) -> Any:
    """The e3nn 0.6.0 twin of a fastso3 module (same kinds as :func:`from_e3nn`), same weights.

    Tensor products become the e3nn class of the same name, built through ``e3nn.o3.TensorProduct``
    with the exact coefficients (user path weight ``c * c``, no normalization).

    Raises:
        TypeError: for other module types. ImportError: without e3nn.
    """
    from e3nn import o3 as e3nn_o3

    dtype, device = _dtype_device(module.tp if isinstance(module, Norm) else module)
    if isinstance(module, Linear):
        plan = module.plan
        with _default_dtype(dtype):
            twin = e3nn_o3.Linear(
                str(module.irreps_in),
                str(module.irreps_out),
                f_in=plan.f_in,
                f_out=plan.f_out,
                internal_weights=module.internal_weights,
                shared_weights=module.shared_weights,
                instructions=[(ins.i_in, ins.i_out) for ins in plan.weight_instructions],
                biases=list(plan.biases),
                path_normalization=plan.path_normalization,
            )
        twin.to(dtype=dtype, device=device)
        if module.internal_weights:
            if module.weight_numel > 0:
                _copy(twin.weight, module.weight)
            if module.bias_numel > 0:
                _copy(twin.bias, module.bias)
        return twin
    if isinstance(module, Norm):
        with _default_dtype(dtype):
            return e3nn_o3.Norm(str(module.irreps_in), squared=module.squared).to(dtype=dtype, device=device)
    if isinstance(module, TensorProduct):
        kind = _kind(module, _TP_CLASSES)
        cls = getattr(e3nn_o3, kind)
        twin = cls.__new__(cls)
        instructions = [
            (ins.i_in1, ins.i_in2, ins.i_out, ins.connection_mode, ins.has_weight, ins.path_weight * ins.path_weight)
            for ins in module.instructions
        ]
        if kind == "TensorSquare":  # e3nn's TensorSquare repr (called during __init__) reads irreps_in
            object.__setattr__(twin, "irreps_in", e3nn_o3.Irreps(str(module.irreps_in)))
        with _default_dtype(dtype):
            e3nn_o3.TensorProduct.__init__(
                twin,
                str(module.irreps_in1),
                str(module.irreps_in2),
                str(module.irreps_out),
                instructions,
                irrep_normalization="none",
                path_normalization="none",
                internal_weights=module.internal_weights,
                shared_weights=module.shared_weights,
                compile_right=not any(ins.connection_mode in ("uvu<v", "u<vw") for ins in module.instructions),
            )
        twin.to(dtype=dtype, device=device)
        if module.internal_weights and module.weight_numel > 0:
            _copy(twin.weight, module.weight)
        return twin
    raise TypeError(f"to_e3nn: unsupported module type {type(module).__name__}")


class E3nnNequIP(torch.nn.Module):
    """The forward of a :class:`fastso3.models.NequIP` with every equivariant piece an e3nn 0.6.0 module carrying
    the model's weights (built once): the oracle of its tests and the peer of ``fastso3 bench nequip``.

    ``forward(positions (N, 3), atomic_numbers (N,), edge_src (E,), edge_dst (E,), shifts=None, cell=None) ->
    energy ()`` of one structure, in the model's dtype (periodic with integer ``shifts (E, 3)`` and its ``cell``
    ``(3, 3)`` or ``(1, 3, 3)``, as ``NequIP.forward``); the convolution is e3nn's ``TensorProduct`` on the gathered
    senders followed by ``index_add`` into the receivers.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        from e3nn import nn as e3nn_nn

        from .models.nequip import scalar_activations

        self.model = model  # species table, radial embedding, scale/shift and E0s: plain torch, shared
        self.embedding = to_e3nn(model.embedding)
        self.layers = torch.nn.ModuleList()
        for layer in model.layers:
            fc = e3nn_nn.FullyConnectedNet(layer.radial.hs, torch.nn.functional.silu).to(next(layer.radial.parameters()).dtype)
            fc.load_state_dict(layer.radial.state_dict())
            g = layer.gate
            gate = e3nn_nn.Gate(str(g.irreps_scalars), scalar_activations(g.irreps_scalars), str(g.irreps_gates), [torch.sigmoid] * len(g.irreps_gates),
                                str(g.irreps_gated))  # fmt: skip
            self.layers.append(torch.nn.ModuleDict({
                "radial": fc, "gate": gate, "linear_1": to_e3nn(layer.linear_1), "conv": to_e3nn(layer.conv),
                "linear_2": to_e3nn(layer.linear_2), "self_connection": to_e3nn(layer.self_connection),
            }))  # fmt: skip
        self.readout = torch.nn.Sequential(*(to_e3nn(linear) for linear in model.readout))

    def forward(self, positions, atomic_numbers, edge_src, edge_dst, shifts=None, cell=None):
        from e3nn import o3 as e3nn_o3

        model = self.model
        species = model.species(atomic_numbers)
        onehot = torch.nn.functional.one_hot(species, model.num_species).to(positions.dtype)
        vec = positions[edge_dst] - positions[edge_src]
        if shifts is not None:
            vec = vec + shifts.to(vec.dtype) @ cell.reshape(3, 3)
        sh = e3nn_o3.spherical_harmonics(str(model.irreps_sh), vec, normalize=True, normalization="component")
        radial = model.radial_embedding(vec.norm(dim=-1))
        h = self.embedding(onehot)
        for ours, twin in zip(model.layers, self.layers):
            per_edge = twin["conv"](twin["linear_1"](h)[edge_src], sh, twin["radial"](radial))
            message = per_edge.new_zeros(h.shape[0], per_edge.shape[1]).index_add(0, edge_dst, per_edge)
            out = twin["gate"](twin["linear_2"](message * ours.norm) + twin["self_connection"](h, onehot))
            h = out + h if ours.resnet else out
        node = model.scale_shift(self.readout(h)[:, 0]) + model.atomic_energies(species).to(positions.dtype)
        return node.sum()


# --------------------------------------------------------------------------- mace-torch models

_MACE_BLOCKS = {"RealAgnosticInteractionBlock": "RealAgnostic", "RealAgnosticResidualInteractionBlock": "RealAgnosticResidual"}
# mace-torch entries fastso3 does not store: config buffers (read into the constructor's arguments), the U
# tensors (passed to the constructor) and their zero flags, e3nn's generated-code constants, the radial tables.
_MACE_NOT_STORED = ("atomic_numbers", "r_max", "num_interactions", ".U_matrix_", "_zeroed", "._compiled_main",
                    "radial_embedding.")  # fmt: skip
_MACE_RENAMED = {"atomic_energies_fn.atomic_energies": "atomic_energies.energies"}


def _mace_config(model: Any) -> dict:
    """The arguments of ``fastso3.models.MACE`` that rebuild ``model``; raises for what it does not cover."""
    kind = type(model).__name__
    if kind not in ("MACE", "ScaleShiftMACE"):
        raise TypeError(f"from_mace: expected a mace-torch MACE or ScaleShiftMACE model, got {kind}")
    if len(getattr(model, "heads", ["Default"])) != 1:
        raise NotImplementedError(f"from_mace: multi-head models are not supported (heads {model.heads})")
    extras = [name for name in ("pair_repulsion", "joint_embedding", "embedding_readout") if hasattr(model, name)]
    extras += [name for name in ("use_agnostic_product", "use_so3", "use_last_readout_only") if getattr(model, name, False)]
    if getattr(model, "edge_irreps", None) is not None:
        extras.append("edge_irreps")
    radial = model.radial_embedding
    if hasattr(radial, "distance_transform") or not getattr(radial, "apply_cutoff", True):
        extras.append("distance_transform / apply_cutoff=False")
    if type(radial.bessel_fn).__name__ != "BesselBasis":
        extras.append(f"radial_type {type(radial.bessel_fn).__name__}")
    blocks = [type(block).__name__ for block in model.interactions]
    extras += [f"interaction {name}" for name in blocks if name not in _MACE_BLOCKS]
    if extras:
        raise NotImplementedError(f"from_mace: this model uses {', '.join(extras)}, which fastso3.models.MACE does not cover")
    r_max, num_bessel = float(model.r_max), int(radial.out_dim)
    weights = radial.bessel_fn.bessel_weights.detach().cpu().double()
    frequencies = torch.arange(1, num_bessel + 1, dtype=torch.float64) * torch.pi / r_max
    # float32 rounding allowed: a model built in float32 and cast to float64 keeps float32-rounded constants
    # (these frequencies, e3nn's 3j buffers), so it matches its conversion to float32 precision only
    if not torch.allclose(weights, frequencies, rtol=1e-6, atol=0):
        raise NotImplementedError("from_mace: trained (trainable=True) Bessel frequencies are not supported")
    interactions, products, readouts = model.interactions, model.products, model.readouts
    hidden = Irreps(str(products[0].linear.irreps_out))
    nonlinear = getattr(readouts[-1], "non_linearity", None)  # one-layer models read out linearly
    gate = nonlinear.acts[0] if nonlinear is not None else torch.nn.functional.silu
    config = dict(
        atomic_numbers=[int(z) for z in model.atomic_numbers], r_max=r_max, num_bessel=num_bessel,
        num_polynomial_cutoff=int(radial.cutoff_fn.p), max_ell=Irreps(str(model.spherical_harmonics.irreps_out)).lmax,
        num_interactions=len(interactions), hidden_irreps=hidden, MLP_irreps=str(getattr(readouts[-1], "hidden_irreps", "16x0e")),
        correlation=[p.symmetric_contractions.contractions[0].correlation for p in products],
        avg_num_neighbors=float(interactions[0].avg_num_neighbors), radial_MLP=list(interactions[0].radial_MLP),
        interaction_first=_MACE_BLOCKS[blocks[0]], interaction=_MACE_BLOCKS[blocks[-1]],
        atomic_energies=model.atomic_energies_fn.atomic_energies.detach().reshape(-1).tolist(),
        gate=getattr(gate, "f", gate),  # e3nn's Activation keeps the function inside normalize2mom
        keep_last_layer_irreps=len(products) > 1 and Irreps(str(products[-1].linear.irreps_out)) == hidden,
        u_matrices={(t, o, nu): c.U_tensors(nu).detach().cpu().double()
                    for t, p in enumerate(products) for o, c in enumerate(p.symmetric_contractions.contractions)
                    for nu in range(1, c.correlation + 1)},
    )  # fmt: skip
    if len(set(blocks[1:])) > 1:
        raise NotImplementedError(f"from_mace: the layers after the first use different blocks {blocks[1:]}")
    if kind == "ScaleShiftMACE":
        config.update(scale=float(model.scale_shift.scale), shift=float(model.scale_shift.shift))
    return config


def _mace_state(model: Any) -> dict:
    state = {}
    for key, value in model.state_dict().items():
        if not any(part in key for part in _MACE_NOT_STORED):
            state[_MACE_RENAMED.get(key, key)] = value
    return state


def from_mace(model: Any, trained_with_e3nn: str | None = None) -> torch.nn.Module:
    """A ``fastso3.models.MACE`` computing what the mace-torch 0.3.x ``MACE``/``ScaleShiftMACE`` ``model`` computes.

    Same architecture, parameters (loaded by name), dtype and device; energies, forces and stresses agree to
    float64 rounding. The symmetric contractions use ``model``'s own U tensors (its buffers, built by the e3nn
    it was created with). ``trained_with_e3nn``:

    - ``None`` (or ``"0.6.0"``): compute what ``model`` computes in this process (e3nn 0.6.0's ``wigner_3j``);
    - ``"0.4.4"``: compute what ``model`` computed under e3nn 0.4.4, which published MACE checkpoints were trained
      with: 0.4.4's ``wigner_3j`` is the opposite of 0.6.0's for some triples (``fastso3.core.cg.
      E3NN_044_OPPOSITE_SIGN``, e.g. (1, 2, 2)), so the convolution paths on such a triple get their radial
      weights negated. Natural-parity models (hidden ``0e+1o+2e``) have no such path; pseudo-tensor ones do.

    Raises ``NotImplementedError`` for the features ``fastso3.models.MACE`` lacks (multi-head, pair repulsion,
    other interaction blocks, ...), ``ValueError`` for another ``trained_with_e3nn``.
    """
    from .models import MACE

    if trained_with_e3nn not in (None, "0.6.0", "0.4.4"):
        raise ValueError(f"from_mace: trained_with_e3nn must be None, '0.6.0' or '0.4.4', got {trained_with_e3nn!r}")
    config = _mace_config(model)
    reference = model.atomic_energies_fn.atomic_energies
    dtype, device = reference.dtype, reference.device
    with _default_dtype(dtype):
        ours = MACE(**config)
    state = _mace_state(model)
    own = ours.state_dict()
    for key in ("species.table", "scale_shift.scale", "scale_shift.shift"):  # built from the config (plain MACE:
        state.setdefault(key, own[key])  # scale 1, shift 0); the Z -> species lookup is fastso3's own
    _load_checked(ours, state, "from_mace")
    if trained_with_e3nn == "0.4.4":
        _negate_e3nn_044_paths(ours)
    return ours.to(device)


def _negate_e3nn_044_paths(model: torch.nn.Module) -> None:
    """Negate the radial weights of every convolution path whose triple has e3nn 0.4.4's opposite 3j sign (the
    product is linear in a path's weights, so this flips that path's contribution, as 0.4.4's 3j did)."""
    for block in model.interactions:
        tp, last = block.conv_tp, list(block.conv_tp_weights)[-1]
        start = 0
        for ins in tp.instructions:
            size = math.prod(ins.path_shape) if ins.has_weight else 0
            triple = (tp.irreps_in1[ins.i_in1].ir.l, tp.irreps_in2[ins.i_in2].ir.l, tp.irreps_out[ins.i_out].ir.l)
            if e3nn_044_sign(*triple) < 0:
                with torch.no_grad():
                    last.weight[:, start:start + size].neg_()
            start += size


def to_mace(model: torch.nn.Module, mace_model: Any) -> Any:
    """Copy the parameters of a ``fastso3.models.MACE`` into ``mace_model``, a mace-torch model of the same
    architecture (e.g. the one it was converted from, or one built with the same arguments); returns it."""
    inverse = {ours: theirs for theirs, ours in _MACE_RENAMED.items()}
    theirs = mace_model.state_dict()
    state = {inverse.get(key, key): value for key, value in model.state_dict().items()}
    state = {key: value for key, value in state.items() if key in theirs}
    missing = sorted(set(_mace_state(mace_model)) - {_MACE_RENAMED.get(key, key) for key in state})
    if missing or any(value.shape != theirs[key].shape for key, value in state.items()):
        raise ValueError(f"to_mace: the architectures differ (missing {missing[:5]})")
    mace_model.load_state_dict(state, strict=False)
    return mace_model


def _load_checked(module: torch.nn.Module, state: dict, who: str) -> None:
    own = module.state_dict()
    missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    wrong = [k for k in state if k in own and own[k].shape != state[k].shape]
    if missing or unexpected or wrong:
        raise ValueError(f"{who}: the parameters do not map (missing {missing[:5]}, unexpected {unexpected[:5]}, "
                         f"shapes differ for {wrong[:5]})")  # fmt: skip
    module.load_state_dict(state)


def mace_inputs(model: Any, positions: torch.Tensor, atomic_numbers: torch.Tensor, edge_src: torch.Tensor,
                edge_dst: torch.Tensor, shifts: torch.Tensor, cell: torch.Tensor,
                batch: torch.Tensor | None = None) -> dict:  # fmt: skip
    """The input dict of a mace-torch ``model`` for the graph a fastso3 model reads (to compare the two).

    positions ``(N, 3)``, atomic_numbers ``(N,)``, edges ``(E,)`` with integer ``shifts (E, 3)``, ``cell (G, 3, 3)``
    and ``batch (N,)`` (default: one structure), as ``fastso3.graph.neighbor_list`` and the models take them.
    """
    if batch is None:
        batch = torch.zeros(positions.shape[0], dtype=torch.int64, device=positions.device)
    cells = cell.reshape(-1, 3, 3)
    counts = torch.bincount(batch, minlength=cells.shape[0])
    numbers = model.atomic_numbers.to(atomic_numbers.device)
    return dict(
        positions=positions, node_attrs=(atomic_numbers[:, None] == numbers[None]).to(positions.dtype),
        edge_index=torch.stack([edge_src, edge_dst]),
        shifts=torch.einsum("ei,eij->ej", shifts.to(positions.dtype), cells[batch[edge_src]]),
        unit_shifts=shifts.to(positions.dtype), cell=cells.reshape(-1, 3), batch=batch,
        ptr=torch.cat([counts.new_zeros(1), counts.cumsum(0)]), weight=positions.new_ones(cells.shape[0]),
        head=torch.zeros(cells.shape[0], dtype=torch.int64, device=positions.device),
    )  # fmt: skip
