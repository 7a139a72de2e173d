"""backend='cpu' (the compiled CPU kernels behind jax.ffi) against the XLA path and e3nn-jax: values in float32
and float64, jit, vmap, grad, jvp and second derivatives; explicit backend selection; the shim's checks. For
spherical harmonics and the channel-wise (uvu) FunctionalTensorProduct."""

import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fastso3.jax as f
from fastso3.core.tensor_product_builders import channelwise_tensor_product_spec
from fastso3.jax import _ffi
from fastso3.kernels.cpu.loader import library_status

e3nn = pytest.importorskip("e3nn_jax")
pytestmark = pytest.mark.skipif(not library_status()[0], reason="the CPU kernels cannot be built here")

IRREPS = "0e + 1o + 2e + 3o + 4e"


def _points(shape, dtype):
    x = np.random.default_rng(0).standard_normal(shape).astype(dtype)
    x[0] = 0.0  # a zero vector: Y^0 = 1, Y^{l>0} = 0
    return jnp.asarray(x)


def _tol(dtype):
    return {"rtol": 1e-5, "atol": 1e-5} if dtype == np.float32 else {"rtol": 1e-12, "atol": 1e-12}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("normalization", ["component", "norm", "integral"])
def test_values_equal_xla_and_e3nn_jax(dtype, normalize, normalization):
    x = _points((7, 3), dtype)
    y = jax.jit(lambda v: f.spherical_harmonics(IRREPS, v, normalize, normalization, backend="cpu").array)(x)
    assert y.dtype == dtype
    np.testing.assert_allclose(y, f.spherical_harmonics(IRREPS, x, normalize, normalization).array, **_tol(dtype))
    np.testing.assert_allclose(y, e3nn.spherical_harmonics(IRREPS, x, normalize, normalization).array, **_tol(dtype))


def test_selected_and_repeated_degrees():
    x = _points((4, 2, 3), np.float64)
    for irreps in ("0e", "2e + 2x1o", "3o", "1o + 0e"):
        a = f.spherical_harmonics(irreps, x, True, backend="cpu")
        assert a.irreps == f.spherical_harmonics(irreps, x, True).irreps
        np.testing.assert_allclose(a.array, f.spherical_harmonics(irreps, x, True).array, **_tol(np.float64))


def _loss(backend, irreps="0e + 1o + 2e + 3o"):
    return lambda v: jnp.sum(jnp.sin(f.spherical_harmonics(irreps, v, True, backend=backend).array))


def test_grad_float32_equals_xla():
    x = _points((5, 3), np.float32)[1:]  # away from 0, where the XLA path's x / |x| is not differentiable
    np.testing.assert_allclose(jax.jit(jax.grad(_loss("cpu", IRREPS)))(x), jax.jit(jax.grad(_loss("xla", IRREPS)))(x),
                               **_tol(np.float32))  # fmt: skip


def test_second_derivatives_equal_xla():
    x, tol = _points((4, 3), np.float64)[1:], _tol(np.float64)
    np.testing.assert_allclose(jax.hessian(_loss("cpu"))(x[0]), jax.jit(jax.hessian(_loss("xla")))(x[0]), **tol)

    def grad_norm(backend):  # reverse over reverse, as for a loss on forces
        return lambda v: jnp.sum(jax.grad(_loss(backend))(v) ** 2)

    np.testing.assert_allclose(jax.jit(jax.grad(grad_norm("cpu")))(x), jax.jit(jax.grad(grad_norm("xla")))(x),
                               rtol=100 * tol["rtol"], atol=100 * tol["atol"])  # fmt: skip
    for normalize in (True, False):
        run = lambda backend: jax.jvp(lambda v: f.sh("1o + 3o", v, normalize, backend=backend), (x,), (x[::-1],))[1]
        np.testing.assert_allclose(run("cpu"), run("xla"), **tol)


def test_vmap_and_zero_vector():
    x = _points((6, 3), np.float64)
    batched = jax.jit(jax.vmap(lambda v: f.sh(IRREPS, v, True, backend="cpu"), in_axes=1, out_axes=1))
    stacked = jnp.stack([x, 2 * x], axis=1)
    np.testing.assert_allclose(batched(stacked)[:, 1], f.sh(IRREPS, x, True), **_tol(np.float64))
    def grad(backend):
        return jax.jit(jax.vmap(jax.grad(lambda v: jnp.sum(f.sh("1o + 2e", v, True, backend=backend) ** 3))))

    g = grad("cpu")(x)
    np.testing.assert_array_equal(g[0], 0.0)  # the kernel holds u = x / |x| at 0 for x = 0
    np.testing.assert_allclose(g[1:], grad("xla")(x[1:]), **_tol(np.float64))


