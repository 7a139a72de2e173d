"""Builds and loads the CPU kernel library (every ``csrc/*.cpp``, one shared object) through ctypes.

The library has a plain C ABI and includes no libtorch or Python headers, so it compiles in
about a second with the system C++ compiler. It is built on first use and cached under
``$FASTSO3_CACHE`` (default ``~/.cache/fastso3``), keyed by a hash of the source, the flags and
the compiler, so a rebuilt source or another machine type never picks up a stale binary.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

__all__ = ["CPUKernelUnavailable", "cache_dir", "load_library", "library_function", "library_status"]

_SOURCES = sorted((Path(__file__).parent / "csrc").glob("*.cpp"))
_HEADERS = sorted((Path(__file__).parent / "csrc").glob("*.h"))  # included by the sources: part of the key
_FLAGS = ["-O3", "-march=native", "-fopenmp", "-std=c++17", "-shared", "-fPIC", "-fno-math-errno"]
_ABI_VERSION = 1


class CPUKernelUnavailable(RuntimeError):
    """The compiled CPU backend cannot be built or loaded on this machine."""


def _compiler() -> str:
    compiler = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")
    if compiler is None:
        raise CPUKernelUnavailable(
            "no C++ compiler found (set CXX or install g++); use backend='reference' for the pure-torch path"
        )
    return compiler


def cache_dir() -> Path:
    """fastso3's cache folder: ``$FASTSO3_CACHE``, default ``~/.cache/fastso3`` (built kernels, generated data)."""
    return Path(os.environ.get("FASTSO3_CACHE", Path.home() / ".cache" / "fastso3"))


def _build(compiler: str) -> Path:
    key = hashlib.sha256(
        b"\0".join([*(src.read_bytes() for src in (*_SOURCES, *_HEADERS)), " ".join(_FLAGS).encode(), compiler.encode(), platform.machine().encode()])
    ).hexdigest()[:16]
    target = cache_dir() / f"fastso3_cpu_{key}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Build into a private temporary file, then rename atomically: concurrent first uses are safe.
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    cmd = [compiler, *_FLAGS, *map(str, _SOURCES), "-o", tmp]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        os.unlink(tmp)
        raise CPUKernelUnavailable(f"building the CPU kernels failed:\n$ {' '.join(cmd)}\n{result.stderr}")
    os.replace(tmp, target)
    return target


def _declare(lib: ctypes.CDLL) -> None:
    p, i64, i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
    for suffix in ("f32", "f64"):
        fn = getattr(lib, f"fastso3_sh_forward_{suffix}")
        fn.argtypes = [p, p, i64, i32, i64, i64, p, p, p, p, p, i32]
        fn.restype = None
        fn = getattr(lib, f"fastso3_sparse_accumulate_{suffix}")
        fn.argtypes = [p, p, p, i64, i64, i64, i64, i64, p, p, p, p, i32]
        fn.restype = None
        fn = getattr(lib, f"fastso3_normalize_vjp_{suffix}")
        fn.argtypes = [p, p, p, i64, i32]
        fn.restype = None
        channeled = [p, i64, i64, p, p]  # data, per-sample stride, rows, row bases, row steps
        fn = getattr(lib, f"fastso3_cw_channeled_{suffix}")
        fn.argtypes = [*channeled, *channeled, p, i64, *channeled, i64, i64, i64, p, p, p, p, p, i32]
        fn.restype = None
        fn = getattr(lib, f"fastso3_cw_scalar_{suffix}")
        fn.argtypes = [*channeled, *channeled, *channeled, p, i64, i64, i64, i64, p, p, p, p, p, i32]
        fn.restype = None
    lib.fastso3_abi_version.restype = ctypes.c_int


@functools.lru_cache(maxsize=None)
def _load() -> ctypes.CDLL | CPUKernelUnavailable:
    try:
        lib = ctypes.CDLL(str(_build(_compiler())))
    except (OSError, CPUKernelUnavailable) as exc:
        return exc if isinstance(exc, CPUKernelUnavailable) else CPUKernelUnavailable(str(exc))
    _declare(lib)
    if lib.fastso3_abi_version() != _ABI_VERSION:
        return CPUKernelUnavailable("the cached CPU kernel library has an unexpected ABI version")
    return lib


def load_library() -> ctypes.CDLL:
    """The loaded kernel library; raises :class:`CPUKernelUnavailable` with the reason if it cannot be built."""
    lib = _load()
    if isinstance(lib, CPUKernelUnavailable):
        raise lib
    return lib


def library_status() -> tuple[bool, str]:
    """``(available, reason)`` without raising."""
    lib = _load()
    return (False, str(lib)) if isinstance(lib, CPUKernelUnavailable) else (True, "compiled C++ kernels loaded")


@functools.lru_cache(maxsize=None)
def library_function(name: str, *argtypes) -> ctypes._CFuncPtr:
    """The library's C function ``name`` with its ctypes argument types declared (``restype`` void).

    Kernel modules declare their own signatures here, so a new ``csrc/*.cpp`` needs no change to this file.
    """
    fn = getattr(load_library(), name)
    fn.argtypes = list(argtypes)
    fn.restype = None
    return fn
