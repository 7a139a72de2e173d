"""Builds and loads the CPU kernel library (every ``csrc/*.cpp``, one shared object) through ctypes.

The library has a plain C ABI and includes no libtorch or Python headers, so it compiles with the system
C++ compiler alone (one object per source, in parallel: about 10 s on 2 cores). It is built on first use and
cached under ``$FASTSO3_CACHE`` (default ``~/.cache/fastso3``), keyed by a hash of the source, the flags and
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

__all__ = ["CPUKernelUnavailable", "build_shared_object", "cache_dir", "library_path", "load_library", "library_function",
           "library_status"]

_SOURCES = sorted((Path(__file__).parent / "csrc").glob("*.cpp"))
_HEADERS = sorted((Path(__file__).parent / "csrc").glob("*.h"))  # included by the sources: part of the key
_FLAGS = ["-O3", "-march=native", "-fopenmp", "-std=c++17", "-shared", "-fPIC", "-fno-math-errno"]
_ABI_VERSION = 1


class CPUKernelUnavailable(RuntimeError):
    """The compiled CPU backend cannot be built or loaded on this machine."""


def _compiler() -> str:
    compiler = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")
    if compiler is None:
        raise CPUKernelUnavailable("no C++ compiler found (set CXX or install g++); use the backend of the plain "
                                   "framework path instead (torch: backend='reference', jax: backend='xla')")  # fmt: skip
    return compiler


def cache_dir() -> Path:
    """fastso3's cache folder: ``$FASTSO3_CACHE``, default ``~/.cache/fastso3`` (built kernels, generated data)."""
    return Path(os.environ.get("FASTSO3_CACHE", Path.home() / ".cache" / "fastso3"))


def build_shared_object(stem: str, sources: list[Path], flags: list[str], inputs: tuple[Path, ...] = (),
                        headers: tuple[Path, ...] = ()) -> Path:  # fmt: skip
    """Compile ``sources`` (and link ``inputs``) with ``flags`` into ``$FASTSO3_CACHE/{stem}_{hash}.so``.

    The hash covers the sources, the ``headers`` they include, the inputs' paths, the flags, the compiler and the
    machine type, so an edited source or header, or another machine, never picks up a stale binary. Raises :class:`CPUKernelUnavailable` with the
    compiler's message if the build fails. Framework-neutral (used by the torch and the jax fronts).
    """
    compiler = _compiler()
    key = hashlib.sha256(
        b"\0".join([*(src.read_bytes() for src in (*sources, *headers)), *(str(i).encode() for i in inputs),
                    " ".join(flags).encode(), compiler.encode(), platform.machine().encode()])  # fmt: skip
    ).hexdigest()[:16]
    target = cache_dir() / f"{stem}_{key}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    def run(cmd: list[str]) -> None:
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise CPUKernelUnavailable(f"building {stem} failed:\n$ {' '.join(cmd)}\n{result.stderr}")

    # One object per source, compiled in parallel (the kernels are ~15 s of compiler time), linked into a private
    # temporary file that is renamed atomically: concurrent first uses are safe.
    with tempfile.TemporaryDirectory(dir=target.parent) as tmpdir:
        objects = [str(Path(tmpdir) / f"{i}_{src.stem}.o") for i, src in enumerate(sources)]
        with ThreadPoolExecutor(max_workers=max(1, min(len(sources), os.cpu_count() or 1))) as pool:
            list(pool.map(run, ([compiler, *flags, "-c", str(src), "-o", obj] for src, obj in zip(sources, objects))))
        tmp = str(Path(tmpdir) / f"{stem}.so")
        run([compiler, *flags, *objects, *map(str, inputs), "-o", tmp])
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
        lib = ctypes.CDLL(str(build_shared_object("fastso3_cpu", _SOURCES, _FLAGS, headers=tuple(_HEADERS))))
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


def library_path() -> Path:
    """The path of the loaded kernel library (for a library that links against it, e.g. the jax FFI shim)."""
    return Path(load_library()._name)


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
