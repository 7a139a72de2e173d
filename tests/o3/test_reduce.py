"""fastso3.o3.ReducedTensorProducts against e3nn 0.6.0 (change of basis, irreps, forward) and against its
properties (symmetries of the formula, orthogonality, equivariance, gradients)."""

import io

import pytest
import torch
from e3nn import o3 as e3nn_o3

from fastso3 import o3
from fastso3.math import FormulaError
from fastso3.testing import assert_equivariant
from fastso3.util.jit import get_compile_mode

CASES = [
    ("ij=ji", dict(i="1o")),
    ("ij=-ji", dict(i="5x0e + 1e")),
    ("ijk=-ikj=-jik", dict(i="1e")),
    ("ijkl=jikl=klij", dict(i="1o")),
    ("ij", dict(i="0e+1o", j="1e+2o")),
    ("ijk=jik", dict(i="1o", k="0e+1o")),
    ("ij=ji", dict(i="2x1o+0e", filter_ir_out=["0e", "2e"])),
    ("ijk", dict(i="1o", j="1o", k="1o", filter_ir_mid=["0e", "1o", "1e"])),
]


def _symmetries(formula):
    """(sign, permutation of the index axes) for each equality of the formula."""
    f0, *others = formula.split("=")
    return [(-1 if f.startswith("-") else 1, [f0.index(c) for c in f.lstrip("-")]) for f in others]


@pytest.mark.parametrize("formula, kwargs", CASES)
def test_equals_e3nn(formula, kwargs, f64):
    ours = o3.ReducedTensorProducts(formula, **kwargs)
    theirs = e3nn_o3.ReducedTensorProducts(formula, **kwargs)
    assert ours.irreps_out == theirs.irreps_out and ours.irreps_in == theirs.irreps_in
    Q = ours.change_of_basis
    assert Q.dtype == torch.float64 and Q.shape == theirs.change_of_basis.shape
    torch.testing.assert_close(Q, theirs.change_of_basis, atol=1e-13, rtol=0)
    xs = [irreps.randn(2, 3, -1) for irreps in ours.irreps_in]
    torch.testing.assert_close(ours(*xs), theirs(*xs), atol=1e-12, rtol=0)

    # properties: orthonormal rows (each irrep block has squared norm 2l+1), the formula's symmetries
    flat = Q.flatten(1)
    torch.testing.assert_close(flat @ flat.T, torch.eye(len(flat), dtype=torch.float64), atol=1e-12, rtol=0)
    for sign, axes in _symmetries(formula):
        torch.testing.assert_close(Q, sign * Q.permute(0, *(1 + a for a in axes)), atol=1e-13, rtol=0)


def test_equivariance_gradients_and_shapes(f64):
    tp = o3.ReducedTensorProducts("ijk=-ikj=-jik", i="2e")
    assert_equivariant(tp, irreps_in=tp.irreps_in, irreps_out=tp.irreps_out)
    elastic = o3.ReducedTensorProducts("ijkl=jikl=klij", i="1o")
    assert elastic.irreps_out.dim == 21 and all(ir.p == 1 for _, ir in elastic.irreps_out)
    assert_equivariant(elastic, irreps_in=elastic.irreps_in, irreps_out=elastic.irreps_out)
    xs = [torch.randn(2, 3, requires_grad=True) for _ in range(4)]
    torch.autograd.gradcheck(elastic, xs)
    # batch dimensions broadcast
    assert elastic(torch.randn(5, 1, 3), torch.randn(4, 3), torch.randn(3), torch.randn(1, 4, 3)).shape == (5, 4, 21)
    assert get_compile_mode(elastic) == "trace"  # as e3nn's


def test_dtypes_state_dict_and_repr():
    tp32 = o3.ReducedTensorProducts("ij=-ji", i="5x0e + 1e")
    assert tp32.change_of_basis.dtype == torch.float32
    tp64 = o3.ReducedTensorProducts("ij=-ji", i="5x0e + 1e").to(torch.float64)  # rebuilt exactly, not float32-rounded
    with torch.random.fork_rng():
        torch.set_default_dtype(torch.float64)
        try:
            exact = e3nn_o3.ReducedTensorProducts("ij=-ji", i="5x0e + 1e").change_of_basis
        finally:
            torch.set_default_dtype(torch.float32)
    torch.testing.assert_close(tp64.change_of_basis, exact, atol=1e-13, rtol=0)
    x = torch.randn(2, 8)
    with pytest.raises(TypeError, match=r"module.to\(torch.float32\)"):
        tp64(x, x)

    buffer = io.BytesIO()
    torch.save(tp32.state_dict(), buffer)
    buffer.seek(0)
    loaded = o3.ReducedTensorProducts("ij=-ji", i="5x0e + 1e")
    loaded.load_state_dict(torch.load(buffer, weights_only=True))
    assert torch.equal(loaded(x, x), tp32(x, x))
    loaded.load_state_dict(e3nn_o3.ReducedTensorProducts("ij=-ji", i="5x0e + 1e").state_dict())  # e3nn's main.* keys
    assert "in: 5x0e+1x1e times 5x0e+1x1e" in repr(tp32)


def test_errors():
    with pytest.raises(TypeError, match="unexpected keyword argument 'ij'"):
        o3.ReducedTensorProducts("ij=ji", ij="1o")
    with pytest.raises(RuntimeError, match="does not appear"):
        o3.ReducedTensorProducts("ij=ji", i="1o", k="1o")
    with pytest.raises(FormulaError, match="no irreps"):
        o3.ReducedTensorProducts("ij", i="1o")
    with pytest.raises(ValueError, match="should be the same"):
        o3.ReducedTensorProducts("ij=ji", i="1o", j="1e")
    with pytest.raises(ValueError, match="filter_ir_out"):
        o3.ReducedTensorProducts("ij=ji", i="1o", filter_ir_out=[object()])
    tp = o3.ReducedTensorProducts("ij=ji", i="1o")
    with pytest.raises(ValueError, match=r"input 1 must have shape \(\.\.\., 3\)"):
        tp(torch.randn(3), torch.randn(4))
    with pytest.raises(TypeError, match="takes 2 tensors"):
        tp(torch.randn(3))
    empty = o3.ReducedTensorProducts("ij=-ji", i="0e")  # no antisymmetric scalar pair (e3nn fails here)
    assert empty.irreps_out.dim == 0 and empty(torch.randn(4, 1), torch.randn(4, 1)).shape == (4, 0)


@pytest.mark.compile
def test_compiles_fullgraph(f64):
    tp = o3.ReducedTensorProducts("ij=-ji", i="5x0e + 1e")
    x = torch.randn(2, 4, 8)
    compiled = torch.compile(tp, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(*x), tp(*x), atol=1e-14, rtol=0)
