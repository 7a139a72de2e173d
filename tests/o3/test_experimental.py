"""fastso3.o3.experimental (FullTensorProductv2, ElementwiseTensorProductv2) and fastso3.o3.irrep against e3nn 0.6.0."""

import pytest
import torch
from e3nn import o3 as e3nn_o3
from e3nn.o3 import irrep as e3nn_irrep

from fastso3 import o3
from fastso3.o3 import irrep
from fastso3.testing import assert_equivariant


def _e3nn_kwargs(kwargs):
    # e3nn's v2 products test `ir in filter_ir_out`, which needs an e3nn Irreps there
    return {k: e3nn_o3.Irreps(v) if k == "filter_ir_out" else v for k, v in kwargs.items()}


@pytest.mark.parametrize("irreps_in1, irreps_in2", [("0e + 1e", "2x0e + 3x1e"), ("1o+0e+2x1o", "1e+0o")])
@pytest.mark.parametrize("kwargs", [{}, dict(irrep_normalization="norm"), dict(filter_ir_out="1e+0e"), dict(regroup_output=False)])
def test_full_v2_equals_e3nn(irreps_in1, irreps_in2, kwargs, f64):
    ours = o3.experimental.FullTensorProductv2(irreps_in1, irreps_in2, **kwargs)
    theirs = e3nn_o3.experimental.FullTensorProductv2(e3nn_o3.Irreps(irreps_in1), e3nn_o3.Irreps(irreps_in2), **_e3nn_kwargs(kwargs))
    assert ours.irreps_in1 == theirs.irreps_in1 and ours.irreps_in2 == theirs.irreps_in2
    assert ours.irreps_out == theirs.irreps_out
    x, y = ours.irreps_in1.randn(4, -1), ours.irreps_in2.randn(1, -1)  # batch dimensions broadcast
    if kwargs.get("regroup_output") is False and irreps_in1 == "1o+0e+2x1o":
        with pytest.raises(IndexError):  # e3nn's path dictionary merges the two 1o entries
            theirs(x, y)
        torch.testing.assert_close(ours(x, y), o3.FullTensorProduct(irreps_in1, irreps_in2)(x, y), atol=1e-13, rtol=0)
        return
    torch.testing.assert_close(ours(x, y), theirs(x, y), atol=1e-13, rtol=0)
    assert ours.state_dict().keys() == set()
    ours.load_state_dict(theirs.state_dict())  # e3nn's cg_* buffers are constants


@pytest.mark.parametrize("irreps_in1, irreps_in2", [("15x0e", "5x0e + 5x1o + 5x1e"), ("3x1o+2x2e", "2x1e+3x0o")])
@pytest.mark.parametrize("kwargs", [{}, dict(irrep_normalization="norm"), dict(filter_ir_out="1e+0e+1o")])
def test_elementwise_v2_equals_e3nn(irreps_in1, irreps_in2, kwargs, f64):
    ours = o3.experimental.ElementwiseTensorProductv2(irreps_in1, irreps_in2, **kwargs)
    theirs = e3nn_o3.experimental.ElementwiseTensorProductv2(
        e3nn_o3.Irreps(irreps_in1), e3nn_o3.Irreps(irreps_in2), **_e3nn_kwargs(kwargs)
    )
    assert (ours.irreps_in1, ours.irreps_in2, ours.irreps_out) == (theirs.irreps_in1, theirs.irreps_in2, theirs.irreps_out)
    x, y = o3.Irreps(irreps_in1).randn(3, -1), o3.Irreps(irreps_in2).randn(3, -1)
    torch.testing.assert_close(ours(x, y), theirs(x, y), atol=1e-13, rtol=0)


def test_v2_properties_and_errors(f64):
    full = o3.experimental.FullTensorProductv2("1o + 2x0e", "1e + 1o")
    assert o3.FullTensorProductv2 is o3.experimental.FullTensorProductv2
    assert_equivariant(full)
    x, y = full.irreps_in1.randn(3, -1), full.irreps_in2.randn(3, -1)
    torch.testing.assert_close(full(x.float(), y), full(x, y))  # promoted to the common dtype, as e3nn
    elementwise = o3.experimental.ElementwiseTensorProductv2("2x0e + 1x1e", "2x0o + 1x1e")
    assert_equivariant(elementwise)
    assert elementwise.irreps_out == o3.ElementwiseTensorProduct("2x0e + 1x1e", "2x0o + 1x1e").irreps_out.sort().irreps
    with pytest.raises(ValueError, match="irrep_normalization"):
        o3.experimental.FullTensorProductv2("0e", "0e", irrep_normalization="none")
    with pytest.raises(ValueError, match="same number of irreps"):
        o3.experimental.ElementwiseTensorProductv2("2x0e", "3x0e")
    with pytest.raises(TypeError):
        o3.experimental.FullTensorProductv2("0e", "0e", None)  # keyword-only options, as e3nn


@pytest.mark.compile
def test_v2_compiles_fullgraph():
    full = o3.experimental.FullTensorProductv2("0e + 1e", "2x0e + 3x1e")
    x, y = full.irreps_in1.randn(10, -1), full.irreps_in2.randn(10, -1)
    compiled = torch.compile(full, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(x, y), o3.FullTensorProduct("0e + 1e", "2x0e + 3x1e")(x, y))


def test_irrep_names_equal_e3nn():
    from fastso3.o3.irrep import l1y

    assert irrep.l0e == o3.Irrep("0e") == e3nn_irrep.l0e and l1y == o3.Irrep("1y") == o3.Irrep("1o")
    assert irrep.l3o + irrep.l2e == o3.Irreps("3o + 2e")
    for bad in ["l", "x1o", "l1q"]:
        with pytest.raises(AttributeError, match="l<irrep>"):
            getattr(irrep, bad)