def test_backend_is_explicit():
    x = _points((2, 3), np.float64)
    with pytest.raises(ValueError, match="backend must be one of"):
        f.spherical_harmonics(IRREPS, x, True, backend="triton")
    with pytest.raises(TypeError, match="float32 or float64"):
        f.spherical_harmonics(IRREPS, x.astype(jnp.float16), True, backend="cpu")
    jaxpr = str(jax.make_jaxpr(lambda v: f.sh(IRREPS, v, True, backend="cpu"))(x))
    assert "fastso3_sh" in jaxpr and "fastso3_sh" not in str(jax.make_jaxpr(lambda v: f.sh(IRREPS, v, True))(x))


def test_cpu_backend_does_not_import_torch():
    code = ("import sys, jax.numpy as jnp, fastso3.jax as f; "
            "y = f.sh('0e + 1o + 2e', jnp.ones((2, 3)), True, backend='cpu'); "
            "tp = f.FunctionalTensorProduct('2x0e + 2x1o', '0e + 1o', '2x0e + 2x1o', [(0, 0, 0, 'uvu', True), "
            "(1, 1, 0, 'uvu', True), (1, 0, 1, 'uvu', True)], backend='cpu'); "
            "z = tp.left_right(jnp.ones(tp.plan.weight_numel), jnp.ones((2, 8)), jnp.ones((2, 4))); "
            "assert y.shape == (2, 9) and z.shape == (2, 8), (y.shape, z.shape); "
            "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if 'torch' in m)")  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(Path(f.__file__).parents[2])}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=300)


# --------------------------------------------------------------------------- channel-wise (uvu) products

CW_SPEC = channelwise_tensor_product_spec("3x0e + 3x1o + 3x2e", "0e + 1o + 2e")  # 3 channels: odd tails
CW_ARGS = [CW_SPEC[k] for k in ("irreps_in1", "irreps_in2", "irreps_out", "instructions")]


def _cw(backend, **kw):
    return f.FunctionalTensorProduct(*CW_ARGS, backend=backend, **kw)


def _cw_inputs(dtype, lead=(5,)):
    rng = np.random.default_rng(1)
    tp = _cw("xla")
    shapes = [(tp.plan.weight_numel,), (*lead, tp.irreps_in1.dim), (*lead, tp.irreps_in2.dim)]
    return [jnp.asarray(rng.standard_normal(s).astype(dtype)) for s in shapes]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("gradient_normalization", ["path", "element"])
def test_channelwise_values_equal_xla_and_e3nn_jax(dtype, gradient_normalization):
    w, x1, x2 = _cw_inputs(dtype, lead=(2, 3))
    cpu, xla = (_cw(b, gradient_normalization=gradient_normalization) for b in ("cpu", "xla"))
    out = jax.jit(lambda *a: cpu.left_right(*a).array)(w, x1, x2[0])  # x2 broadcast over the first axis
    assert out.dtype == dtype and out.shape == (2, 3, cpu.irreps_out.dim)
    np.testing.assert_allclose(out, xla.left_right(w, x1, x2[0]).array, **_tol(dtype))
    from e3nn_jax import legacy

    ref = legacy.FunctionalTensorProduct(*(str(i) for i in CW_ARGS[:3]), CW_ARGS[3],
                                         gradient_normalization=gradient_normalization)  # fmt: skip

    def per_sample(a, b):
        return ref.left_right(w, e3nn.IrrepsArray(ref.irreps_in1, a), e3nn.IrrepsArray(ref.irreps_in2, b))

    expected = jax.vmap(jax.vmap(per_sample))(x1, jnp.broadcast_to(x2[0], x2.shape)).array  # e3nn-jax: one sample
    np.testing.assert_allclose(out, expected, **_tol(dtype))


def _cw_loss(tp):
    return lambda w, x1, x2: jnp.sum(jnp.sin(tp.left_right(w, x1, x2).array))


