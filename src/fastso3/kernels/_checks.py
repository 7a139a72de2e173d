"""Input checks that every ``torch.library`` op runs in its own body (see docs/design.md, "Checking policy").

The compiled kernels read raw memory, and the ops are callable by anyone (``torch.ops.fastso3.*``), so each op
checks what its kernel reads before it runs: the backend, one floating dtype and one device for its float
operands, shapes, and the dtype, length and range of every index tensor. Op bodies run eagerly even under
``torch.compile``, so these checks hold in compiled graphs too and never break them.

Cost: the shape and dtype checks are Python comparisons; an index range check is one ``aminmax`` reduction
over the index (plus a device sync on CUDA), small next to the kernel that gathers through it.
"""

from __future__ import annotations

import torch

from . import registry

__all__ = ["backend_for", "check_index", "check_shape", "check_slots", "same_floats", "tracing"]


def tracing() -> bool:
    """True while ``torch.compile`` or ``make_fx`` traces: values are symbolic then, so checks that read them
    (index ranges) are skipped, and so are Python side effects (records, caches) a trace would guard on."""
    from torch.fx.experimental.proxy_tensor import get_proxy_mode

    return torch.compiler.is_compiling() or get_proxy_mode() is not None


def same_floats(op: str, **tensors: torch.Tensor | None) -> torch.Tensor:
    """The first given tensor, after checking every given one is a floating tensor of its dtype and device.

    ``None`` entries (optional slots) are skipped. Raises ``TypeError`` naming each operand's dtype and device.
    """
    given = {name: t for name, t in tensors.items() if t is not None}
    for name, t in given.items():
        if not isinstance(t, torch.Tensor) or not t.is_floating_point():
            raise TypeError(f"{op}: {name} must be a floating-point tensor, got {getattr(t, 'dtype', type(t).__name__)}")
    first = next(iter(given.values()))
    if any(t.dtype != first.dtype or t.device != first.device for t in given.values()):
        described = ", ".join(f"{name} is {t.dtype} on {t.device}" for name, t in given.items())
        raise TypeError(f"{op}: the operands must share one dtype and device ({described})")
    return first


def check_slots(op: str, slots: tuple, outputs: list, optional: tuple = ()) -> None:
    """For an op over a multilinear form: ``outputs`` are distinct slot numbers, and every slot is given except a
    single output (whose value the op computes from the others) or an ``optional`` one."""
    if not outputs or len(set(outputs)) != len(outputs) or any(s not in range(len(slots)) for s in outputs):
        raise ValueError(f"{op}: outputs must be distinct slots among {', '.join(map(str, range(len(slots))))}, "
                         f"got {outputs}")  # fmt: skip
    for s, t in enumerate(slots):
        if t is None and s not in optional and not (s in outputs and len(outputs) == 1):
            raise ValueError(f"{op}: slot {s} is needed (only a single output slot may be None)")


def backend_for(op: str, backend: str, like: torch.Tensor) -> str:
    """``backend`` after checking it is a known backend with a kernel of ``op`` (a name of the registry, e.g.
    ``"tensor_product_conv"``) for ``like``'s device and dtype."""
    registry.check_backend(op, backend, like)
    return backend


def check_shape(op: str, name: str, t: torch.Tensor, shape: tuple) -> None:
    """``t.shape == shape``, where a ``None`` entry of ``shape`` matches any size."""
    if t.dim() != len(shape) or any(want is not None and got != want for got, want in zip(t.shape, shape)):
        expected = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"{op}: {name} must have shape {expected}, got {tuple(t.shape)}")


def check_index(op: str, name: str, idx: torch.Tensor, bound: int, *, length: int | None = None,
                device: torch.device | None = None, what: str = "", values: bool = True) -> None:  # fmt: skip
    """``idx``: a 1-D int64 tensor (of ``length`` entries, on ``device``) with values in ``[0, bound)``.

    ``what`` says what ``bound`` counts (e.g. "nodes"), for the message. One min/max reduction over ``idx``;
    ``values=False`` skips it (a public front whose op checks the values itself).
    """
    if not isinstance(idx, torch.Tensor) or idx.dtype != torch.int64 or idx.dim() != 1:
        got = f"{idx.dtype} tensor of shape {tuple(idx.shape)}" if isinstance(idx, torch.Tensor) else type(idx).__name__
        raise TypeError(f"{op}: {name} must be a 1-D int64 tensor, got a {got} (use .long())")
    if length is not None and idx.numel() != length:
        raise ValueError(f"{op}: {name} has {idx.numel()} entries, expected {length}")
    if device is not None and idx.device != device:
        raise ValueError(f"{op}: {name} is on {idx.device}, expected {device}")
    if values and idx.numel():
        lo, hi = (int(v) for v in torch.aminmax(idx))
        if lo < 0 or hi >= bound:
            bad = lo if lo < 0 else hi
            count = f" ({what})" if what else ""
            hint = " (negative indices do not wrap around)" if bad < 0 else ""
            raise IndexError(f"{op}: {name} contains {bad}, outside [0, {bound}){count}{hint}")
