"""fastso3.io.CartesianTensor against e3nn 0.6.0 (irreps, conversions, mace-torch's stress change of basis)
and against its properties (round trip on symmetric tensors, rotation of the Cartesian tensor)."""

import pickle

import pytest
import torch
from e3nn import io as e3nn_io

from fastso3 import io, o3


@pytest.mark.parametrize("formula", ["ij=ji", "ij=-ji", "ijk=-jik=-ikj", "ij"])
def test_equals_e3nn(formula, f64):
    ours, theirs = io.CartesianTensor(formula), e3nn_io.CartesianTensor(formula)
    assert ours == theirs and isinstance(ours, o3.Irreps)
    assert ours.formula == theirs.formula and ours.indices == theirs.indices
    n = len(ours.indices)
    t = torch.randn(4, *([3] * n))
    torch.testing.assert_close(ours.from_cartesian(t), theirs.from_cartesian(t), atol=1e-13, rtol=0)
    y = torch.randn(4, ours.dim)
    torch.testing.assert_close(ours.to_cartesian(y), theirs.to_cartesian(y), atol=1e-13, rtol=0)
    vectors = torch.randn(n, 2, 3)
    torch.testing.assert_close(ours.from_vectors(*vectors), theirs.from_vectors(*vectors), atol=1e-13, rtol=0)


def test_mace_stress_change_of_basis_equals_e3nn(f64):
    # mace-torch tools/torch_tools.py: CartesianTensor("ij=ji").reduced_tensor_products().change_of_basis
    ours = io.CartesianTensor("ij=ji").reduced_tensor_products().change_of_basis
    theirs = e3nn_io.CartesianTensor("ij=ji").reduced_tensor_products().change_of_basis
    assert ours.shape == (6, 3, 3)
    torch.testing.assert_close(ours, theirs, atol=1e-15, rtol=0)


def test_round_trip_and_rotation(f64):
    symmetric = io.CartesianTensor("ij=ji")
    t = torch.randn(5, 3, 3)
    sym = (t + t.transpose(-1, -2)) / 2
    torch.testing.assert_close(symmetric.to_cartesian(symmetric.from_cartesian(t)), sym, atol=1e-13, rtol=0)
    # rotating the Cartesian tensor is applying D(R) to its irreps
    R = o3.rand_matrix()
    D = symmetric.D_from_matrix(R)
    rotated = torch.einsum("ia,jb,zab->zij", R, R, sym)
    torch.testing.assert_close(symmetric.from_cartesian(rotated), symmetric.from_cartesian(sym) @ D.T, atol=1e-12, rtol=0)
    assert io.CartesianTensor("ijk=-jik=-ikj").from_cartesian(torch.ones(3, 3, 3)).abs().max() < 1e-15


def test_dtypes_pickling_and_errors():
    ct = io.CartesianTensor("ij=ji")
    t = torch.randn(2, 3, 3, dtype=torch.float64)
    assert ct.from_cartesian(t).dtype == torch.float64 and ct.from_cartesian(t.float()).dtype == torch.float32
    clone = pickle.loads(pickle.dumps(ct))
    assert clone == ct and clone.formula == "ij=ji"
    with pytest.raises(ValueError, match=r"\(\.\.\., 3, 3\)"):
        ct.from_cartesian(torch.randn(2, 3, 4))
    with pytest.raises(ValueError, match=r"\(\.\.\., 6\)"):
        ct.to_cartesian(torch.randn(2, 5))
    with pytest.raises(TypeError, match="formula"):
        io.CartesianTensor(3)
