"""Benchmark ``tp``: tensor products, fastso3 against e3nn 0.6.0 with identical weights, float32.

Configurations (the tensor-product issue's table):

* ``tutorial``: the seed tutorial's ``FullyConnectedTensorProduct(10x0e+10x1e, sh(lmax=2), 20x0e+10x1e)``
  with per-sample weights, 2000 edges;
* ``uvu-L{1,2,3}``: MACE/NequIP-style channel-wise ``uvu`` products ``C x (0e+1o+...)`` (degrees <= L)
  times ``sh(L)`` into every reachable output of degree <= L, per-edge weights, C = 64, 5000 edges;
* ``square``: ``FullyConnectedTensorProduct(32x0e+32x1o+32x2e, same, same)``, shared weights, 5000 samples;
* ``mace-L``: MACE-L's interaction product, ``128x(0e+1o+2e)`` times ``sh(3)`` into ``0e+1o+2e+3o`` (17 ``uvu``
  paths, per-edge weights), 4000 edges. Beside fastso3 and e3nn: ``matmul``, a float32 matmul with the same
  useful FLOPs (CG non-zeros x channels x 3 multiplies-adds per edge, four contractions for forward+backward),
  and ``copy``, a tensor copy moving the same bytes (each operand read once, each result written once); the
  ratios ``matmul/fastso3`` and ``copy/fastso3`` are the fractions of the machine's matmul throughput and copy
  bandwidth reached, measured in the same run (``params`` hold the FLOPs and bytes per edge);
* ``mace-L factored``: the same with the weights from the radial MLP's last layer, ``h (E, 64) @ M (64, 2176)``,
  timed with that layer: fastso3 with ``o3.FactoredWeight(h, M)`` (formed a block of edges at a time),
  ``fastso3 materialised`` (``h @ M``, then the product) and e3nn (``h @ M``, then the product).

Measurements: ``forward``, and ``forward+backward`` (gradients w.r.t. both inputs and the weights, or ``h``
and ``M`` for the factored case). The fastso3 module is ``fastso3.compat.from_e3nn`` of the e3nn module, so
the weights are identical; the outputs are cross-checked before timing, and ``checks`` also records the
machine's float32 matmul GFLOP/s (1024^3) and copy GB/s (64 MiB) at the start of the run.

Run: ``fastso3 bench tp [--quick]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Benchmark, Case, Unavailable, main

MEASURES = ("forward", "forward+backward")


def _e3nn_o3():
    try:
        from e3nn import o3
    except ImportError as exc:
        raise Unavailable("e3nn is not installed") from exc
    return o3


def _uvu(o3, channels: int, lmax: int):
    from fastso3.core.tensor_product_builders import channelwise_tensor_product_spec

    irreps_in1 = o3.Irreps([(channels, (l, (-1) ** l)) for l in range(lmax + 1)])
    irreps_sh = o3.Irreps.spherical_harmonics(lmax)
    keep = [(l, p) for l in range(lmax + 1) for p in (1, -1)]
    spec = channelwise_tensor_product_spec(str(irreps_in1), str(irreps_sh), keep)
    return o3.TensorProduct(irreps_in1, irreps_sh, str(spec["irreps_out"]), spec["instructions"], shared_weights=False)


MACE_HIDDEN = 64


def _mace_l(o3):
    from fastso3.core.tensor_product_builders import channelwise_tensor_product_spec

    irreps_in1, irreps_sh = o3.Irreps("128x0e+128x1o+128x2e"), o3.Irreps.spherical_harmonics(3)
    spec = channelwise_tensor_product_spec(str(irreps_in1), str(irreps_sh), "0e+1o+2e+3o")
    return o3.TensorProduct(irreps_in1, irreps_sh, str(spec["irreps_out"]), spec["instructions"], shared_weights=False)


def _work_per_edge(tp) -> tuple[int, int, int, int]:
    """(forward FLOPs, forward+backward FLOPs, forward bytes, forward+backward bytes) per edge, float32, of a
    fastso3 channel-wise module: 3 FLOPs per CG non-zero and channel per contraction (four with the backward)."""
    nnz = sum(len(p.cg_sparse.values) for p in tp.plan.paths if not p.empty)
    flops = 3 * nnz * tp.irreps_in1[0].mul
    operands = tp.irreps_in1.dim + tp.irreps_in2.dim + tp.weight_numel
    forward = 4 * (operands + tp.irreps_out.dim)
    backward = 4 * (tp.irreps_out.dim + 2 * operands)  # reads g and the inputs, writes their gradients
    return flops, 4 * flops, forward, forward + backward


def _roofline_factory(kind: str, amount: int):
    """A float32 matmul of ``amount`` FLOPs (``(m, 1024) @ (1024, 1024)``) or a copy moving ``amount`` bytes."""

    def factory():
        if kind == "matmul":
            a, b = torch.randn(max(1, round(amount / (2 * 1024 * 1024))), 1024), torch.randn(1024, 1024)
            return lambda: a @ b
        src = torch.randn(max(1, amount // 8))  # read n, write n floats: 8 bytes per float
        dst = torch.empty_like(src)
        return lambda: dst.copy_(src)

    return factory


def _configs(quick: bool) -> list[tuple[str, callable, int]]:
    scale = 10 if quick else 1
    return [
        (
            "tutorial",
            lambda o3: o3.FullyConnectedTensorProduct(
                "10x0e+10x1e", o3.Irreps.spherical_harmonics(2), "20x0e+10x1e", shared_weights=False
            ),
            2000 // scale,
        ),
        *[(f"uvu-L{l}", (lambda o3, l=l: _uvu(o3, 64, l)), 5000 // scale) for l in (1, 2, 3)],
        (
            "square",
            lambda o3: o3.FullyConnectedTensorProduct("32x0e+32x1o+32x2e", "32x0e+32x1o+32x2e", "32x0e+32x1o+32x2e"),
            5000 // scale,
        ),
        ("mace-L", _mace_l, 4000 // scale),
    ]


def _build(make, n: int):
    """(e3nn module, fastso3 twin, inputs) with the same weights, float32."""
    o3 = _e3nn_o3()
    from fastso3.compat import from_e3nn

    torch.manual_seed(0)
    tp = make(o3)
    ours = from_e3nn(tp)
    gen = torch.Generator().manual_seed(1)
    x1 = torch.randn(n, tp.irreps_in1.dim, generator=gen)
    x2 = torch.randn(n, tp.irreps_in2.dim, generator=gen)
    w = None if tp.shared_weights else torch.randn(n, tp.weight_numel, generator=gen)
    return tp, ours, (x1, x2, w)


def _factory(make, n: int, which: str, measure: str):
    def factory():
        tp, ours, (x1, x2, w) = _build(make, n)
        module = tp if which == "e3nn" else ours
        if measure == "forward":
            args = (x1, x2) if w is None else (x1, x2, w)
            return lambda: module(*args)
        leaves = [t.clone().requires_grad_() for t in (x1, x2, w) if t is not None]
        g = torch.randn(n, tp.irreps_out.dim, generator=torch.Generator().manual_seed(2))

        def run():
            for t in leaves:
                t.grad = None
            module.zero_grad(set_to_none=True)
            module(*leaves).backward(g)
            return leaves[0].grad

        run()
        return run

    return factory


def _factored_factory(n: int, which: str, measure: str):
    """MACE-L with per-edge weights ``h @ M`` (the radial MLP's last layer), timed with that layer."""

    def factory():
        tp, ours, (x1, x2, _) = _build(_mace_l, n)
        gen = torch.Generator().manual_seed(3)
        h = torch.randn(n, MACE_HIDDEN, generator=gen)
        m = torch.randn(MACE_HIDDEN, tp.weight_numel, generator=gen) / MACE_HIDDEN**0.5
        if which == "fastso3":
            from fastso3.o3 import FactoredWeight

            def product(a, b, hh, mm):
                return ours(a, b, FactoredWeight(hh, mm))
        else:
            module = tp if which == "e3nn" else ours

            def product(a, b, hh, mm):
                return module(a, b, hh @ mm)

        if measure == "forward":
            return lambda: product(x1, x2, h, m)
        leaves = [t.clone().requires_grad_() for t in (x1, x2, h, m)]
        g = torch.randn(n, tp.irreps_out.dim, generator=torch.Generator().manual_seed(2))

        def run():
            return torch.autograd.grad(product(*leaves), leaves, g)

        run()
        return run

    return factory


def _machine_rooflines() -> dict:
    """Float32 matmul GFLOP/s (1024^3) and copy GB/s (64 MiB read + 64 MiB written), best of 5."""
    import time

    def best(fn, repeats=5):
        fn()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return min(times)

    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    src = torch.randn(1 << 24)
    dst = torch.empty_like(src)
    return {"matmul_gflops_1024": 2 * 1024**3 / best(lambda: a @ b) / 1e9,
            "copy_gbps_64mib": 2 * src.numel() * 4 / best(lambda: dst.copy_(src)) / 1e9}  # fmt: skip


def _checks(quick: bool):
    def checks():
        out = _machine_rooflines()
        for name, make, n in _configs(quick):
            tp, ours, (x1, x2, w) = _build(make, min(n, 200))
            args = (x1, x2) if w is None else (x1, x2, w)
            out[f"max_abs_diff_{name}"] = float((tp(*args) - ours(*args)).detach().abs().max())
        return out

    return checks


def make_benchmark(quick: bool = False) -> Benchmark:
    cases = []
    for measure in MEASURES:
        for name, make, n in _configs(quick):
            params = {"measure": measure, "config": name, "n": n}
            providers = {which: _factory(make, n, which, measure) for which in ("fastso3", "e3nn")}
            if name == "mace-L":
                from fastso3.compat import from_e3nn

                flops_f, flops_fb, bytes_f, bytes_fb = _work_per_edge(from_e3nn(make(_e3nn_o3())))
                flops, moved = (flops_f, bytes_f) if measure == "forward" else (flops_fb, bytes_fb)
                params.update(flops_per_edge=flops, bytes_per_edge=moved)
                providers["matmul"] = _roofline_factory("matmul", flops * n)
                providers["copy"] = _roofline_factory("copy", moved * n)
            cases.append(Case(name=f"{measure} {name}", params=params, providers=providers))
        n = 4000 // (10 if quick else 1)
        cases.append(
            Case(
                name=f"{measure} mace-L factored",
                params={"measure": measure, "config": "mace-L factored", "n": n, "hidden": MACE_HIDDEN},
                providers={which: _factored_factory(n, which, measure) for which in ("fastso3", "fastso3 materialised", "e3nn")},
            )
        )
    timing = (
        {"warmup": 1, "min_repeats": 3, "max_repeats": 10, "min_time": 0.05, "block_time": 0.005}
        if quick
        else {"warmup": 3, "min_repeats": 7, "max_repeats": 50, "min_time": 1.0, "block_time": 0.02}
    )
    return Benchmark(
        name="tp",
        description="tensor products (float32), fastso3 vs e3nn 0.6.0 with identical weights; forward and "
        "forward+backward (gradients w.r.t. both inputs and the weights)",
        cases=cases,
        reference="e3nn",
        ratios=[("e3nn/fastso3", "e3nn", "fastso3"), ("matmul/fastso3", "matmul", "fastso3"),
                ("copy/fastso3", "copy", "fastso3")],  # fmt: skip
        settings={"dtype": "float32", "quick": quick, "channels_uvu": 64},
        plot_panels="measure",
        checks=_checks(quick),
        timing=timing,
    )


if __name__ == "__main__":
    sys.exit(main(make_benchmark))
