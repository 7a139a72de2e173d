"""fastso3.jax against fastso3's torch front for the same weights (float64, 1e-10), including the seed's three
weight patterns under jit(vmap(...)), and Irreps.D_from_* for both fronts."""

import jax
import jax.numpy as jnp
import numpy as np
import torch

import fastso3.jax as f
from fastso3 import o3

TOL = 1e-10
IRREPS1, IRREPS2, IRREPS_OUT = "2x0e + 1o + 1e", "0e + 2x1o", "2x0e + 1o + 2x1e + 2e"


def _t(a):
    return torch.from_numpy(np.asarray(a).copy())


def _random(key, shape):
    """numpy data (eager jax ops would each compile a small program)."""
    return np.random.default_rng(key).standard_normal(shape)


def _weights(tp, key, lead=()):
    rng = np.random.default_rng(key)
    return [rng.standard_normal(lead + i.path_shape) for i in tp.instructions if i.has_weight]


def _flat(ws, lead_ndim=0):
    return np.concatenate([w.reshape(w.shape[:lead_ndim] + (-1,)) for w in ws], axis=-1)


def test_seed_weight_patterns_under_jit_vmap_match_torch():
    tp = f.FunctionalFullyConnectedTensorProduct(IRREPS1, IRREPS2, IRREPS_OUT)
    torch_tp = o3.FullyConnectedTensorProduct(IRREPS1, IRREPS2, IRREPS_OUT, shared_weights=False, internal_weights=False).double()
    d1, d2 = tp.irreps_in1.dim, tp.irreps_in2.dim
    x1 = f.IrrepsArray(IRREPS1, _random(0, (4, d1)))
    x2 = f.IrrepsArray(IRREPS2, _random(1, (4, d2)))

    # Shared weights.
    w = _weights(tp, 2)
    z = jax.jit(jax.vmap(tp.left_right, (None, 0, 0), 0))(w, x1, x2)
    ref = torch_tp(_t(x1.array), _t(x2.array), _t(_flat(w)).expand(4, -1))
    np.testing.assert_allclose(z.array, ref.numpy(), atol=TOL)

    # Batch weights.
    w = _weights(tp, 3, (4,))
    z = jax.jit(jax.vmap(tp.left_right, (0, 0, 0), 0))(w, x1, x2)
    np.testing.assert_allclose(z.array, torch_tp(_t(x1.array), _t(x2.array), _t(_flat(w, 1))).numpy(), atol=TOL)

    # Extra channel axes (the seed's tp_extra_channels; the sum is written on .array).
    n1, n2, n_out = 2, 3, 2
    g = tp.left_right
    g = jax.vmap(g, (0, None, None), 0)  # channel_out
    g = jax.vmap(g, (0, None, 0), 0)  # channel_in2
    g = jax.vmap(g, (0, 0, None), 0)  # channel_in1

    def extra(w, a, b):
        zz = g(w, a, b)
        return f.IrrepsArray(zz.irreps, jnp.sum(zz.array, (0, 1)) / np.sqrt(zz.shape[0] * zz.shape[1]))

    w = _weights(tp, 4, (n1, n2, n_out))
    y1 = f.IrrepsArray(IRREPS1, _random(5, (4, n1, d1)))
    y2 = f.IrrepsArray(IRREPS2, _random(6, (4, n2, d2)))
    z = jax.jit(jax.vmap(extra, (None, 0, 0), 0))(w, y1, y2)
    assert z.shape == (4, n_out, tp.irreps_out.dim)
    # torch: z[b, o] = sum_{a, c} tp(y1[b, a], y2[b, c], w[a, c, o]) / sqrt(n1 n2), by broadcasting.
    a = _t(y1.array)[:, :, None, None, :]
    c = _t(y2.array)[:, None, :, None, :]
    ref = torch_tp(a.expand(4, n1, n2, n_out, d1), c.expand(4, n1, n2, n_out, d2), _t(_flat(w, 3)).expand(4, n1, n2, n_out, -1))
    np.testing.assert_allclose(z.array, (ref.sum((1, 2)) / np.sqrt(n1 * n2)).numpy(), atol=TOL)


