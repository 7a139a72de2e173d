"""backend='cpu' (the compiled CPU kernels behind jax.ffi) against the XLA path and e3nn-jax: values in float32
and float64, jit, vmap, grad, jvp and second derivatives; explicit backend selection."""

import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fastso3.jax as f
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
            "assert y.shape == (2, 9) and 'torch' not in sys.modules, sorted(m for m in sys.modules if 'torch' in m)")  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(Path(f.__file__).parents[2])}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=300)
