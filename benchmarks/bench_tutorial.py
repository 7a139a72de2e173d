"""Benchmark ``tutorial``: the e3nn convolution tutorial end to end (examples/01_convolution.py), float32.

Providers, same positions, features and weights:

* ``fastso3``: the example's ``Convolution`` (``fastso3.graph.radius_graph``, spherical harmonics,
  radial embedding, MLP, tensor product, ``scatter_sum``);
* ``e3nn``: e3nn 0.6.0's modules with the same weights, the radius graph by brute force (``torch.cdist``)
  and ``index_add_`` (the torch_cluster-free reference).

Nodes are uniform in a cube sized for about 20 neighbours within the cutoff 1.8. Measurements:
``forward`` and ``forward+backward`` (the gradient with respect to the positions, i.e. forces).

Run: ``fastso3 bench tutorial [--quick]``.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Benchmark, Case, Unavailable, main

MEASURES = ("forward", "forward+backward")
NEIGHBOURS = 20


def _example():
    path = Path(__file__).resolve().parents[1] / "examples" / "01_convolution.py"
    spec = importlib.util.spec_from_file_location("fastso3_example_convolution", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _system(n: int, ex):
    side = (n * 4 / 3 * math.pi * ex.MAX_RADIUS**3 / NEIGHBOURS) ** (1 / 3)
    gen = torch.Generator().manual_seed(0)
    pos = torch.rand(n, 3, generator=gen) * side
    f_in = torch.randn(n, ex.IRREPS_INPUT.dim, generator=gen)
    return pos, f_in


def _e3nn_conv(conv, ex):
    try:
        from e3nn import nn as e3nn_nn
        from e3nn import o3 as e3nn_o3
        from e3nn.math import soft_one_hot_linspace
    except ImportError as exc:
        raise Unavailable("e3nn is not installed") from exc
    from fastso3.compat import to_e3nn

    tp = to_e3nn(conv.tp).float()
    fc = e3nn_nn.FullyConnectedNet([ex.NUM_BASIS, 16, conv.tp.weight_numel], torch.relu)
    fc.load_state_dict(conv.fc.state_dict())
    irreps_sh = str(ex.IRREPS_SH)

    def forward(f_in, pos):
        dist = torch.cdist(pos.detach(), pos.detach())
        dist.fill_diagonal_(math.inf)
        edge_dst, edge_src = torch.nonzero(dist < ex.MAX_RADIUS, as_tuple=True)
        edge_vec = pos[edge_dst] - pos[edge_src]
        sh = e3nn_o3.spherical_harmonics(irreps_sh, edge_vec, normalize=True, normalization="component")
        emb = soft_one_hot_linspace(
            edge_vec.norm(dim=1), 0.0, ex.MAX_RADIUS, ex.NUM_BASIS, basis="smooth_finite", cutoff=True
        ).mul(ex.NUM_BASIS**0.5)
        summand = tp(f_in[edge_src], sh, fc(emb))
        out = summand.new_zeros(len(pos), summand.shape[1]).index_add_(0, edge_dst, summand)
        return out.div(conv.num_neighbors**0.5)

    return forward


def _factory(n: int, which: str, measure: str):
    def factory():
        ex = _example()
        pos, f_in = _system(n, ex)
        torch.manual_seed(0)
        conv = ex.Convolution(num_neighbors=float(NEIGHBOURS))
        fn = conv if which == "fastso3" else _e3nn_conv(conv, ex)
        if measure == "forward":
            return lambda: fn(f_in, pos)
        p = pos.clone().requires_grad_()
        g = torch.randn(n, ex.IRREPS_OUTPUT.dim, generator=torch.Generator().manual_seed(3))

        def run():
            p.grad = None
            fn(f_in, p).backward(g)
            return p.grad

        run()
        return run

    return factory


def _checks(n: int):
    def checks():
        ex = _example()
        pos, f_in = _system(n, ex)
        torch.manual_seed(0)
        conv = ex.Convolution(num_neighbors=float(NEIGHBOURS))
        ours, ref = conv(f_in, pos), _e3nn_conv(conv, ex)(f_in, pos)
        edge_src, _ = ex.radius_graph(pos, ex.MAX_RADIUS)
        return {f"max_abs_diff_n{n}": float((ours - ref).abs().max()), f"neighbours_per_node_n{n}": len(edge_src) / n}

    return checks


def make_benchmark(quick: bool = False) -> Benchmark:
    sizes = [100, 1000] if quick else [100, 10_000]
    cases = [
        Case(
            name=f"{measure} n={n}",
            params={"measure": measure, "nodes": n},
            providers={which: _factory(n, which, measure) for which in ("fastso3", "e3nn")},
        )
        for measure in MEASURES
        for n in sizes
    ]
    timing = (
        {"warmup": 1, "min_repeats": 3, "max_repeats": 10, "min_time": 0.05, "block_time": 0.005}
        if quick
        else {"warmup": 2, "min_repeats": 7, "max_repeats": 30, "min_time": 1.0, "block_time": 0.02}
    )
    return Benchmark(
        name="tutorial",
        description="e3nn's convolution tutorial end to end (radius graph, SH, radial MLP, FCTP, scatter), float32; "
        "forward and forward+backward w.r.t. positions; e3nn reference uses a brute-force radius graph and index_add",
        cases=cases,
        reference="e3nn",
        ratios=[("e3nn/fastso3", "e3nn", "fastso3")],
        settings={"dtype": "float32", "neighbours": NEIGHBOURS, "quick": quick},
        plot_x="nodes",
        plot_panels="measure",
        checks=_checks(sizes[0]),
        timing=timing,
    )


if __name__ == "__main__":
    sys.exit(main(make_benchmark))
