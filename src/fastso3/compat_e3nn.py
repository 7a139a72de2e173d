"""The e3nn drop-in switch: :func:`alias_e3nn` makes ``import e3nn`` (and ``e3nn.o3``, ``e3nn.nn``,
``e3nn.nn.models.*``, ``e3nn.math``, ``e3nn.io``, ``e3nn.util.test``, ``e3nn.util.jit``, ...) resolve to
fastso3 for the rest of the process.

It is an import hook (a :class:`importlib.abc.MetaPathFinder` first on ``sys.meta_path``), not a copy:
``e3nn.o3`` *is* the module object ``fastso3.o3`` (one ``sys.modules`` entry under each name), so
classes, ``isinstance`` checks and state dicts are shared across both names. Every ``e3nn`` name is
answered by the hook; a module fastso3 does not provide raises ``ModuleNotFoundError`` naming the e3nn
module and "fastso3 does not provide", and a missing attribute raises ``AttributeError`` naming it
(never a silent fallback to the installed e3nn). The mapping (e3nn 0.6.0's package layout, read from
``e3nn/__init__.py`` and ``e3nn/util/__init__.py`` of github.com/e3nn/e3nn):

* ``e3nn`` - a small module with ``__version__ = "0.6.0"`` and ``set_optimization_defaults`` /
  ``get_optimization_defaults`` (``fastso3.util``);
* ``e3nn.util`` - ``fastso3.util``'s names; its submodules ``test -> fastso3.testing``,
  ``jit -> fastso3.util.jit``, ``codegen -> fastso3.util.codegen``;
* ``e3nn.o3[.X]``, ``e3nn.nn[.X]``, ``e3nn.math[.X]``, ``e3nn.io[.X]``, ``e3nn.util.X`` - the fastso3
  module of the same path under ``fastso3.o3``, ``fastso3.nn``, ``fastso3.math``, ``fastso3.io``,
  ``fastso3.util``.

``python -m fastso3.as_e3nn SCRIPT [ARGS...]`` runs a script with the switch on.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
from typing import Optional, Sequence

__all__ = ["E3NN_VERSION", "E3nnAlreadyImported", "alias_e3nn"]

E3NN_VERSION = "0.6.0"

# e3nn modules whose fastso3 twin has another path; any other e3nn.<area>[.X] maps through _AREAS.
_RENAMED = {"e3nn.util.test": "fastso3.testing"}
_AREAS = {"e3nn.o3": "fastso3.o3", "e3nn.nn": "fastso3.nn", "e3nn.math": "fastso3.math", "e3nn.io": "fastso3.io",
          "e3nn.util": "fastso3.util"}  # fmt: skip
# e3nn's two namespace packages, built here: their attributes come from these fastso3 modules.
_NAMESPACES = {"e3nn": ("fastso3.util", ("get_optimization_defaults", "set_optimization_defaults")), "e3nn.util": ("fastso3.util", None)}


class E3nnAlreadyImported(RuntimeError):
    """:func:`alias_e3nn` was called after the real e3nn was imported: both would live in one process."""


def _fastso3_name(e3nn_name: str) -> Optional[str]:
    """The fastso3 module standing for ``e3nn_name`` (None for the namespaces built here)."""
    if e3nn_name in _RENAMED:
        return _RENAMED[e3nn_name]
    for area, target in _AREAS.items():
        if e3nn_name == area:
            return target
        if e3nn_name.startswith(area + "."):
            return target + e3nn_name[len(area) :]
    return None


def _not_provided(e3nn_name: str, detail: str) -> ModuleNotFoundError:
    return ModuleNotFoundError(
        f"No module named {e3nn_name!r}: fastso3 does not provide {e3nn_name} ({detail}); "
        "e3nn is aliased to fastso3 by fastso3.compat.alias_e3nn()",
        name=e3nn_name,
    )


def _import_target(e3nn_name: str, target: str) -> types.ModuleType:
    """``import target``, where a missing ``target`` (or missing parent) raises naming the e3nn module."""
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as err:
        if err.name is not None and (target == err.name or target.startswith(err.name + ".")):
            raise _not_provided(e3nn_name, f"no module {target}") from None
        raise  # the fastso3 module exists but one of its own imports failed: that error is the news


def _namespace(e3nn_name: str) -> types.ModuleType:
    """One of e3nn's namespace packages (``e3nn``, ``e3nn.util``): the names of ``_NAMESPACES`` from
    their fastso3 module, submodules imported on attribute access (as after ``import e3nn.o3``)."""
    source, names = _NAMESPACES[e3nn_name]
    module = types.ModuleType(e3nn_name, f"fastso3's stand-in for {e3nn_name} (fastso3.compat.alias_e3nn)")
    if e3nn_name == "e3nn":
        module.__version__ = E3NN_VERSION

    def __getattr__(name: str):
        if names is None or name in names:
            try:
                return getattr(importlib.import_module(source), name)
            except AttributeError:
                pass
        child = f"{e3nn_name}.{name}"
        if not name.startswith("__"):
            try:
                return importlib.import_module(child)
            except ModuleNotFoundError as err:
                if err.name != child:
                    raise
        raise AttributeError(f"module {e3nn_name!r} has no attribute {name!r}: fastso3 does not provide {child}")

    module.__getattr__ = __getattr__
    return module


class _E3nnAliasFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answers every ``e3nn`` import: with the fastso3 module, a namespace, or a clear ModuleNotFoundError."""

    def find_spec(self, fullname: str, path: Optional[Sequence[str]] = None, target: Optional[types.ModuleType] = None):
        if fullname != "e3nn" and not fullname.startswith("e3nn."):
            return None
        if fullname in _NAMESPACES:
            return importlib.machinery.ModuleSpec(fullname, self, origin="fastso3 alias", is_package=True)
        fastso3_name = _fastso3_name(fullname)
        if fastso3_name is None:
            raise _not_provided(fullname, "no fastso3 counterpart")
        module = _import_target(fullname, fastso3_name)
        spec = importlib.machinery.ModuleSpec(fullname, self, origin=fastso3_name, is_package=hasattr(module, "__path__"))
        spec.loader_state = (module, module.__spec__)
        return spec

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return _namespace(spec.name) if spec.loader_state is None else spec.loader_state[0]

    def exec_module(self, module: types.ModuleType) -> None:
        # The import system stamped the alias spec on the shared fastso3 module: give it its own back.
        state = module.__spec__.loader_state
        if state is not None:
            module.__spec__ = state[1]


_FINDER = _E3nnAliasFinder()


def alias_e3nn() -> None:
    """Make ``import e3nn`` and its submodules resolve to fastso3 for the rest of the process.

    Idempotent. Raises :class:`E3nnAlreadyImported` if the real e3nn is already imported (its classes
    would not be fastso3's: call this first, before anything imports e3nn). Nothing is undone.
    """
    if _FINDER in sys.meta_path:
        return
    real = sorted(name for name in sys.modules if name == "e3nn" or name.startswith("e3nn."))
    if real:
        raise E3nnAlreadyImported(
            f"the real e3nn is already imported ({', '.join(real[:3])}{', ...' if len(real) > 3 else ''}); "
            "call fastso3.compat.alias_e3nn() before anything imports e3nn, or run the script with "
            "python -m fastso3.as_e3nn SCRIPT"
        )
    sys.meta_path.insert(0, _FINDER)
