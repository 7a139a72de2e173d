"""io.SphericalTensor against e3nn 0.6.0 (float64) and by its properties."""

import copy
import math
import pickle

import numpy as np
import pytest
import torch

from fastso3 import o3
from fastso3.io import SphericalTensor
from fastso3.io._spherical_tensor import _peaks_1d

e3nn_io = pytest.importorskip("e3nn.io")
scipy_signal = pytest.importorskip("scipy.signal")


def _max_diff(a, b):
    return (torch.as_tensor(a) - torch.as_tensor(b)).abs().max().item()


@pytest.mark.parametrize("p_val, p_arg", [(1, 1), (1, -1), (-1, 1), (-1, -1)])
def test_irreps_equal_e3nn(p_val, p_arg):
    ours, ref = SphericalTensor(3, p_val, p_arg), e3nn_io.SphericalTensor(3, p_val, p_arg)
    assert repr(ours) == repr(ref) and ours.dim == ref.dim == 16
    assert isinstance(ours, o3.Irreps)
    for clone in (copy.deepcopy(ours), pickle.loads(pickle.dumps(ours))):
        assert type(clone) is SphericalTensor and clone == ours


def test_reading_signals_equals_e3nn(f64):
    ours, ref = SphericalTensor(4, 1, -1), e3nn_io.SphericalTensor(4, 1, -1)
    signal = ours.randn(2, 1, 3, -1)
    r = torch.randn(2, 4, 3)
    out = ours.signal_xyz(signal, r)
    assert out.shape == (2, 1, 3, 2, 4) and _max_diff(out, ref.signal_xyz(signal, r)) <= 1e-13
    assert _max_diff(ours.norms(signal), ref.norms(signal)) <= 1e-14
    grid, values = ours.signal_on_grid(signal[0, 0], res=20, normalization="component")
    ref_grid, ref_values = ref.signal_on_grid(signal[0, 0], res=20, normalization="component")
    assert _max_diff(grid, ref_grid) <= 1e-15 and _max_diff(values, ref_values) <= 1e-13
    centers = torch.randn(3, 3)
    traces = ours.plotly_surface(signal[0], centers=centers, res=12, relu=True)
    ref_traces = ref.plotly_surface(signal[0], centers=centers, res=12, relu=True)
    assert len(traces) == 3 and all(set(t) == {"x", "y", "z", "surfacecolor"} for t in traces)
    assert max(np.abs(t[k] - u[k]).max() for t, u in zip(traces, ref_traces) for k in t) <= 1e-13
    assert traces[0]["x"].shape == (12, 12)  # res_alpha = res - 1 = 11, plus one column that closes the surface


def test_building_signals_equals_e3nn(f64):
    ours, ref = SphericalTensor(4, 1, -1), e3nn_io.SphericalTensor(4, 1, -1)
    vectors = torch.tensor([[1.0, 0.0, 0.0], [3.0, 4.0, 0.0], [0.0, 0.0, 0.0]])
    peaks = ours.with_peaks_at(vectors)
    assert _max_diff(peaks, ref.with_peaks_at(vectors)) <= 1e-12
    assert _max_diff(ours.signal_xyz(peaks, vectors[:2]), vectors[:2].norm(dim=1)) <= 1e-12  # the peaks are met
    values = torch.tensor([-1.5, 2.0, 0.0])
    assert _max_diff(ours.with_peaks_at(vectors, values), ref.with_peaks_at(vectors, values)) <= 1e-12
    positions, weights = torch.randn(2, 5, 3), torch.randn(2, 5)
    assert _max_diff(ours.sum_of_diracs(positions, weights), ref.sum_of_diracs(positions, weights)) <= 1e-14
    assert ours.sum_of_diracs(torch.randn(1, 3, 2, 3), torch.randn(2, 1, 1)).shape == (2, 3, 25)
    samples = ours.from_samples_on_s2(positions, weights, res=30)
    assert _max_diff(samples, ref.from_samples_on_s2(positions, weights, res=30)) <= 1e-13
    for empty in (ours.sum_of_diracs(torch.empty(1, 0, 2, 3), torch.empty(2, 0, 1)),
                  ours.from_samples_on_s2(torch.empty(2, 0, 10, 3), torch.empty(2, 0, 10))):  # fmt: skip
        assert empty.shape[-1] == 25 and empty.numel() == 0
    assert ours.with_peaks_at(torch.empty(0, 3)).shape == (25,)


