"""nn.S2Activation and nn.SO3Activation against e3nn 0.6.0 (float64) and by their properties."""

import pytest
import torch

from fastso3 import nn as fnn
from fastso3 import o3
from fastso3.io import SphericalTensor
from fastso3.testing import assert_equivariant

e3nn_nn = pytest.importorskip("e3nn.nn")
e3nn_io = pytest.importorskip("e3nn.io")


def square(x):
    return x**2


def _max_diff(a, b):
    return (a - b).abs().max().item()


@pytest.mark.parametrize("p_val, p_arg, act", [(1, -1, torch.tanh), (-1, 1, torch.tanh), (-1, -1, square), (1, 1, square)])
@pytest.mark.parametrize("normalization", ["component", "norm"])
def test_s2_activation_equals_e3nn(f64, p_val, p_arg, act, normalization):
    ours = fnn.S2Activation(SphericalTensor(3, p_val, p_arg), act, 20, normalization=normalization, lmax_out=5)
    ref = e3nn_nn.S2Activation(e3nn_io.SphericalTensor(3, p_val, p_arg), act, 20, normalization=normalization, lmax_out=5)
    assert ours.irreps_in == ref.irreps_in and ours.irreps_out == ref.irreps_out and repr(ours) == repr(ref)
    assert list(ours.state_dict()) == list(ref.state_dict())
    ours.load_state_dict(ref.state_dict())  # e3nn's buffers load as they are
    x = ours.irreps_in.randn(4, -1)
    assert _max_diff(ours(x), ref(x)) <= 1e-12
    assert ours.act.cst == ref.act.cst


def test_s2_activation_random_rotation_equals_e3nn(f64):
    ours = fnn.S2Activation("0e + 1o + 2e", torch.tanh, (12, 13), random_rot=True)
    ref = e3nn_nn.S2Activation("0e + 1o + 2e", torch.tanh, (12, 13), random_rot=True)
    x = ours.irreps_in.randn(3, -1)
    torch.manual_seed(1)
    y = ours(x)
    torch.manual_seed(1)  # the same random grid rotation: rand_angles draws e3nn's stream
    assert _max_diff(y, ref(x)) <= 1e-12


@pytest.mark.parametrize("p_val, p_arg, act", [(1, -1, torch.tanh), (-1, 1, torch.tanh), (-1, -1, square)])
def test_s2_activation_is_equivariant(f64, p_val, p_arg, act):
    # Aliasing of the nonlinearity on a finite grid breaks equivariance slightly: 1e-6 on a 120 x 119 grid.
    module = fnn.S2Activation(SphericalTensor(3, p_val, p_arg), act, 120, lmax_out=5)
    assert_equivariant(module, tolerance=1e-6)


def test_s2_activation_float32_gradients_and_errors():
    module = fnn.S2Activation("0e + 1e", torch.tanh, 8)
    x = module.irreps_in.randn(2, 3, -1)
    assert module(x).shape == (2, 3, 4) and module(x).dtype == torch.float32
    module64 = fnn.S2Activation("0e + 1e", torch.tanh, 8).to(torch.float64)
    torch.autograd.gradcheck(module64, (x.double().requires_grad_(),))
    with pytest.raises(ValueError, match="one copy of each degree"):
        fnn.S2Activation("2x0e + 1o", torch.tanh, 8)
    with pytest.raises(ValueError, match="one copy of each degree"):
        fnn.S2Activation("0e + 2e", torch.tanh, 8)
    with pytest.raises(ValueError, match="not well defined"):
        fnn.S2Activation("0e + 1o + 2o", torch.tanh, 8)
    with pytest.raises(ValueError, match="parity is violated"):
        fnn.S2Activation("0o + 1o", torch.sigmoid, 8)
    with pytest.raises(ValueError, match=r"\(\.\.\., 4\)"):
        module(torch.randn(3, 5))


def so3_irreps(lmax):
    return o3.Irreps([(2 * l + 1, (l, 1)) for l in range(lmax + 1)])


@pytest.mark.parametrize("act", [torch.tanh, square])
def test_so3_activation_equals_e3nn(f64, act):
    ours, ref = fnn.SO3Activation(2, 3, act, 4), e3nn_nn.SO3Activation(2, 3, act, 4)
    assert list(ours.state_dict()) == list(ref.state_dict()) and repr(ours) == repr(ref)
    for key, value in ref.state_dict().items():
        assert _max_diff(ours.state_dict()[key], value) <= 1e-13
    x = so3_irreps(2).randn(3, -1)
    assert _max_diff(ours(x), ref(x)) <= 1e-12
    assert ours.irreps_in == so3_irreps(2) and ours.irreps_out == so3_irreps(3)


def test_so3_activation_identity_and_equivariance(f64):
    # The identity activation reproduces the band-limited input exactly, times e3nn's Monte-Carlo normalize2mom
    # constant (0.99889 for f(x) = x, not within the 1e-4 at which normalize2mom becomes the identity).
    identity = fnn.SO3Activation(3, 3, lambda x: x, 4, aspect_ratio=1)
    x = so3_irreps(3).randn(2, -1)
    assert abs(identity.act.cst - 1) < 2e-3
    assert _max_diff(identity(x), identity.act.cst * x) <= 1e-12
    # e3nn's own test: tolerance 0.04 at resolution 6 (aliasing of the nonlinearity); here resolution 8.
    assert_equivariant(fnn.SO3Activation(2, 2, torch.tanh, 8), tolerance=0.04)


@pytest.mark.compile
@pytest.mark.slow
def test_compile_fullgraph_activations():
    torch._dynamo.reset()
    for module in (fnn.S2Activation("0e + 1o + 2e", torch.tanh, 8), fnn.SO3Activation(1, 1, torch.tanh, 3)):
        x = module.irreps_in.randn(4, -1)
        compiled = torch.compile(module, fullgraph=True)
        torch.testing.assert_close(compiled(x), module(x), atol=1e-5, rtol=1e-5)
