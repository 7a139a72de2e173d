"""The ops' named tables as plain data, so a program traced in one process runs in another.

fastso3's ops take their constant tables (Clebsch-Gordan entries, contraction plans) by name: a module registers
its plan's tables in a process-global registry when it is built, and the op looks the name up. The names of the
channel-wise (``uvu:``) and ``uvw:`` tables hash the plan's key, which holds strings, so another Python process
(another ``PYTHONHASHSEED``) gives the same plan another name. A traced or exported program carries the names it
was traced with; :func:`snapshot` writes the tables it calls as JSON and :func:`restore` registers them under
those names in the process that loads it, without building any module.

Arrays travel as base64 of their bytes (exact); tuples, ints, floats, strings and None as themselves.
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import json

import numpy as np
import torch

__all__ = ["OP_MODULES", "TABLE_ARGUMENTS", "content_digest", "register_ops", "restore", "snapshot", "table_names"]

# The kernel modules that define ``fastso3::`` ops (importing them registers the ops).
OP_MODULES = ("ops", "channelwise", "conv", "conv_factored", "uvw", "symmetric_contraction", "so2_rotation",
              "so2_frame_linear", "so2_table", "wigner_step")
# The string arguments of the ops' schemas that name a table; the others (backend, normalization) do not.
TABLE_ARGUMENTS = ("table", "plan")
# Tables the op computes from the name itself (ops._table_arrays): nothing to carry.
_DERIVED = ("sh_grad",)


def register_ops() -> None:
    """Import every kernel module of :data:`OP_MODULES`, registering all ``fastso3::`` ops."""
    for name in OP_MODULES:
        importlib.import_module(f"{__package__}.{name}")


def _registries() -> dict:
    """name prefix -> (registry dict, rebuild of a stored value)."""
    from . import channelwise, symmetric_contraction, uvw
    from ..core.symmetric_contraction import SymmetricContractionPlan

    return {"uvu": (channelwise._TABLES, tuple), "uvw": (uvw._TABLES, tuple),
            "symmetric_contraction": (symmetric_contraction._PLANS, SymmetricContractionPlan._make)}  # fmt: skip


def table_names(graph: torch.fx.Graph) -> list[str]:
    """The table names (sorted, distinct) that the ``fastso3::`` ops of ``graph`` are called with."""
    names = set()
    for node in graph.nodes:
        target = node.target
        if node.op != "call_function" or not isinstance(target, torch._ops.OpOverload) or target.namespace != "fastso3":
            continue
        for i, arg in enumerate(target._schema.arguments):
            if arg.name in TABLE_ARGUMENTS:
                names.add(node.args[i] if i < len(node.args) else node.kwargs[arg.name])
    return sorted(names)


def _prefix(name: str) -> str:
    return name.split(":", 1)[0]


def snapshot(names: list[str]) -> str:
    """The registered tables ``names`` as a JSON string for :func:`restore`.

    Raises:
        KeyError: a name that no registry holds (a table of a module never built in this process).
    """
    registries, tables = _registries(), {}
    for name in names:
        if _prefix(name) in _DERIVED:
            continue
        registry = registries.get(_prefix(name), ({}, None))[0]
        if name not in registry:
            raise KeyError(f"snapshot: no registered table {name!r} (known kinds: {sorted(registries)} and the "
                           f"derived {list(_DERIVED)})")  # fmt: skip
        tables[name] = _encode(registry[name])
    return json.dumps(tables)


def restore(data: str) -> list[str]:
    """Register the tables of a :func:`snapshot` under their names (a name already registered is kept: it holds
    the same table); returns the names."""
    registries, tables = _registries(), json.loads(data)
    for name, value in tables.items():
        if _prefix(name) not in registries:
            raise ValueError(f"restore: unknown kind of table {name!r} (known: {sorted(registries)})")
        registry, rebuild = registries[_prefix(name)]
        registry.setdefault(name, rebuild(_decode(value)))
    return list(tables)


def content_digest(value, length: int = 20) -> str:
    """Hex digest of a table's whole content: every array's dtype, shape and bytes, and every tuple, int, float,
    string and None, as :func:`snapshot` stores them. Equal digests mean equal tables (a name built from part of
    a table let two plans that differ elsewhere share one name)."""
    return hashlib.sha256(json.dumps(_encode(value)).encode()).hexdigest()[:length]


def _encode(value):
    if isinstance(value, (np.ndarray, np.generic)):
        array = np.ascontiguousarray(value)
        return {"array": base64.b64encode(array.tobytes()).decode(), "dtype": array.dtype.str, "shape": list(array.shape),
                "scalar": isinstance(value, np.generic)}  # fmt: skip
    if isinstance(value, (tuple, list)):
        return {"tuple" if isinstance(value, tuple) else "list": [_encode(v) for v in value]}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"snapshot: cannot store a {type(value).__name__} of a table")


def _decode(value):
    if not isinstance(value, dict):
        return value
    if "array" in value:
        array = np.frombuffer(base64.b64decode(value["array"]), dtype=np.dtype(value["dtype"])).reshape(value["shape"]).copy()
        return array[()] if value["scalar"] else array
    if "tuple" in value:
        return tuple(_decode(v) for v in value["tuple"])
    return [_decode(v) for v in value["list"]]
