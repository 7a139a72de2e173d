"""Benchmark ``conv``: the fused channel-wise tensor-product convolution, forward+backward, float32.

Configuration (issue 4): features ``64x0e+64x1o+64x2e+64x3o`` (C = 64, l <= 3) times spherical harmonics
l <= 3, a weighted ``uvu`` path into every reachable output of degree <= 3 (34 paths, per-edge weights),
1000 nodes and 20000 random edges (100 and 2000 with ``--quick``). Providers:

* ``fastso3``: ``fastso3.ops.tensor_product_conv`` (compiled CPU kernel, deterministic segments);
* ``e3nn``: e3nn 0.6.0's ``TensorProduct`` on the gathered sender features, then ``index_add`` into the
  receivers (the speed-up reference);
* ``fastso3 unfused``: the same with ``fastso3.o3.TensorProduct`` (its channel-wise kernel per edge).

Measurement: forward+backward (gradients w.r.t. node features, edge attributes and edge weights).
Peak memory of one forward+backward is measured per provider in a fresh subprocess: growth of the peak
resident set (``VmHWM``, reset through ``/proc/self/clear_refs``) over the resident set before the call, with
glibc's mmap threshold fixed so freed tensors leave the resident set. It is stored under ``checks`` in
the JSON and printed before the timing table, next to the outputs' cross-check.

Run: ``fastso3 bench conv [--quick]``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Benchmark, Case, Unavailable, main
from bench_tp import _roofline_factory

CHANNELS, LMAX = 64, 3
PROVIDERS = ("fastso3", "e3nn", "fastso3 unfused")


def _sizes(quick: bool) -> tuple[int, int]:
    return (100, 2000) if quick else (1000, 20000)


def _module(provider: str):
    from fastso3 import o3 as fast_o3
    from fastso3.core.tensor_product_builders import channelwise_tensor_product_spec

    irreps_in1 = fast_o3.Irreps([(CHANNELS, (l, (-1) ** l)) for l in range(LMAX + 1)])
    keep = [(l, p) for l in range(LMAX + 1) for p in (1, -1)]
    spec = channelwise_tensor_product_spec(irreps_in1, fast_o3.Irreps.spherical_harmonics(LMAX), keep)
    args = (str(irreps_in1), str(spec["irreps_in2"]), str(spec["irreps_out"]), spec["instructions"])
    if provider == "e3nn":
        try:
            from e3nn import o3
        except ImportError as exc:
            raise Unavailable("e3nn is not installed") from exc
        return o3.TensorProduct(*args, shared_weights=False)
    return fast_o3.TensorProduct(*args, shared_weights=False)


def _setup(provider: str, nodes: int, edges: int):
    """A zero-argument forward+backward of ``provider`` returning the three gradients, and its output function."""
    from fastso3.ops import tensor_product_conv

    tp = _module(provider)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(nodes, tp.irreps_in1.dim, generator=gen)
    src = torch.randint(0, nodes, (edges,), generator=gen)
    dst = torch.randint(0, nodes, (edges,), generator=gen)
    sh = torch.randn(edges, tp.irreps_in2.dim, generator=gen)
    w = torch.randn(edges, tp.weight_numel, generator=gen)
    g = torch.randn(nodes, tp.irreps_out.dim, generator=gen)

    def forward(a, b, c):
        if provider == "fastso3":
            return tensor_product_conv(a, src, dst, b, c, tp, nodes)
        return a.new_zeros(nodes, tp.irreps_out.dim).index_add(0, dst, tp(a[src], b, c))

    leaves = [t.requires_grad_() for t in (x, sh, w)]

    def run():
        return torch.autograd.grad(forward(*leaves), leaves, g)

    return run, lambda: forward(*leaves)


def _factory(provider: str, nodes: int, edges: int):
    def factory():
        run, _ = _setup(provider, nodes, edges)
        run()
        return run

    return factory


MACE_NODES, MACE_EDGES, MACE_HIDDEN = 200, 4000, 64  # issue 16's MACE-L shape, 20 neighbours per node
MACE_PROVIDERS = ("fastso3 factored", "fastso3", "e3nn")


def _mace_sizes(quick: bool) -> tuple[int, int]:
    return (MACE_NODES // 10, MACE_EDGES // 10) if quick else (MACE_NODES, MACE_EDGES)


def _mace_factory(provider: str, measure: str, quick: bool):
    """MACE-L's interaction (``bench_tp._mace_l``) as a convolution with per-edge weights ``h @ M`` (the radial
    MLP's last layer, timed with it): factored (``FactoredWeight``, never stored), materialised, or e3nn's
    product on gathered features + ``index_add``."""

    def factory():
        from bench_tp import _mace_l

        from fastso3 import o3 as fast_o3
        from fastso3.ops import tensor_product_conv

        nodes, edges = _mace_sizes(quick)
        if provider == "e3nn":
            try:
                from e3nn import o3
            except ImportError as exc:
                raise Unavailable("e3nn is not installed") from exc
            tp = _mace_l(o3)
        else:
            tp = _mace_l(fast_o3)
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(nodes, tp.irreps_in1.dim, generator=gen)
        src, dst = torch.randint(0, nodes, (edges,), generator=gen), torch.randint(0, nodes, (edges,), generator=gen)
        sh = torch.randn(edges, tp.irreps_in2.dim, generator=gen)
        h = torch.randn(edges, MACE_HIDDEN, generator=gen)
        m = torch.randn(MACE_HIDDEN, tp.weight_numel, generator=gen) / MACE_HIDDEN**0.5
        g = torch.randn(nodes, tp.irreps_out.dim, generator=gen)

        def forward(a, b, hh, mm):
            if provider == "fastso3 factored":
                return tensor_product_conv(a, src, dst, b, fast_o3.FactoredWeight(hh, mm), tp, nodes)
            if provider == "fastso3":
                return tensor_product_conv(a, src, dst, b, hh @ mm, tp, nodes)
            return a.new_zeros(nodes, tp.irreps_out.dim).index_add(0, dst, tp(a[src], b, hh @ mm))

        if measure == "forward":
            def run():
                with torch.no_grad():
                    return forward(x, sh, h, m)
        else:
            leaves = [t.requires_grad_() for t in (x, sh, h, m)]

            def run():
                return torch.autograd.grad(forward(*leaves), leaves, g)

        run()
        return run

    return factory


def _mace_work_per_edge(measure: str, quick: bool) -> tuple[int, int]:
    """(useful FLOPs, compulsory bytes) per edge of the MACE-L convolution with its radial layer, float32.

    FLOPs: 3 per CG non-zero and channel per contraction (the product forward; four contractions with the
    backward) plus ``2 H W`` per GEMM (``h M``; with the backward also ``dW M^T`` and ``h^T dW``). Bytes: every
    input read once and every output written once (per-edge harmonics and ``h``; per-node features, output and,
    with the backward, the output cotangent and the three input gradients), divided by the edges.
    """
    from bench_tp import _mace_l

    from fastso3 import o3

    tp = _mace_l(o3)
    nodes, edges = _mace_sizes(quick)
    nnz = sum(len(p.cg_sparse.values) for p in tp.plan.paths if not p.empty)
    product, gemm = 3 * nnz * tp.irreps_in1[0].mul, 2 * MACE_HIDDEN * tp.weight_numel
    per_edge, per_node = tp.irreps_in2.dim + MACE_HIDDEN, tp.irreps_in1.dim + tp.irreps_out.dim
    if measure == "forward":
        return product + gemm, 4 * (edges * per_edge + nodes * per_node) // edges
    return 4 * product + 3 * gemm, 4 * (2 * edges * per_edge + 2 * nodes * per_node) // edges


def _rss(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def probe(provider: str, nodes: int, edges: int) -> None:
    """Print the peak resident-set growth (bytes) of one forward+backward (run in a fresh process)."""
    import gc

    run, _ = _setup(provider, nodes, edges)
    run()  # warm-up: library build, tables, thread pools
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current resident set
    before = _rss("VmRSS")
    run()
    print(json.dumps({"peak_growth_bytes": _rss("VmHWM") - before}))


def _peak_memory(provider: str, nodes: int, edges: int) -> int | None:
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}
    code = f"import sys; sys.path.insert(0, {str(Path(__file__).resolve().parent)!r}); import bench_conv; bench_conv.probe({provider!r}, {nodes}, {edges})"
    result = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        return None
    return json.loads(result.stdout.strip().splitlines()[-1])["peak_growth_bytes"]


def _checks(quick: bool):
    def checks():
        outs = {p: _setup(p, 50, 500)[1]().detach() for p in PROVIDERS}
        scale = float(outs["e3nn"].abs().max())
        out = {f"max_abs_diff_{p}_vs_e3nn": float((outs[p] - outs["e3nn"]).abs().max()) for p in PROVIDERS if p != "e3nn"}
        out["e3nn_output_max_abs"] = scale
        nodes, edges = _sizes(quick)
        peak = {p: _peak_memory(p, nodes, edges) for p in PROVIDERS}
        out["peak_memory_forward+backward_bytes"] = peak
        if peak["fastso3"] and peak["e3nn"]:
            out["peak_memory_ratio_e3nn/fastso3"] = peak["e3nn"] / peak["fastso3"]
        print("peak memory growth of one forward+backward (MiB): " + ", ".join(
            f"{p} {m / 2**20:.1f}" if m else f"{p} failed" for p, m in peak.items()
        ))  # fmt: skip
        return out

    return checks


def make_benchmark(quick: bool = False) -> Benchmark:
    nodes, edges = _sizes(quick)
    case = Case(
        name=f"forward+backward N={nodes} E={edges}",
        params={"measure": "forward+backward", "nodes": nodes, "edges": edges},
        providers={p: _factory(p, nodes, edges) for p in PROVIDERS},
    )
    mace_edges = _mace_sizes(quick)[1]
    mace = []
    for measure in ("forward", "forward+backward"):
        flops, moved = _mace_work_per_edge(measure, quick)
        providers = {p: _mace_factory(p, measure, quick) for p in MACE_PROVIDERS}
        providers["matmul"] = _roofline_factory("matmul", flops * mace_edges)
        providers["copy"] = _roofline_factory("copy", moved * mace_edges)
        mace.append(Case(name=f"mace-L {measure} E={mace_edges}", providers=providers,
                         params={"measure": measure, "config": "mace-L factored", "flops_per_edge": flops,
                                 "bytes_per_edge": moved}))  # fmt: skip
    # one e3nn call takes seconds at full size: few, long blocks
    timing = {"warmup": 1, "min_repeats": 3, "max_repeats": 10, "min_time": 0.05 if quick else 1.0, "block_time": 0.005}
    return Benchmark(
        name="conv",
        description="fused channel-wise tensor-product convolution (float32, C=64, l<=3, sh l<=3), forward+backward: "
        "fastso3.ops.tensor_product_conv vs e3nn 0.6.0 TensorProduct + index_add; and MACE-L's interaction with "
        "per-edge weights h @ M (radial MLP's last layer included), factored vs materialised vs e3nn",
        cases=[case, *mace],
        reference="e3nn",
        ratios=[("e3nn/fastso3", "e3nn", "fastso3"), ("unfused/fused", "fastso3 unfused", "fastso3"),
                ("e3nn/factored", "e3nn", "fastso3 factored"), ("materialised/factored", "fastso3", "fastso3 factored"),
                ("matmul/factored", "matmul", "fastso3 factored"), ("copy/factored", "copy", "fastso3 factored")],
        settings={"dtype": "float32", "quick": quick, "channels": CHANNELS, "lmax": LMAX, "nodes": nodes, "edges": edges},
        checks=_checks(quick),
        timing=timing,
    )


if __name__ == "__main__":
    sys.exit(main(make_benchmark))
