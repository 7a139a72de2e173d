"""e3nn 0.6.0's convolution tutorial (docs/guide/convolution.rst of github.com/e3nn/e3nn), as a script.

Changes from the tutorial: torch_cluster's ``radius_graph`` and torch_scatter's ``scatter`` come from
``fastso3.graph``; the default dtype is float64 and the seed is fixed; plots go to the Agg backend;
the tutorial's final timing cell is dropped; the results are saved to ``sys.argv[1]`` (a ``torch.save``
file) when given, so that a run on the real e3nn and one under ``python -m fastso3.as_e3nn`` compare.
"""

import sys

import matplotlib

matplotlib.use("Agg")

import torch

torch.set_default_dtype(torch.float64)
torch.manual_seed(0)

from fastso3.graph import radius_graph, scatter  # was: torch_cluster, torch_scatter

from e3nn import o3, nn
from e3nn.math import soft_one_hot_linspace
import matplotlib.pyplot as plt

irreps_input = o3.Irreps("10x0e + 10x1e")
irreps_output = o3.Irreps("20x0e + 10x1e")

# create node positions
num_nodes = 100
pos = torch.randn(num_nodes, 3)  # random node positions

# create edges
max_radius = 1.8
edge_src, edge_dst = radius_graph(pos, max_radius, max_num_neighbors=num_nodes - 1)
print(edge_src.shape)

edge_vec = pos[edge_dst] - pos[edge_src]

# compute z
num_neighbors = len(edge_src) / num_nodes
print(num_neighbors)

f_in = irreps_input.randn(num_nodes, -1)
print(f_in.pow(2).mean())  # should be close to 1

irreps_sh = o3.Irreps.spherical_harmonics(lmax=2)
print(irreps_sh)

sh = o3.spherical_harmonics(irreps_sh, edge_vec, normalize=True, normalization="component")
# normalize=True ensure that x is divided by |x| before computing the sh

print(sh.pow(2).mean())  # should be close to 1

tp = o3.FullyConnectedTensorProduct(irreps_input, irreps_sh, irreps_output, shared_weights=False)

print(f"{tp} needs {tp.weight_numel} weights")

tp.visualize()

num_basis = 10

x = torch.linspace(0.0, 2.0, 1000)
y = soft_one_hot_linspace(
    x,
    start=0.0,
    end=max_radius,
    number=num_basis,
    basis="smooth_finite",
    cutoff=True,
)

plt.plot(x, y)

edge_length_embedding = soft_one_hot_linspace(
    edge_vec.norm(dim=1),
    start=0.0,
    end=max_radius,
    number=num_basis,
    basis="smooth_finite",
    cutoff=True,
)
edge_length_embedding = edge_length_embedding.mul(num_basis**0.5)

print(edge_length_embedding.shape)
print(edge_length_embedding.pow(2).mean())  # the second moment

fc = nn.FullyConnectedNet([num_basis, 16, tp.weight_numel], torch.relu)
weight = fc(edge_length_embedding)

print(weight.shape)
print(len(edge_src), tp.weight_numel)

# For a proper notmalization, the weights also need to be mean 0
print(weight.mean(), weight.std())  # should close to 0 and 1

summand = tp(f_in[edge_src], sh, weight)

print(summand.shape)
print(summand.pow(2).mean())  # should be close to 1

f_out = scatter(summand, edge_dst, dim=0, dim_size=num_nodes)

f_out = f_out.div(num_neighbors**0.5)

print(f_out.pow(2).mean())  # should be close to 1


def conv(f_in, pos):
    edge_src, edge_dst = radius_graph(pos, max_radius, max_num_neighbors=len(pos) - 1)
    edge_vec = pos[edge_dst] - pos[edge_src]
    sh = o3.spherical_harmonics(irreps_sh, edge_vec, normalize=True, normalization="component")
    emb = soft_one_hot_linspace(edge_vec.norm(dim=1), 0.0, max_radius, num_basis, basis="smooth_finite", cutoff=True).mul(
        num_basis**0.5
    )
    return scatter(tp(f_in[edge_src], sh, fc(emb)), edge_dst, dim=0, dim_size=num_nodes).div(num_neighbors**0.5)


rot = o3.rand_matrix()
D_in = irreps_input.D_from_matrix(rot)
D_out = irreps_output.D_from_matrix(rot)

# rotate before
f_before = conv(f_in @ D_in.T, pos @ rot.T)

# rotate after
f_after = conv(f_in, pos) @ D_out.T

print(torch.allclose(f_before, f_after, rtol=1e-4, atol=1e-4))

if len(sys.argv) > 1:
    torch.save(
        {"f_in": f_in, "sh": sh, "weight": weight, "summand": summand, "f_out": f_out, "rot": rot, "f_before": f_before,
         "f_after": f_after, "fc": fc.state_dict(), "printed_irreps": [str(irreps_sh), str(tp)]},
        sys.argv[1],
    )
