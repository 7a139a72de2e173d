"""fastso3.jax against e3nn-jax 0.21.0 in float64 (1e-10): SH, every tensor-product mode, Linear, gate, radial."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fastso3.jax as f

e3nn = pytest.importorskip("e3nn_jax")
from e3nn_jax import legacy  # noqa: E402

pytestmark = pytest.mark.e3nn
TOL = 1e-10


def _pair(irreps, key, lead=(5,)):
    """The same random data as an e3nn-jax and a fastso3.jax IrrepsArray."""
    data = jnp.asarray(_random(key, lead + (e3nn.Irreps(irreps).dim,)))
    return e3nn.IrrepsArray(irreps, data), f.IrrepsArray(irreps, data)


def _random(key, shape):
    """numpy data (eager jax ops, jax.random included, would each compile a small program)."""
    return np.random.default_rng(key).standard_normal(shape)


def _close(a, b):
    assert str(a.irreps) == str(b.irreps)
    np.testing.assert_allclose(np.asarray(b.array), np.asarray(a.array), rtol=0, atol=TOL)


@pytest.mark.parametrize("normalize, normalization", [(True, None), (False, "norm"), (True, "integral")])
def test_spherical_harmonics(normalization, normalize):
    x = _random(0, (6, 3))
    x[0] = 0.0  # a zero vector too
    x = jnp.asarray(x)
    irreps = "0e + 1o + 2e + 3o + 2e + 5o"
    _close(jax.jit(lambda x: e3nn.spherical_harmonics(irreps, x, normalize, normalization))(x),
           jax.jit(lambda x: f.spherical_harmonics(irreps, x, normalize, normalization))(x))  # fmt: skip
    v, w = _pair("1e", 1)
    _close(jax.jit(lambda v: e3nn.spherical_harmonics([0, 1, 3], v, normalize, normalization))(v),
           jax.jit(lambda w: f.spherical_harmonics([0, 1, 3], w, normalize, normalization))(w))  # fmt: skip


@pytest.mark.parametrize("kwargs", [{}, {"irrep_normalization": "norm", "filter_ir_out": ["0e", "1o", "2e"]},
                                    {"regroup_output": False, "irrep_normalization": "none"}])  # fmt: skip
def test_tensor_product(kwargs):
    a1, b1 = _pair("2x0e + 1o + 0o + 2e + 0e", 0)
    a2, b2 = _pair("0o + 2x1o + 1e", 1)
    ref = jax.jit(lambda x, y: e3nn.tensor_product(x, y, **kwargs))(a1, a2)
    _close(ref, jax.jit(lambda x, y: f.tensor_product(x, y, **kwargs))(b1, b2))
    assert str(f.tensor_product(b1.irreps, b2.irreps, **kwargs)) == str(e3nn.tensor_product(a1.irreps, a2.irreps, **kwargs))


@pytest.mark.parametrize("kwargs", [{}, {"irrep_normalization": "norm", "normalized_input": True, "regroup_output": False},
                                    {"irrep_normalization": "component", "normalized_input": True}])  # fmt: skip
def test_tensor_square(kwargs):
    a, b = _pair("2x0e + 1o + 3x1o + 0o + 2x2e + 1e", 2)
    _close(jax.jit(lambda x: e3nn.tensor_square(x, **kwargs))(a), jax.jit(lambda x: f.tensor_square(x, **kwargs))(b))
    c, d = _pair("0e + 2x1o", 3, lead=())  # one sample: the remaining normalisations too
    for other in (kwargs, {"irrep_normalization": "norm"}, {"irrep_normalization": "none", "normalized_input": True}):
        _close(e3nn.tensor_square(c, **other), f.tensor_square(d, **other))


def test_elementwise_tensor_product_and_seed_full_tensor_product():
    a1, b1 = _pair("2x0e + 1o + 2e", 0)
    a2, b2 = _pair("1o + 0e + 1e + 1o", 1)
    _close(jax.jit(e3nn.elementwise_tensor_product)(a1, a2), jax.jit(f.elementwise_tensor_product)(b1, b2))
    kw = dict(filter_ir_out=["1o", "1e"], irrep_normalization="norm")
    _close(jax.jit(lambda x, y: e3nn.elementwise_tensor_product(x, y, **kw))(a1, a2),
           jax.jit(lambda x, y: f.elementwise_tensor_product(x, y, **kw))(b1, b2))  # fmt: skip
    # The seed: full_tensor_product of (2, 0, 0) and (0, 2, 0).
    out = f.full_tensor_product(f.IrrepsData.from_contiguous("1o", jnp.array([2.0, 0.0, 0.0])),
                                f.IrrepsData.from_contiguous("1o", jnp.array([0.0, 2.0, 0.0])))  # fmt: skip
    assert str(out.irreps) == "1x0e+1x1e+1x2e"
    r = 2 * np.sqrt(2)
    np.testing.assert_allclose(out.contiguous, [0, 0, 0, r, 0, r, 0, 0, 0], atol=1e-14)
    assert [c.shape for c in out.list] == [(1, 1), (1, 3), (1, 5)]
    ref = e3nn.tensor_product(e3nn.IrrepsArray("1o", jnp.array([2.0, 0, 0])), e3nn.IrrepsArray("1o", jnp.array([0, 2.0, 0])))
    _close(ref, out)


MODES = [  # (irreps_in1, irreps_in2, irreps_out, instructions)
    ("2x0e+3x1o", "2x1o+0e", "4x1o+2x0e+1e",
     [(0, 0, 0, "uvw", True), (1, 1, 0, "uvw", True, 2.0), (1, 0, 1, "uvw", True), (1, 0, 2, "uvw", True)]),
    ("3x1o", "2x1o", "3x0e+3x1e", [(0, 0, 0, "uvu", True), (0, 0, 1, "uvu", False)]),
    ("2x1o", "3x1o", "3x0e+3x2e", [(0, 0, 0, "uvv", True), (0, 0, 1, "uvv", False)]),
    # one summed channel (MACE's and NequIP's uvu): the weights scale the output
    ("3x1o+2x2e", "0e+1o", "3x1o+3x1e+2x1o+2x2e",
     [(0, 1, 1, "uvu", True), (0, 0, 0, "uvu", True), (1, 1, 2, "uvu", True), (1, 0, 3, "uvu", False)]),
    ("1x2e", "3x1o", "3x1o+3x2o", [(0, 0, 0, "uvv", True), (0, 0, 1, "uvv", False)]),
    ("3x1o", "3x1o", "2x0e+1x1e", [(0, 0, 0, "uuw", True), (0, 0, 1, "uuw", False)]),
    ("3x1o", "3x2e", "3x1o+3x2o", [(0, 0, 0, "uuu", True), (0, 0, 1, "uuu", False)]),
    ("2x1o", "3x1o", "6x0e+6x2e", [(0, 0, 0, "uvuv", True), (0, 0, 1, "uvuv", False)]),
    ("3x1o", "3x1o", "3x1e+3x0e+2x1e", [(0, 0, 0, "uvu<v", True), (0, 0, 1, "uvu<v", False), (0, 0, 2, "u<vw", True)]),
]


@pytest.mark.parametrize("case", MODES, ids=[m[3][0][3] for m in MODES])
def test_functional_tensor_product_every_mode(case):
    irreps1, irreps2, irreps_out, instructions = case
    uvw = instructions[0][3] == "uvw"  # also the 'path' and 'element' alternatives of the normalisations
    kw = dict(path_normalization="path" if uvw else "element", gradient_normalization="element" if uvw else "path")
    ref = legacy.FunctionalTensorProduct(irreps1, irreps2, irreps_out, instructions, **kw)
    ours = f.FunctionalTensorProduct(irreps1, irreps2, irreps_out, instructions, **kw)
    ws = [jnp.asarray(_random(k, i.path_shape)) for k, i in enumerate(ref.instructions) if i.has_weight]
    for a, b in zip(ref.instructions, ours.instructions):
        assert (a.path_shape, a.num_elements) == (b.path_shape, b.num_elements)
        np.testing.assert_allclose(b.path_weight, a.path_weight, rtol=1e-14)
        assert (a.weight_std is None) == (b.weight_std is None)
        if a.weight_std is not None:
            np.testing.assert_allclose(b.weight_std, a.weight_std, rtol=1e-14)
    (a1, b1), (a2, b2) = _pair(irreps1, 0, ()), _pair(irreps2, 1, ())
    expected = jax.jit(ref.left_right)(ws, a1, a2)
    _close(expected, jax.jit(ours.left_right)(ws, b1, b2))
    _close(expected, jax.jit(ours.left_right)(jnp.concatenate([w.ravel() for w in ws]), b1, b2))  # flat weights
    if instructions[0][3] in ("uvw", "uuw"):  # e3nn-jax's right() lacks the u<v modes
        np.testing.assert_allclose(jax.jit(ours.right)(ws, b2), jax.jit(ref.right)(ws, a2), atol=TOL)


@pytest.mark.parametrize("case", MODES, ids=[m[3][0][3] for m in MODES])
def test_every_mode_first_and_second_derivatives(case):
    irreps1, irreps2, irreps_out, instructions = case
    ref = legacy.FunctionalTensorProduct(irreps1, irreps2, irreps_out, instructions)
    ours = f.FunctionalTensorProduct(irreps1, irreps2, irreps_out, instructions)
    ws = [jnp.asarray(_random(k, i.path_shape)) for k, i in enumerate(ref.instructions) if i.has_weight]
    x1, x2 = (jnp.asarray(_random(k, (e3nn.Irreps(ir).dim,))) for k, ir in ((2, irreps1), (3, irreps2)))

    def loss(tp, cls):
        return lambda w, a, b: jnp.sum(jnp.sin(tp.left_right(w, cls(irreps1, a), cls(irreps2, b)).array))

    grads = [jax.jit(jax.grad(loss(tp, cls), (0, 1, 2)))(ws, x1, x2) for tp, cls in ((ref, e3nn.IrrepsArray), (ours, f.IrrepsArray))]
    for a, b in zip(*map(jax.tree_util.tree_leaves, grads)):
        np.testing.assert_allclose(b, a, rtol=0, atol=TOL)
    for argnum in (0, 1, 2):  # weights and inputs (forward over reverse)
        h = [jax.jit(jax.hessian(loss(tp, cls), argnum))(ws, x1, x2) for tp, cls in ((ref, e3nn.IrrepsArray), (ours, f.IrrepsArray))]
        for a, b in zip(*map(jax.tree_util.tree_leaves, h)):
            np.testing.assert_allclose(b, a, rtol=0, atol=TOL)


def test_fully_connected_seed_and_linear():
    ref = legacy.FunctionalFullyConnectedTensorProduct("2x0e+1o+1e", "0e+1o", "3x0e+2x1o+1e+2e")
    ours = f.FunctionalFullyConnectedTensorProduct("2x0e+1o+1e", "0e+1o", "3x0e+2x1o+1e+2e")
    assert [(i.i_in1, i.i_in2, i.i_out) for i in ref.instructions] == [(i.i_in1, i.i_in2, i.i_out) for i in ours.instructions]
    ws = [jnp.asarray(_random(i, ins.path_shape)) for i, ins in enumerate(ref.instructions)]
    (a1, b1), (a2, b2) = _pair("2x0e+1o+1e", 0, ()), _pair("0e+1o", 1, ())
    _close(jax.jit(ref.left_right)(ws, a1, a2), jax.jit(ours.left_right)(ws, b1, b2))

    for biases, pn in ((True, "element"), (False, "path")):
        lin_ref = e3nn.FunctionalLinear("3x0e+2x1o+0e", "2x0e+3x1o+1e", biases=biases, path_normalization=pn)
        lin = f.FunctionalLinear("3x0e+2x1o+0e", "2x0e+3x1o+1e", biases=biases, path_normalization=pn)
        ws = [jnp.asarray(_random(i, ins.path_shape)) for i, ins in enumerate(lin_ref.instructions)]
        assert [tuple(i.path_shape) for i in lin_ref.instructions] == [i[2] for i in lin.instructions]
        a, b = _pair("3x0e+2x1o+0e", 2, ())
        _close(jax.jit(lin_ref)(ws, a), jax.jit(lin)(ws, b))
        weight_only = [w for w, i in zip(ws, lin_ref.instructions) if i.i_in != -1]
        np.testing.assert_allclose(jax.jit(lin.matrix)(ws), jax.jit(lin_ref.matrix)(weight_only), atol=TOL)


def test_gate_scalar_activation_norm():
    a, b = _pair("0o + 3x0e + 0o + 1x1o + 1x2e + 1e", 0)  # odd and even gates, extra scalars of both parities
    _close(jax.jit(e3nn.gate)(a), jax.jit(f.gate)(b))
    kw = dict(even_act=jnp.tanh, odd_gate_act=jnp.tanh, normalize_act=False)
    _close(jax.jit(lambda a: e3nn.gate(a, **kw))(a), jax.jit(lambda b: f.gate(b, **kw))(b))
    _close(jax.jit(e3nn.norm)(a), jax.jit(f.norm)(b))
    kw = dict(squared=True, per_irrep=False)
    _close(jax.jit(lambda a: e3nn.norm(a, **kw))(a), jax.jit(lambda b: f.norm(b, **kw))(b))
    with pytest.raises(ValueError, match="scalars"):
        f.gate(f.IrrepsArray("0e + 2x1o", jnp.ones(7)))


def test_soft_one_hot_linspace():
    x = jnp.linspace(-0.7, 2.3, 41, dtype=jnp.float64)
    for basis in ("gaussian", "cosine", "smooth_finite", "fourier"):
        for cutoff in (True, False):
            kw = dict(start=-0.5, end=1.5, number=5, basis=basis, cutoff=cutoff)
            np.testing.assert_allclose(f.soft_one_hot_linspace(x, **kw), e3nn.soft_one_hot_linspace(x, **kw), atol=TOL)
