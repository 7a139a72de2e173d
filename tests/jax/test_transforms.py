"""fastso3.jax under grad (first and second order), float32/float64, equivariance, zero-chunk skipping, and the
IrrepsArray container itself."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fastso3.jax as f

e3nn = pytest.importorskip("e3nn_jax")
legacy = pytest.importorskip("e3nn_jax.legacy")


def _random(key, shape, dtype=np.float64):
    return jnp.asarray(np.random.default_rng(key).standard_normal(shape).astype(dtype))


IRREPS1, IRREPS2, IRREPS_OUT = "2x0e + 1o + 1e", "0e + 1o", "0e + 0o + 2x1o + 1e + 2e"


def _fctp():
    tp = f.FunctionalFullyConnectedTensorProduct(IRREPS1, IRREPS2, IRREPS_OUT)
    ref = legacy.FunctionalFullyConnectedTensorProduct(IRREPS1, IRREPS2, IRREPS_OUT)
    ws = [_random(i, ins.path_shape) for i, ins in enumerate(tp.instructions)]
    return tp, ref, ws


def test_grad_and_second_derivatives_match_e3nn_jax():
    tp, ref, ws = _fctp()
    x1, x2 = _random(10, (8,)), _random(11, (4,))

    def loss(impl, cls):
        return lambda w, a, b: jnp.sum(jnp.sin(impl.left_right(w, cls(IRREPS1, a), cls(IRREPS2, b)).array))

    for argnums in ((0, 1, 2),):
        g_ours = jax.jit(jax.grad(loss(tp, f.IrrepsArray), argnums))(ws, x1, x2)
        g_ref = jax.jit(jax.grad(loss(ref, e3nn.IrrepsArray), argnums))(ws, x1, x2)
        for a, b in zip(jax.tree_util.tree_leaves(g_ours), jax.tree_util.tree_leaves(g_ref)):
            np.testing.assert_allclose(a, b, atol=1e-10)
    h_ours = jax.jit(jax.hessian(loss(tp, f.IrrepsArray), 1))(ws, x1, x2)
    h_ref = jax.jit(jax.hessian(loss(ref, e3nn.IrrepsArray), 1))(ws, x1, x2)
    np.testing.assert_allclose(h_ours, h_ref, atol=1e-10)

    def sh_loss(mod):
        return lambda v: jnp.sum(jnp.cos(mod.spherical_harmonics("0e + 1o + 2e + 4e", v, True).array))

    v = _random(12, (3,))
    np.testing.assert_allclose(jax.jit(jax.hessian(sh_loss(f)))(v), jax.jit(jax.hessian(sh_loss(e3nn)))(v), atol=1e-10)


def test_float32_follows_float64():
    tp, _, ws = _fctp()
    x1, x2 = _random(1, (3, 8)), _random(2, (3, 4))
    run = jax.jit(jax.vmap(tp.left_right, (None, 0, 0)))
    z64 = run(ws, f.IrrepsArray(IRREPS1, x1), f.IrrepsArray(IRREPS2, x2))
    z32 = run([w.astype(jnp.float32) for w in ws], f.IrrepsArray(IRREPS1, x1.astype(jnp.float32)),
              f.IrrepsArray(IRREPS2, x2.astype(jnp.float32)))  # fmt: skip
    assert z64.dtype == jnp.float64 and z32.dtype == jnp.float32
    np.testing.assert_allclose(z32.array, z64.array, rtol=0, atol=1e-5 * float(jnp.abs(z64.array).max()))
    y = jax.jit(lambda v: f.spherical_harmonics("0e+1o+2e", v, True))(x2[:, :3].astype(jnp.float32))
    assert y.dtype == jnp.float32


def test_equivariance_rotation_and_inversion():
    tp, _, ws = _fctp()
    gate_irreps = "3x0e + 0o + 1o + 1e"
    gate_out, sh_irreps = "2x0e + 1o + 1o", "0e + 1o + 2e + 3o"  # gate output: a 0o gate turns 1e into 1o

    @jax.jit
    def matrices(key):
        R = -f.rand_matrix(key, (), jnp.float64)  # a rotation times the inversion
        return [f.Irreps(i).D_from_matrix(R) for i in (IRREPS1, IRREPS2, IRREPS_OUT, gate_irreps, gate_out, sh_irreps)]

    D1, D2, Do, Dgi, Dg, Dy = matrices(jax.random.PRNGKey(0))
    x1, x2, xg = _random(3, (5, 8)), _random(4, (5, 4)), _random(5, (5, 10))

    @jax.jit
    def both(a, b, c):
        z = jax.vmap(tp.left_right, (None, 0, 0))(ws, f.IrrepsArray(IRREPS1, a), f.IrrepsArray(IRREPS2, b)).array
        g = f.gate(f.IrrepsArray(gate_irreps, c)).array
        y = f.spherical_harmonics(sh_irreps, b[:, 1:], True).array
        return z, g, y

    z, g, y = both(x1, x2, xg)
    zr, gr, yr = both(x1 @ D1.T, x2 @ D2.T, xg @ Dgi.T)
    np.testing.assert_allclose(zr, z @ Do.T, atol=1e-10)
    np.testing.assert_allclose(gr, g @ Dg.T, atol=1e-10)
    np.testing.assert_allclose(yr, y @ Dy.T, atol=1e-10)


def test_zero_chunks_skip_their_paths():
    tp, _, ws = _fctp()

    def count(fn, *args):
        eqns = jax.make_jaxpr(fn)(*args).jaxpr.eqns
        return sum(e.primitive.name == "dot_general" for e in eqns), len(eqns)

    a, b = jnp.ones(2), jnp.ones(3)  # the 2x0e and 1e chunks; 1o is known zero
    x2 = jnp.ones(4)

    def with_zero(a, b, x2):
        x1 = f.from_chunks(IRREPS1, [a[:, None], None, b[None, :]], ())
        return tp.left_right(ws, x1, f.IrrepsArray(IRREPS2, x2)).array

    def dense(a, b, x2):
        x1 = f.from_chunks(IRREPS1, [a[:, None], jnp.zeros((1, 3)), b[None, :]], ())
        return tp.left_right(ws, x1, f.IrrepsArray(IRREPS2, x2)).array

    (dots0, n0), (dots1, n1) = count(with_zero, a, b, x2), count(dense, a, b, x2)
    assert dots0 < dots1 and n0 < n1
    np.testing.assert_allclose(with_zero(a, b, x2), dense(a, b, x2), atol=1e-14)
    # The 1o x 0e -> 1o path would be the only one reaching the 1o outputs... with 0e x 1o too; a fully zero
    # input gives zero chunks everywhere and no contraction at all.
    out = jax.make_jaxpr(lambda x2: tp.left_right(ws, f.zeros(IRREPS1), f.IrrepsArray(IRREPS2, x2)).array)(x2)
    assert not any(e.primitive.name == "dot_general" for e in out.jaxpr.eqns)
    z = tp.left_right(ws, f.zeros(IRREPS1), f.IrrepsArray(IRREPS2, x2))
    assert all(c is None for c in z.chunks)


def test_irreps_array_container():
    x = f.from_chunks("1o + 2x0e + 2e", [None, jnp.ones((2, 1)), jnp.arange(5.0)[None]], ())
    np.testing.assert_array_equal(x.array, [0, 0, 0, 1, 1, 0, 1, 2, 3, 4])
    assert x.zero_flags == (True, False, False) and x.chunks[0] is None
    assert [c.shape for c in x.chunks[1:]] == [(2, 1), (1, 5)]
    np.testing.assert_array_equal(x[..., "2x0e + 2e"].array, x.array[3:])
    np.testing.assert_array_equal(x[..., 3:5].array, [1, 1])
    assert str(x.filter(keep="2e").irreps) == "1x2e" and str(x.filter(lmax=1).irreps) == "1x1o+2x0e"
    assert str(x.sort().irreps) == "2x0e+1x1o+1x2e" and x.sort().chunks[1] is None
    y = f.concatenate([x, f.IrrepsArray("0o", jnp.array([7.0]))])
    assert str(y.irreps) == "1x1o+2x0e+1x2e+1x0o" and y.chunks[0] is None
    np.testing.assert_array_equal((2 * x - x).array, x.array)
    np.testing.assert_array_equal((x * jnp.array([1.0, 2.0, 3.0, 4.0])).array[3:], [2, 3, 0, 4, 8, 12, 16])
    s = f.IrrepsArray("2x0e", jnp.array([1.0, 2.0]))
    np.testing.assert_array_equal((s + 1).array, [2, 3])
    batch = f.IrrepsArray("0e + 1o", jnp.ones((3, 4)))
    assert batch[0].shape == (4,) and batch[1:].shape == (2, 4)
    out = jax.jit(lambda a: a * 2.0)(batch)  # a pytree: the irreps ride along as static data
    assert isinstance(out, f.IrrepsArray) and str(out.irreps) == "1x0e+1x1o"
    with pytest.raises(ValueError, match="differ"):
        x + f.IrrepsArray("1o + 2x0e + 2o", jnp.zeros(10))
    with pytest.raises(ValueError, match="does not match"):
        f.IrrepsArray("1o", jnp.zeros(4))
    with pytest.raises(IndexError, match="boundaries"):
        x[..., 1:4]
    with pytest.raises(ValueError, match="weights"):
        _fctp()[0].left_right([jnp.ones(3)], jnp.ones(8), jnp.ones(4))


def test_linear_layer_init_apply():
    x = f.IrrepsArray("2x0e + 1o + 0e", jnp.asarray(np.arange(6.0)))
    layer = f.Linear("3x0e + 2x1o + 2e", biases=True)
    params = layer.init(jax.random.PRNGKey(0), x)
    names = ["w[0,0] 3x0e,3x0e", "w[1,1] 1x1o,2x1o", "b[0] 3x0e"]  # e3nn-jax's flax parameter names
    assert sorted(params["params"]) == sorted(names)
    out = jax.jit(layer.apply)(params, x)
    assert str(out.irreps) == "3x0e+2x1o"  # the input is regrouped; 2e is unreachable from it and dropped
    ref = jax.jit(e3nn.FunctionalLinear("3x0e + 1o", "3x0e + 2x1o", biases=True))(
        [params["params"][n] for n in names], e3nn.IrrepsArray("3x0e + 1o", x.array[jnp.array([0, 1, 5, 2, 3, 4])]))
    np.testing.assert_allclose(out.array, ref.array, atol=1e-12)
    with pytest.raises(ValueError, match="params lack"):
        layer.apply({"params": {}}, x)