def test_find_peaks_equals_e3nn_as_a_set(f64):
    ours, ref = SphericalTensor(4, 1, -1), e3nn_io.SphericalTensor(4, 1, -1)
    signal = ours.with_peaks_at(torch.tensor([[4.0, 0.0, 4.0], [0.0, 5.0, 0.0]]))
    positions, values = ours.find_peaks(signal, res=50)
    ref_positions, ref_values = ref.find_peaks(signal, res=50)
    order, ref_order = values.argsort(), ref_values.argsort()  # e3nn's order is that of a Python set
    assert _max_diff(values[order], ref_values[ref_order]) <= 1e-12
    assert _max_diff(positions[order], ref_positions[ref_order]) <= 1e-12
    top = values > 4.0
    assert _max_diff(positions[top].abs(), torch.tensor([[0.5**0.5, 0.0, 0.5**0.5], [0.0, 1.0, 0.0]])) <= 0.06


def test_peaks_1d_is_scipys_rule():
    rng = np.random.default_rng(0)
    for x in (rng.integers(0, 4, 60).astype(float), rng.standard_normal(50), np.array([1.0, 2.0, 2.0, 2.0, 1.0, 3.0]),
              np.array([2.0, 1.0]), np.array([0.0, 1.0, 1.0, 0.0, 1.0, 1.0])):  # fmt: skip
        assert _peaks_1d(x).tolist() == scipy_signal.find_peaks(x)[0].tolist()


def test_properties(f64):
    # The parity of the irreps is that of the signal: (P f)(x) = p_val f(p_arg x).
    for p_val, p_arg in [(1, -1), (-1, 1), (-1, -1)]:
        s = SphericalTensor(3, p_val, p_arg)
        signal, r = s.randn(-1), torch.randn(5, 3)
        parity_image = s.D_from_matrix(-torch.eye(3)) @ signal
        assert _max_diff(s.signal_xyz(parity_image, r), p_val * s.signal_xyz(signal, p_arg * r)) <= 1e-13
    # Rotating the coefficients rotates the function: f'(R x) = f(x).
    s = SphericalTensor(4, 1, 1)
    signal, r, R = s.randn(-1), torch.randn(6, 3), o3.rand_matrix()
    assert _max_diff(s.signal_xyz(s.D_from_matrix(R) @ signal, r @ R.T), s.signal_xyz(signal, r)) <= 1e-12
    # A Dirac sum integrates to the weights: the l = 0 coefficient times sqrt(4 pi) / (4 pi / (lmax+1)^2).
    weights = torch.rand(7)
    diracs = s.sum_of_diracs(torch.randn(7, 3), weights)
    assert abs(diracs[0].item() * math.sqrt(4 * math.pi) * (s.lmax + 1) ** 2 / (4 * math.pi) - weights.sum().item()) <= 1e-12
    signal = s.randn(-1, requires_grad=True)
    torch.autograd.gradcheck(lambda x: s.signal_xyz(x, r), (signal,))


def test_float32_follows_the_inputs():
    s = SphericalTensor(2, 1, 1)
    grid, values = s.signal_on_grid(s.randn(-1, dtype=torch.float64), res=10)
    assert grid.dtype == values.dtype == torch.float64
    assert s.from_samples_on_s2(torch.randn(4, 3), torch.randn(4), res=10).dtype == torch.float32


def test_errors():
    with pytest.raises(ValueError, match="p_val"):
        SphericalTensor(2, 0, 1)
    with pytest.raises(ValueError, match="lmax"):
        SphericalTensor(-1, 1, 1)
    s = SphericalTensor(2, 1, 1)
    with pytest.raises(ValueError, match=r"\(\.\.\., 9\)"):
        s.norms(torch.randn(3, 4))
    with pytest.raises(ValueError, match="p_val must be \\+1"):
        SphericalTensor(2, -1, 1).with_peaks_at(torch.randn(2, 3))
    with pytest.raises(ValueError, match="cannot all be met"):
        SphericalTensor(1, 1, 1).with_peaks_at(torch.randn(30, 3))
    with pytest.raises(ValueError, match="one signal"):
        s.plot(torch.randn(2, 9))
    with pytest.raises(TypeError, match="signal"):
        s.signal_xyz([1.0] * 9, torch.randn(3))
