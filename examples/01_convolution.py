"""e3nn's convolution tutorial, rebuilt with fastso3 (no torch_cluster, no torch_scatter).

    f'_i = 1/sqrt(z) * sum_{j in N(i)} f_j (x)_{h(|x_ij|)} Y(x_ij / |x_ij|)

Same irreps, bases and normalisations as the tutorial. The script prints each stage's second moment
(about 1), checks equivariance with ``fastso3.testing``, prints a timing breakdown, and, when e3nn is
installed, shows that e3nn gives the same output for the same weights.

Run: ``python examples/01_convolution.py [--plot radial_basis.png]``.
"""

from __future__ import annotations

import argparse
import time

import torch

from fastso3 import o3
from fastso3.graph import radius_graph, scatter_sum
from fastso3.math import soft_one_hot_linspace
from fastso3.nn import FullyConnectedNet
from fastso3.testing import assert_equivariant

IRREPS_INPUT = o3.Irreps("10x0e + 10x1e")
IRREPS_OUTPUT = o3.Irreps("20x0e + 10x1e")
IRREPS_SH = o3.Irreps.spherical_harmonics(lmax=2)
NUM_NODES = 100
MAX_RADIUS = 1.8
NUM_BASIS = 10


class Convolution(torch.nn.Module):
    """The tutorial's convolution: ``(f_in (N, 10x0e+10x1e), pos (N, 3)) -> (N, 20x0e+10x1e)``."""

    def __init__(self, num_neighbors: float) -> None:
        super().__init__()
        self.irreps_in = [IRREPS_INPUT, "cartesian_points"]
        self.irreps_out = IRREPS_OUTPUT
        self.tp = o3.FullyConnectedTensorProduct(IRREPS_INPUT, IRREPS_SH, IRREPS_OUTPUT, shared_weights=False)
        self.fc = FullyConnectedNet([NUM_BASIS, 16, self.tp.weight_numel], torch.relu)
        self.num_neighbors = num_neighbors

    def stages(self, f_in: torch.Tensor, pos: torch.Tensor) -> dict:
        """Every intermediate of the tutorial, in order (tensors; the weights as their two factors)."""
        edge_src, edge_dst = radius_graph(pos, MAX_RADIUS)
        edge_vec = pos[edge_dst] - pos[edge_src]  # the convention of fastso3.graph: aggregated at dst
        sh = o3.spherical_harmonics(IRREPS_SH, edge_vec, normalize=True, normalization="component")
        emb = soft_one_hot_linspace(
            edge_vec.norm(dim=1), 0.0, MAX_RADIUS, NUM_BASIS, basis="smooth_finite", cutoff=True
        ).mul(NUM_BASIS**0.5)
        # the MLP's output, (edges, 400) weights, as (hidden layer, last layer): the tensor product applies the
        # last layer in its kernel, so the weights and their gradient are never stored (same numbers)
        weight = self.fc.factored(emb)
        summand = self.tp(f_in[edge_src], sh, weight)
        f_out = scatter_sum(summand, edge_dst, dim=0, dim_size=pos.shape[0]).div(self.num_neighbors**0.5)
        return {"sh": sh, "embedding": emb, "weight": weight, "summand": summand, "f_out": f_out}

    def forward(self, f_in: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        return self.stages(f_in, pos)["f_out"]


def e3nn_output(conv: Convolution, f_in: torch.Tensor, pos: torch.Tensor) -> torch.Tensor | None:
    """The same convolution with e3nn's modules and the same weights (None if e3nn is missing)."""
    try:
        from e3nn import nn as e3nn_nn
        from e3nn import o3 as e3nn_o3
        from e3nn.math import soft_one_hot_linspace as e3nn_soft_one_hot
    except ImportError:
        return None
    from fastso3.compat import to_e3nn

    tp = to_e3nn(conv.tp)
    fc = e3nn_nn.FullyConnectedNet([NUM_BASIS, 16, conv.tp.weight_numel], torch.relu)
    fc.load_state_dict(conv.fc.state_dict())
    # e3nn has no radius graph: brute force over all pairs, the same strict cutoff
    dist = torch.cdist(pos, pos)
    edge_dst, edge_src = torch.nonzero((dist < MAX_RADIUS) & ~torch.eye(len(pos), dtype=torch.bool), as_tuple=True)
    edge_vec = pos[edge_dst] - pos[edge_src]
    sh = e3nn_o3.spherical_harmonics(str(IRREPS_SH), edge_vec, normalize=True, normalization="component")
    emb = e3nn_soft_one_hot(edge_vec.norm(dim=1), 0.0, MAX_RADIUS, NUM_BASIS, basis="smooth_finite", cutoff=True)
    summand = tp(f_in[edge_src], sh, fc(emb.mul(NUM_BASIS**0.5)))
    out = torch.zeros(len(pos), IRREPS_OUTPUT.dim, dtype=summand.dtype).index_add_(0, edge_dst, summand)
    return out.div(conv.num_neighbors**0.5)


def timing_breakdown(conv: Convolution, f_in: torch.Tensor, pos: torch.Tensor, repeats: int = 20) -> dict[str, float]:
    """Median seconds per stage (graph, sh, embedding, MLP hidden layer, tensor product with the MLP's last
    layer, scatter)."""
    times: dict[str, list[float]] = {}

    def tick(name, t0):
        times.setdefault(name, []).append(time.perf_counter() - t0)
        return time.perf_counter()

    with torch.no_grad():
        for _ in range(repeats):
            t = time.perf_counter()
            edge_src, edge_dst = radius_graph(pos, MAX_RADIUS)
            edge_vec = pos[edge_dst] - pos[edge_src]
            t = tick("radius graph", t)
            sh = o3.spherical_harmonics(IRREPS_SH, edge_vec, normalize=True, normalization="component")
            t = tick("spherical harmonics", t)
            emb = soft_one_hot_linspace(
                edge_vec.norm(dim=1), 0.0, MAX_RADIUS, NUM_BASIS, basis="smooth_finite", cutoff=True
            ).mul(NUM_BASIS**0.5)
            t = tick("radial embedding", t)
            weight = conv.fc.factored(emb)
            t = tick("MLP hidden layer", t)
            summand = conv.tp(f_in[edge_src], sh, weight)
            t = tick("TP + MLP last layer", t)
            scatter_sum(summand, edge_dst, dim=0, dim_size=pos.shape[0]).div(conv.num_neighbors**0.5)
            tick("scatter", t)
    return {name: sorted(v)[len(v) // 2] for name, v in times.items()}


def plot_radial_basis(path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = torch.linspace(0.0, 2.0, 1000)
    y = soft_one_hot_linspace(x, 0.0, MAX_RADIUS, NUM_BASIS, basis="smooth_finite", cutoff=True)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(x, y)
    ax.axvline(MAX_RADIUS, color="k", lw=0.8, ls="--")
    ax.set_xlabel("distance")
    ax.set_title(f"smooth_finite radial basis ({NUM_BASIS} functions, cutoff {MAX_RADIUS})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(plot: str | None = None, print_fn=print) -> dict[str, float]:
    torch.manual_seed(0)
    pos = torch.randn(NUM_NODES, 3)
    f_in = IRREPS_INPUT.randn(NUM_NODES, -1)
    edge_src, _ = radius_graph(pos, MAX_RADIUS)
    num_neighbors = len(edge_src) / NUM_NODES
    conv = Convolution(num_neighbors)

    print_fn(f"{NUM_NODES} nodes, {len(edge_src)} edges ({num_neighbors:.1f} neighbours per node)")
    print_fn(f"{conv.tp} needs {conv.tp.weight_numel} weights")
    stages = conv.stages(f_in, pos)
    moments = {"input": f_in.pow(2).mean().item()}
    stages["weight"] = stages["weight"].materialize()
    moments.update({name: value.pow(2).mean().item() for name, value in stages.items()})
    for name, m in moments.items():
        print_fn(f"  second moment of {name:<10} {m:.3f}")
    w = stages["weight"]
    print_fn(f"  MLP weights: mean {w.mean().item():.3f}, std {w.std().item():.3f} (should be close to 0 and 1)")

    errors = assert_equivariant(conv, [f_in, pos])
    worst = max(float(e.max()) for e in errors.values())
    print_fn(f"equivariance (rotation, inversion, translation): max error {worst:.1e} (tolerance 1e-3): PASS")

    ref = e3nn_output(conv, f_in, pos)
    if ref is None:
        print_fn("e3nn is not installed: skipping the comparison")
        diff = float("nan")
    else:
        diff = (ref - stages["f_out"]).abs().max().item()
        print_fn(f"same weights in e3nn: max |fastso3 - e3nn| = {diff:.1e}")

    print_fn("timing (median of 20, no_grad):")
    for name, seconds in timing_breakdown(conv, f_in, pos).items():
        print_fn(f"  {name:<20} {seconds * 1e3:7.3f} ms")
    if plot:
        plot_radial_basis(plot)
        print_fn(f"radial basis plotted to {plot}")
    return {"max_equivariance_error": worst, "max_diff_e3nn": diff, **{f"moment_{k}": v for k, v in moments.items()}}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plot", help="write the radial basis plot (PNG) to this path")
    args = parser.parse_args()
    result = main(args.plot)
    if not result["max_equivariance_error"] <= 1e-3 or not result["max_diff_e3nn"] <= 1e-4:
        raise SystemExit(f"check failed: {result}")