def test_channelwise_grad_float32_equals_xla():
    args = _cw_inputs(np.float32)
    grads = [jax.jit(jax.grad(_cw_loss(_cw(b)), argnums=(0, 1, 2)))(*args) for b in ("cpu", "xla")]
    for a, b in zip(*grads):
        np.testing.assert_allclose(a, b, **_tol(np.float32))


def test_channelwise_second_derivatives_equal_xla():
    args, tol = _cw_inputs(np.float64), _tol(np.float64)

    def grad_norm(backend):  # reverse over reverse in every argument, as for a loss on forces
        return lambda *a: sum(jnp.sum(g**2) for g in jax.grad(_cw_loss(_cw(backend)), argnums=(0, 1, 2))(*a))

    grads = [jax.jit(jax.grad(grad_norm(b), argnums=(0, 1, 2)))(*args) for b in ("cpu", "xla")]
    for a, b in zip(*grads):
        np.testing.assert_allclose(a, b, rtol=100 * tol["rtol"], atol=100 * tol["atol"])
    tangents = [a[::-1] for a in args]
    run = lambda b: jax.jvp(lambda *a: _cw(b).left_right(*a).array, args, tangents)[1]  # noqa: E731
    np.testing.assert_allclose(run("cpu"), run("xla"), **tol)


def test_channelwise_vmap_per_sample_weights():
    w, x1, x2 = _cw_inputs(np.float64, lead=(4,))
    ws = jnp.stack([w * (i + 1) for i in range(4)])  # one weight vector per sample
    def run(backend):
        tp = _cw(backend)
        return jax.jit(jax.vmap(lambda *a: tp.left_right(*a).array, in_axes=(0, 0, None), out_axes=1))(ws, x1, x2[0])

    np.testing.assert_allclose(run("cpu"), run("xla"), **_tol(np.float64))
    g = [jax.jit(jax.vmap(jax.grad(_cw_loss(_cw(b)))))(ws, x1, x2) for b in ("cpu", "xla")]
    np.testing.assert_allclose(g[0], g[1], **_tol(np.float64))


def test_channelwise_backend_is_explicit():
    w, x1, x2 = _cw_inputs(np.float64)
    with pytest.raises(ValueError, match="backend must be one of"):
        _cw("triton")
    with pytest.raises(ValueError, match="not a channel-wise plan"):
        f.FunctionalTensorProduct("2x0e", "2x0e", "2x0e", [(0, 0, 0, "uvw", True)], backend="cpu")
    with pytest.raises(TypeError, match="float32 or float64"):
        _cw("cpu").left_right(w.astype(jnp.float16), x1.astype(jnp.float16), x2.astype(jnp.float16))
    with pytest.raises(ValueError, match="channel-wise contraction into slot 0"):
        _ffi.channelwise_cpu(_cw("cpu")._cw_table, x1, x2[:, :3], jnp.broadcast_to(w, (len(x1), len(w))))
    assert "fastso3_channelwise" in str(jax.make_jaxpr(_cw("cpu").left_right)(w, x1, x2))
    assert "fastso3_channelwise" not in str(jax.make_jaxpr(_cw("xla").left_right)(w, x1, x2))


def _corrupt(name, edit):
    """A copy of the test plan's table under ``name`` with ``edit(slots, layouts)`` applied."""
    slots, coef, layouts = _ffi._CW_TABLES[_ffi.register_channelwise(_cw("xla").plan)]
    slots, layouts = [s.copy() for s in slots], [list(lay) for lay in layouts]
    edit(slots, layouts)
    _ffi._CW_TABLES[name] = (tuple(slots), coef, tuple(tuple(lay) for lay in layouts))
    return name


def test_channelwise_shim_checks_what_it_reads():
    w, x1, x2 = _cw_inputs(np.float64)
    w = jnp.broadcast_to(w, (x1.shape[0], w.shape[0]))

    def out_of_range(slots, layouts):
        slots[1][0] = len(layouts[1][0])  # an x row past the last

    def gap(slots, layouts):
        layouts[0][0] = layouts[0][0].copy()
        layouts[0][0][0] = layouts[0][0][1]  # two output rows on one position, one position never written

    for edit, message in ((out_of_range, "out of range"), (gap, "cover its buffer exactly once")):
        name = _corrupt(f"test-{edit.__name__}", edit)
        with pytest.raises(jax.errors.JaxRuntimeError, match=message):
            jax.block_until_ready(_ffi.channelwise_cpu(name, x1, x2, w))
        del _ffi._CW_TABLES[name]
