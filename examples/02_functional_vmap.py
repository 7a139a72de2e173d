"""The functional tensor product with torch.func.vmap: shared weights, per-sample weights, extra channels.

e3nn (torch) puts ``shared_weights`` / ``internal_weights`` switches on its modules; with a pure
function of tensors, the same variants (and more) come from ``torch.func.vmap``:

1. shared weights: ``vmap(f, in_dims=(None, 0, 0))``: one weight vector for the whole batch;
2. batch weights: ``vmap(f, in_dims=(0, 0, 0))``: one weight vector per sample;
3. extra channel index: three nested vmaps give every (channel_in1, channel_in2, channel_out) triple
   its own weights, then the input channels are summed with a ``1 / sqrt(n1 * n2)`` normalisation.

Each is compared with an equivalent computation by the ``fastso3.o3`` modules (or a loop), and the
maximum difference is printed. Run: ``python examples/02_functional_vmap.py``.
"""

import math

import torch
from torch.func import vmap

from fastso3 import o3
from fastso3.functional import fully_connected_tensor_product_plan, tensor_product

torch.manual_seed(0)
torch.set_default_dtype(torch.float64)

irreps1, irreps2, irreps_out = "4x0e+2x1o", "0e+1o+2e", "3x0e+2x1o+1x2e"
plan = fully_connected_tensor_product_plan(irreps1, irreps2, irreps_out)
d1, d2, dout, numel = plan.irreps_in1.dim, plan.irreps_in2.dim, plan.irreps_out.dim, plan.weight_numel
batch = 16


def left_right(w, x1, x2):
    """One sample: ``w`` (weight_numel,), ``x1`` (d1,), ``x2`` (d2,) -> (dout,)."""
    return tensor_product(plan, x1, x2, w)


def report(name, a, b, tol=1e-12):
    diff = (a - b).abs().max().item()
    print(f"{name:<28} output {tuple(a.shape)}  max |difference| = {diff:.2e}")
    assert a.shape == b.shape and diff < tol, f"{name}: mismatch {diff}"


# 1. Shared weights ---------------------------------------------------------------------------------
x1, x2 = torch.randn(batch, d1), torch.randn(batch, d2)
w = torch.randn(numel)
f = vmap(left_right, in_dims=(None, 0, 0))
module = o3.FullyConnectedTensorProduct(irreps1, irreps2, irreps_out, internal_weights=False, shared_weights=True)
report("shared weights", f(w, x1, x2), module(x1, x2, w))

# 2. Batch weights ----------------------------------------------------------------------------------
ws = torch.randn(batch, numel)
f = vmap(left_right, in_dims=(0, 0, 0))
module = o3.FullyConnectedTensorProduct(irreps1, irreps2, irreps_out, shared_weights=False)
report("batch weights", f(ws, x1, x2), module(x1, x2, ws))


# 3. Extra channel index ----------------------------------------------------------------------------
def compose(f, g):
    return lambda *x: g(f(*x))


def tp_extra_channels(f):
    f = vmap(f, (0, None, None), 0)  # channel_out
    f = vmap(f, (0, None, 0), 0)  # channel_in2
    f = vmap(f, (0, 0, None), 0)  # channel_in1
    return compose(f, lambda z: z.sum((0, 1)) / math.sqrt(z.shape[0] * z.shape[1]))


n1, n2, n_out = 3, 4, 5
g = vmap(tp_extra_channels(left_right), (None, 0, 0), 0)  # batch, weights shared by the batch
wc = torch.randn(n1, n2, n_out, numel)
xc1, xc2 = torch.randn(batch, n1, d1), torch.randn(batch, n2, d2)
z = g(wc, xc1, xc2)  # (batch, n_out, dout)

# the same with the per-sample-weights module and broadcasting: axes (batch, c1, c2, c_out)
module = o3.FullyConnectedTensorProduct(irreps1, irreps2, irreps_out, shared_weights=False)
expected = module(xc1[:, :, None, None, :], xc2[:, None, :, None, :], wc[None]).sum((1, 2)) / math.sqrt(n1 * n2)
report("extra channels (vmap x4)", z, expected)

# and with an explicit loop for two samples and two output channels
shared = o3.FullyConnectedTensorProduct(irreps1, irreps2, irreps_out, internal_weights=False, shared_weights=True)
for b in range(2):
    for o in range(2):
        acc = sum(shared(xc1[b, i], xc2[b, j], wc[i, j, o]) for i in range(n1) for j in range(n2)) / math.sqrt(n1 * n2)
        report(f"  loop, sample {b}, channel {o}", z[b, o], acc)