def test_products_linear_sh_match_torch():
    x1, x2 = _random(0, (3, 8)), _random(1, (3, 7))
    ours = jax.jit(f.tensor_product)(f.IrrepsArray("2x0e+2x1o", x1), f.IrrepsArray("0e+1o+1e", x2))
    torch_tp = o3.FullTensorProduct("2x0e+2x1o", "0e+1o+1e").double()
    theirs = torch_tp(_t(x1), _t(x2))
    # Inputs already regrouped: per irrep type the outputs agree (jax sorts 0e < 0o and merges, torch 0o < 0e).
    for ir in {ir for _, ir in ours.irreps}:
        parts = [theirs[..., s] for (_, i), s in zip(torch_tp.irreps_out, torch_tp.irreps_out.slices()) if i == ir]
        np.testing.assert_allclose(ours.filter(keep=[ir]).array, torch.cat(parts, -1).numpy(), atol=TOL)

    a, b = _random(3, (3, 8)), _random(4, (3, 8))
    ours = jax.jit(f.elementwise_tensor_product)(f.IrrepsArray("2x0e+2x1o", a), f.IrrepsArray("2x0o+2x1e", b))
    theirs = o3.ElementwiseTensorProduct("2x0e+2x1o", "2x0o+2x1e").double()(_t(a), _t(b))
    np.testing.assert_allclose(ours.array, theirs.numpy(), atol=TOL)

    lin = f.FunctionalLinear("3x0e+2x1o", "2x0e+1o", biases=True)
    torch_lin = o3.Linear("3x0e+2x1o", "2x0e+1o", biases=True).double()
    ws = [_random(5 + i, ins[2]) for i, ins in enumerate(lin.instructions)]
    xin = _random(9, (3, 9))
    with torch.no_grad():
        torch_lin.weight.copy_(_t(np.concatenate([w.ravel() for w, ins in zip(ws, lin.instructions) if ins[0] != -1])))
        torch_lin.bias.copy_(_t(np.concatenate([w.ravel() for w, ins in zip(ws, lin.instructions) if ins[0] == -1])))
        ref = torch_lin(_t(xin))
    np.testing.assert_allclose(jax.jit(lin)(ws, f.IrrepsArray("3x0e+2x1o", xin)).array, ref.numpy(), atol=TOL)

    v = _random(10, (5, 3))
    np.testing.assert_allclose(jax.jit(lambda v: f.spherical_harmonics("0e+1o+2e+3o", v, True, "integral"))(v).array,
                               o3.spherical_harmonics("0e+1o+2e+3o", _t(v), True).numpy(), atol=TOL)  # fmt: skip


def test_D_from_each_front():
    irreps = f.Irreps("2x0e + 1o + 0o + 2e + 1e")
    R = np.array(jax.jit(f.rand_matrix, static_argnums=(1, 2))(jax.random.PRNGKey(0), (2,), jnp.float64))
    R[1] *= -1.0  # an improper one
    R = jnp.asarray(R)
    D = jax.jit(irreps.D_from_matrix)(R)  # jit: eager jax compiles every small op separately
    assert isinstance(D, jax.Array) and D.dtype == jnp.float64
    np.testing.assert_allclose(D, irreps.D_from_matrix(_t(R)).numpy(), atol=TOL)
    a, b, c = (jnp.asarray(np.array(v)) for v in ([0.3, 2.0], [1.1, 0.2], [-0.4, 3.0]))
    np.testing.assert_allclose(jax.jit(irreps.D_from_angles)(a, b, c, jnp.asarray(np.array([0, 1]))),
                               irreps.D_from_angles(_t(a), _t(b), _t(c), torch.tensor([0, 1])).numpy(), atol=TOL)  # fmt: skip
    q = jnp.asarray(_random(1, (2, 4)))
    np.testing.assert_allclose(jax.jit(irreps.D_from_quaternion)(q), irreps.D_from_quaternion(_t(q)).numpy(), atol=1e-9)
    axis, angle = jnp.asarray(_random(2, (2, 3))), jnp.asarray(np.array([0.5, -2.0]))
    np.testing.assert_allclose(jax.jit(irreps.D_from_axis_angle)(axis, angle), irreps.D_from_axis_angle(_t(axis), _t(angle)).numpy(), atol=1e-9)
    np.testing.assert_allclose(jax.jit(f.Irrep("1o").D_from_matrix)(R[0]), R[0], atol=1e-14)  # D^1(R) = R
    assert isinstance(irreps.D_from_angles(0.1, 0.2, 0.3), torch.Tensor)  # plain numbers: torch, as before
