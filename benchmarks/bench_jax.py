"""Benchmark ``jax``: fastso3.jax against e3nn-jax 0.21.0 on CPU, float32, everything under ``jax.jit``.

Providers (same data for both; each call blocks until the result is ready):

* ``fastso3.jax``: ``fastso3.jax`` (the core plans executed with XLA, the default ``backend='xla'``);
* ``fastso3.jax[cpu]``: ``backend='cpu'``, fastso3's compiled CPU kernels through ``jax.ffi`` (the ``sh`` and
  ``uvu`` rows);
* ``e3nn-jax``: ``e3nn_jax`` 0.21.0, the reference of the speed-up column.

Cases:

* ``sh``: ``spherical_harmonics(0..lmax, x, normalize=True)`` ('component') of N points; ``sh+grad`` adds the
  gradient with respect to the points (``jax.grad`` of ``sum(Y * g)``);
* ``tp``: ``tensor_product(x1, x2)`` of N pairs (``16x0e+16x1o+16x2e`` with ``0e+1o+2e``);
* ``fctp``: ``FunctionalFullyConnectedTensorProduct(...).left_right`` with shared weights under ``jax.vmap``
  (the seed's first pattern; ``16x0e+16x1o`` x ``0e+1o+2e`` -> ``16x0e+16x1o+16x2e``), forward and
  forward+backward (gradient with respect to the weights);
* ``uvu``: the channel-wise ``FunctionalTensorProduct`` (``fastso3.core.tensor_product_builders.
  channelwise_tensor_product_spec``: ``16x0e+16x1o+16x2e`` x ``0e+1o+2e``, every ``uvu`` path, as in MACE and
  NequIP) with shared weights under ``jax.vmap``, forward and forward+backward (weights and x1).

Run: ``fastso3 bench jax [--quick]`` or ``python benchmarks/bench_jax.py [--quick]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Benchmark, Case, Unavailable, main

from fastso3.core.tensor_product_builders import channelwise_tensor_product_spec


def _modules(provider: str):
    try:
        import jax
        import jax.numpy as jnp
    except ImportError as exc:
        raise Unavailable("jax is not installed (pip install fastso3[jax])") from exc
    if provider == "e3nn-jax":
        try:
            import e3nn_jax as lib
            from e3nn_jax import legacy
        except ImportError as exc:
            raise Unavailable("e3nn-jax is not installed") from exc
        return jax, jnp, lib, legacy.FunctionalFullyConnectedTensorProduct
    import fastso3.jax as lib  # both fastso3 providers

    return jax, jnp, lib, lib.FunctionalFullyConnectedTensorProduct


def _blocking(fn, *args):
    import jax

    out = fn(*args)
    jax.block_until_ready(out)
    return lambda: jax.block_until_ready(fn(*args))


def _sh_factory(provider: str, lmax: int, points: np.ndarray, with_grad: bool):
    def factory():
        jax, jnp, lib, _ = _modules(provider)
        irreps = "+".join(f"{l}{'e' if l % 2 == 0 else 'o'}" for l in range(lmax + 1))
        options = {"backend": "cpu"} if provider == "fastso3.jax[cpu]" else {}
        if options:
            from fastso3.kernels.cpu.loader import library_status

            available, reason = library_status()
            if not available:
                raise Unavailable(reason)
        x = jnp.asarray(points)

        def sh(v):
            return lib.spherical_harmonics(irreps, v, True, **options).array

        if not with_grad:
            return _blocking(jax.jit(sh), x)
        # The cotangent is an argument: a closed-over constant would let XLA fold part of the backward pass.
        g = jnp.asarray(np.random.default_rng(1).standard_normal((len(points), (lmax + 1) ** 2)).astype(np.float32))
        return _blocking(jax.jit(jax.value_and_grad(lambda v, g: jnp.sum(sh(v) * g))), x, g)

    return factory


def _tp_factory(provider: str, irreps1: str, irreps2: str, x1: np.ndarray, x2: np.ndarray):
    def factory():
        jax, jnp, lib, _ = _modules(provider)
        f = jax.jit(lambda a, b: lib.tensor_product(lib.IrrepsArray(irreps1, a), lib.IrrepsArray(irreps2, b)).array)
        return _blocking(f, jnp.asarray(x1), jnp.asarray(x2))

    return factory


def _fctp_factory(provider: str, irreps: tuple, x1: np.ndarray, x2: np.ndarray, with_grad: bool):
    def factory():
        jax, jnp, lib, fctp = _modules(provider)
        tp = fctp(*irreps)
        rng = np.random.default_rng(3)
        ws = [jnp.asarray(rng.standard_normal(i.path_shape).astype(np.float32)) for i in tp.instructions if i.has_weight]
        a = lib.IrrepsArray(irreps[0], jnp.asarray(x1))
        b = lib.IrrepsArray(irreps[1], jnp.asarray(x2))
        batched = jax.vmap(tp.left_right, (None, 0, 0), 0)
        if not with_grad:
            return _blocking(jax.jit(lambda w, a, b: batched(w, a, b).array), ws, a, b)
        return _blocking(jax.jit(jax.value_and_grad(lambda w, a, b: jnp.sum(batched(w, a, b).array ** 2))), ws, a, b)

    return factory


def _uvu_product(provider: str, spec: dict):
    """(jax, jnp, lib, product, per-path weights) of the channel-wise spec for ``provider``."""
    jax, jnp, lib, _ = _modules(provider)
    irreps = [str(spec[k]) for k in ("irreps_in1", "irreps_in2", "irreps_out")]
    if provider == "e3nn-jax":
        from e3nn_jax import legacy

        tp = legacy.FunctionalTensorProduct(*irreps, spec["instructions"])
    else:
        if provider == "fastso3.jax[cpu]":
            from fastso3.kernels.cpu.loader import library_status

            available, reason = library_status()
            if not available:
                raise Unavailable(reason)
        tp = lib.FunctionalTensorProduct(*irreps, spec["instructions"], backend="cpu" if provider.endswith("[cpu]") else "xla")
    rng = np.random.default_rng(4)
    ws = [jnp.asarray(rng.standard_normal(i.path_shape).astype(np.float32)) for i in tp.instructions if i.has_weight]
    return jax, jnp, lib, tp, ws


def _uvu_factory(provider: str, spec: dict, x1: np.ndarray, x2: np.ndarray, with_grad: bool):
    def factory():
        jax, jnp, lib, tp, ws = _uvu_product(provider, spec)
        a = lib.IrrepsArray(str(spec["irreps_in1"]), jnp.asarray(x1))
        b = lib.IrrepsArray(str(spec["irreps_in2"]), jnp.asarray(x2))
        batched = jax.vmap(tp.left_right, (None, 0, 0), 0)
        if not with_grad:
            return _blocking(jax.jit(lambda w, a, b: batched(w, a, b).array), ws, a, b)
        loss = lambda w, a, b: jnp.sum(batched(w, a, b).array ** 2)  # noqa: E731
        return _blocking(jax.jit(jax.value_and_grad(loss, argnums=(0, 1))), ws, a, b)

    return factory


def _checks(points, x1, x2, irreps_tp, irreps_fctp, fx1, fx2, spec_uvu, ux1):
    def checks():
        out = {}
        results = {}
        for provider in ("fastso3.jax", "e3nn-jax"):
            try:
                jax, jnp, lib, fctp = _modules(provider)
            except Unavailable:
                return {"skipped": "e3nn-jax or jax missing"}
            y = lib.spherical_harmonics("0e+1o+2e+3o+4e", jnp.asarray(points[:1000]), True).array
            z = lib.tensor_product(lib.IrrepsArray(irreps_tp[0], jnp.asarray(x1[:100])),
                                   lib.IrrepsArray(irreps_tp[1], jnp.asarray(x2[:100]))).array  # fmt: skip
            tp = fctp(*irreps_fctp)
            rng = np.random.default_rng(3)
            ws = [jnp.asarray(rng.standard_normal(i.path_shape).astype(np.float32)) for i in tp.instructions if i.has_weight]
            u = jax.vmap(tp.left_right, (None, 0, 0))(ws, lib.IrrepsArray(irreps_fctp[0], jnp.asarray(fx1[:100])),
                                                       lib.IrrepsArray(irreps_fctp[1], jnp.asarray(fx2[:100]))).array  # fmt: skip
            results[provider] = [np.asarray(v) for v in (y, z, u)]
        for name, a, b in zip(("sh", "tp", "fctp"), results["fastso3.jax"], results["e3nn-jax"]):
            out[f"max_abs_diff_{name}_float32"] = float(np.abs(a - b).max())
        from fastso3.kernels.cpu.loader import library_status

        if library_status()[0]:
            import fastso3.jax

            y = fastso3.jax.spherical_harmonics("0e+1o+2e+3o+4e", jnp.asarray(points[:1000]), True, backend="cpu").array
            out["max_abs_diff_sh_cpu_float32"] = float(np.abs(np.asarray(y) - results["e3nn-jax"][0]).max())
            uvu = []
            for provider in ("fastso3.jax[cpu]", "e3nn-jax"):
                jax, jnp, lib, tp, ws = _uvu_product(provider, spec_uvu)
                a = lib.IrrepsArray(str(spec_uvu["irreps_in1"]), jnp.asarray(ux1[:100]))
                b = lib.IrrepsArray(str(spec_uvu["irreps_in2"]), jnp.asarray(x2[:100]))
                uvu.append(np.asarray(jax.vmap(tp.left_right, (None, 0, 0))(ws, a, b).array))
            out["max_abs_diff_uvu_cpu_float32"] = float(np.abs(uvu[0] - uvu[1]).max())
        return out

    return checks


def make_benchmark(quick: bool = False) -> Benchmark:
    rng = np.random.default_rng(0)
    n_sh = 10_000 if quick else 100_000
    n_tp = 1_000 if quick else 10_000
    lmaxes = [1, 3, 6] if quick else [1, 2, 3, 4, 6, 8]
    points = rng.standard_normal((n_sh, 3)).astype(np.float32)
    irreps_tp = ("16x0e+16x1o+16x2e", "0e+1o+2e")
    irreps_fctp = ("16x0e+16x1o", "0e+1o+2e", "16x0e+16x1o+16x2e")
    x1 = rng.standard_normal((n_tp, 16 * 9)).astype(np.float32)
    x2 = rng.standard_normal((n_tp, 9)).astype(np.float32)
    fx1 = rng.standard_normal((n_tp, 16 * 4)).astype(np.float32)
    providers = ("fastso3.jax", "e3nn-jax")
    spec_uvu = channelwise_tensor_product_spec(*irreps_tp)  # 16x(0e+1o+2e) x (0e+1o+2e), like x1 and x2

    cases = []
    for with_grad in (False, True):
        for lmax in lmaxes:
            name = "sh+grad" if with_grad else "sh"
            cases.append(Case(name=f"{name} lmax={lmax}", params={"measure": name, "lmax": lmax, "n": n_sh},
                              providers={p: _sh_factory(p, lmax, points, with_grad) for p in (*providers, "fastso3.jax[cpu]")}))  # fmt: skip
    cases.append(Case(name="tp 16x(0e+1o+2e) x (0e+1o+2e)", params={"measure": "tp", "lmax": 2, "n": n_tp},
                      providers={p: _tp_factory(p, *irreps_tp, x1, x2) for p in providers}))  # fmt: skip
    for with_grad in (False, True):
        name = "fctp+grad" if with_grad else "fctp"
        cases.append(Case(name=f"{name} shared weights", params={"measure": name, "lmax": 2, "n": n_tp},
                          providers={p: _fctp_factory(p, irreps_fctp, fx1, x2, with_grad) for p in providers}))  # fmt: skip
    for with_grad in (False, True):
        name = "uvu+grad" if with_grad else "uvu"
        cases.append(Case(name=f"{name} shared weights", params={"measure": name, "lmax": 2, "n": n_tp},
                          providers={p: _uvu_factory(p, spec_uvu, x1, x2, with_grad)
                                     for p in (*providers, "fastso3.jax[cpu]")}))  # fmt: skip
    timing = (
        {"warmup": 1, "min_repeats": 3, "max_repeats": 10, "min_time": 0.05, "block_time": 0.005}
        if quick
        else {"warmup": 3, "min_repeats": 7, "max_repeats": 100, "min_time": 1.0, "block_time": 0.02}
    )
    return Benchmark(
        name="jax",
        description=f"fastso3.jax vs e3nn-jax 0.21.0 on CPU, float32, jit: spherical harmonics of {n_sh} points "
        f"(values, values+gradient; backend 'xla' and 'cpu'), tensor_product, the fully connected and the channel-wise (uvu; 'xla' and 'cpu') products (shared weights, vmap) of {n_tp} pairs",
        cases=cases,
        reference="e3nn-jax",
        ratios=[("e3nn-jax/fastso3.jax", "e3nn-jax", "fastso3.jax"), ("e3nn-jax/fastso3.jax[cpu]", "e3nn-jax", "fastso3.jax[cpu]")],
        settings={"n_sh": n_sh, "n_tp": n_tp, "lmax": lmaxes, "dtype": "float32", "quick": quick,
                  "irreps_tp": irreps_tp, "irreps_fctp": irreps_fctp, "irreps_uvu": irreps_tp},  # fmt: skip
        plot_x="lmax",
        plot_panels="measure",
        checks=_checks(points, x1, x2, irreps_tp, irreps_fctp, fx1, x2, spec_uvu, x1),
        timing=timing,
    )


if __name__ == "__main__":
    sys.exit(main(make_benchmark))
