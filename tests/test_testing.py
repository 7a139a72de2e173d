"""Tests of fastso3.testing: the equivariance checker must pass equivariant maps and catch the others."""

import pytest
import torch

from fastso3.core.irreps import Irreps
from fastso3.testing import (
    FLOAT_TOLERANCE,
    assert_equivariant,
    equivariance_error,
    format_equivariance_error,
    random_irreps,
    set_random_seeds,
)


# ------------------------------------------------------------------------------------------------
# functions under test
# ------------------------------------------------------------------------------------------------
def identity(x):
    return x


def cross(a, b):
    return torch.cross(a, b, dim=-1)


def triple_product(a, b, c):
    """A pseudoscalar (0o): rotation invariant, odd under inversion."""
    return (a * torch.cross(b, c, dim=-1)).sum(-1, keepdim=True)


def mix_components(x):
    """Not equivariant: swaps x and y."""
    return x[..., [1, 0, 2]]


def dot_fixed(x):
    """Not equivariant: the dot product with a fixed vector."""
    return (x * torch.tensor([1.0, 2.0, 3.0], dtype=x.dtype)).sum(-1, keepdim=True)


class Norms(torch.nn.Module):
    """Declares its irreps as attributes, like fastso3/e3nn modules."""

    def __init__(self):
        super().__init__()
        self.irreps_in = Irreps("2x0e+1o")
        self.irreps_out = Irreps("3x0e")

    def forward(self, x):
        return torch.cat([x[..., :2], x[..., 2:].norm(dim=-1, keepdim=True)], dim=-1)


class TwoInputs(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.irreps_in1 = Irreps("1o")
        self.irreps_in2 = Irreps("1o")
        self.irreps_out = Irreps("1e")

    def forward(self, a, b):
        return cross(a, b)


# ------------------------------------------------------------------------------------------------
# passing cases
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_identity_is_equivariant(dtype):
    x = Irreps("2x0e+1o").randn(5, -1, dtype=dtype)
    errors = assert_equivariant(identity, [x], irreps_in="2x0e+1o", irreps_out="2x0e+1o")
    assert set(errors) == {(0, False), (1, False)}  # no 'cartesian_points' input: no translation case
    for err in errors.values():
        assert err.shape == (1,)
        assert err.dtype == torch.float64
        assert float(err.max()) < FLOAT_TOLERANCE[dtype]


def test_generated_inputs_and_tolerance_by_dtype():
    errors = assert_equivariant(cross, irreps_in=["1o", "1o"], irreps_out="1e")
    assert max(float(e.max()) for e in errors.values()) < 1e-5
    x, y = torch.randn(3, 3, dtype=torch.float64), torch.randn(3, 3, dtype=torch.float64)
    errors = assert_equivariant(cross, [x, y], irreps_in=["1o", "1o"], irreps_out="1e")
    assert max(float(e.max()) for e in errors.values()) < 1e-12


def test_irreps_inferred_from_attributes():
    errors = assert_equivariant(Norms())
    assert set(errors) == {(0, False), (1, False)}
    assert_equivariant(TwoInputs())


def test_without_attributes_a_clear_error():
    with pytest.raises(ValueError, match="cannot infer irreps_in"):
        assert_equivariant(identity)


def test_multiple_outputs_and_passthrough_argument():
    def scaled_and_norm(x, scale):
        return x * scale, x.norm(dim=-1, keepdim=True)

    x = torch.randn(4, 3)
    errors = equivariance_error(scaled_and_norm, [x, 2.5], irreps_in=["1o", None], irreps_out=["1o", "0e"])
    for err in errors.values():
        assert err.shape == (2,)
        assert float(err.max()) < 1e-5


def test_ntrials_and_no_parity():
    errors = equivariance_error(identity, [torch.randn(2, 3)], "1o", "1o", ntrials=3, do_parity=False)
    assert set(errors) == {(0, False)}


# ------------------------------------------------------------------------------------------------
# failing cases: the checker must be able to fail, with a readable report
# ------------------------------------------------------------------------------------------------
def test_mixing_components_fails_readably():
    with pytest.raises(AssertionError) as info:
        assert_equivariant(mix_components, irreps_in="1o", irreps_out="1o")
    msg = str(info.value)
    assert "mix_components is not equivariant" in msg
    assert "rotation (parity_k=0)" in msg
    assert "FAIL" in msg
    assert "1.0e-03" in msg  # the float32 tolerance is reported
    assert len(msg.splitlines()) >= 4  # summary, worst case, table header, rows


def test_dot_with_fixed_vector_fails():
    with pytest.raises(AssertionError, match="dot_fixed is not equivariant"):
        assert_equivariant(dot_fixed, irreps_in="1o", irreps_out="0e")


def test_parity_violation_is_caught_only_with_parity():
    # a pseudoscalar declared as a scalar: fine under rotations, wrong under inversion
    irreps_in = ["1o", "1o", "1o"]
    errors = equivariance_error(triple_product, [torch.randn(3, 3) for _ in range(3)], irreps_in, "0e")
    assert float(errors[(0, False)].max()) < 1e-4
    assert float(errors[(1, False)].max()) > 1e-2
    with pytest.raises(AssertionError) as info:
        assert_equivariant(triple_product, irreps_in=irreps_in, irreps_out="0e")
    msg = str(info.value)
    assert "rotation+inversion (parity_k=1)" in msg
    rot_line = next(line for line in msg.splitlines() if line.startswith("rotation (parity_k=0)"))
    inv_line = next(line for line in msg.splitlines() if line.startswith("rotation+inversion (parity_k=1)"))
    assert rot_line.endswith("ok") and inv_line.endswith("FAIL")
    # declared correctly (0o) it passes; without the parity test the wrong label goes unnoticed
    assert_equivariant(triple_product, irreps_in=irreps_in, irreps_out="0o")
    assert_equivariant(triple_product, irreps_in=irreps_in, irreps_out="0e", do_parity=False)


def test_cross_product_is_a_pseudovector():
    with pytest.raises(AssertionError, match="parity_k=1"):
        assert_equivariant(cross, irreps_in=["1o", "1o"], irreps_out="1o")


def test_float64_tolerance_is_tight():
    def almost(x):  # equivariant up to 1e-6
        return x + 1e-6 * x[..., [1, 0, 2]]

    x32 = torch.randn(4, 3, dtype=torch.float32)
    assert_equivariant(almost, [x32], irreps_in="1o", irreps_out="1o")  # 1e-6 < 1e-3
    with pytest.raises(AssertionError, match="float64"):
        assert_equivariant(almost, [x32.double()], irreps_in="1o", irreps_out="1o")  # 1e-6 > 1e-9
    assert_equivariant(almost, [x32.double()], irreps_in="1o", irreps_out="1o", tolerance=1e-4)


def test_nan_fails():
    with pytest.raises(AssertionError):
        assert_equivariant(lambda x: x * float("nan"), irreps_in="1o", irreps_out="1o")


# ------------------------------------------------------------------------------------------------
# translations
# ------------------------------------------------------------------------------------------------
def centered(pos):
    return pos - pos.mean(dim=0, keepdim=True)


def test_translation_invariant_vectors_pass():
    errors = assert_equivariant(centered, irreps_in="cartesian_points", irreps_out="1o")
    assert set(errors) == {(0, False), (0, True), (1, False), (1, True)}


def test_points_to_points():
    def shift_to_first(pos):  # an E(3)-equivariant map of point clouds
        return pos + (pos[:1] - pos.mean(dim=0, keepdim=True))

    assert_equivariant(shift_to_first, irreps_in="cartesian_points", irreps_out="cartesian_points")


def test_translation_dependence_is_caught():
    pos = torch.randn(6, 3, dtype=torch.float64)
    errors = equivariance_error(identity, [pos], "cartesian_points", "1o")
    assert float(errors[(0, False)].max()) < 1e-12 and float(errors[(1, False)].max()) < 1e-12
    assert float(errors[(0, True)].max()) > 1e-2 and float(errors[(1, True)].max()) > 1e-2
    with pytest.raises(AssertionError, match="translation"):
        assert_equivariant(identity, [pos], irreps_in="cartesian_points", irreps_out="1o")
    errors = assert_equivariant(identity, [pos], irreps_in="cartesian_points", irreps_out="1o", do_translation=False)
    assert set(errors) == {(0, False), (1, False)}


def test_dimension_mismatch_is_reported():
    with pytest.raises(ValueError, match="last dimension of 5"):
        equivariance_error(identity, [torch.randn(2, 3)], "2x0e+1o", "2x0e+1o")
    with pytest.raises(ValueError, match="irreps_in spec"):
        equivariance_error(cross, [torch.randn(2, 3)], ["1o", "1o"], "1e")


# ------------------------------------------------------------------------------------------------
# formatting
# ------------------------------------------------------------------------------------------------
def test_format_equivariance_error():
    errors = {(0, False): torch.tensor([1e-8, 2.0]), (1, True): torch.tensor([3e-8, 4e-8])}
    text = format_equivariance_error(errors, ["1o", "0e"], tolerance=1e-3)
    lines = text.splitlines()
    assert len(lines) == 5
    assert "FAIL" in lines[2] and "2.000e+00" in lines[2]
    assert "translation" in lines[3] and lines[3].endswith("ok")
    assert "case" in format_equivariance_error(errors)


# ------------------------------------------------------------------------------------------------
# random_irreps
# ------------------------------------------------------------------------------------------------
def test_random_irreps_properties():
    set_random_seeds(1)
    kinds = set()
    for irreps in random_irreps(200, lmax=3, mul_min=1, mul_max=4, len_min=1, len_max=3):
        kinds.add(type(irreps).__name__)
        clean = Irreps(irreps)
        assert 1 <= len(clean) <= 3
        for mul_ir in clean:
            mul, (l, p) = mul_ir
            assert 1 <= mul <= 4 and 0 <= l <= 3 and p in (1, -1)
    assert kinds == {"Irreps", "str", "list"}


def test_random_irreps_clean_and_nonempty():
    set_random_seeds(2)
    out = random_irreps(100, clean=True, allow_empty=False)
    assert all(isinstance(irreps, Irreps) for irreps in out)
    assert all(irreps.dim > 0 for irreps in out)
    single = random_irreps(clean=True)
    assert isinstance(single, Irreps)
    assert random_irreps(len_max=0, clean=True).dim == 0


def test_random_irreps_reproducible():
    set_random_seeds(3)
    a = [str(Irreps(x)) for x in random_irreps(10)]
    set_random_seeds(3)
    b = [str(Irreps(x)) for x in random_irreps(10)]
    assert a == b


def test_random_irreps_bad_arguments():
    with pytest.raises(ValueError):
        random_irreps(0)
    with pytest.raises(ValueError):
        random_irreps(mul_min=3, mul_max=2)
    with pytest.raises(ValueError):
        random_irreps(len_max=0, allow_empty=False)


def test_random_irreps_are_testable():
    """Random irreps plug into assert_equivariant (here a scaling, equivariant for any irreps)."""
    set_random_seeds(4)
    for irreps in random_irreps(5, clean=True, allow_empty=False):
        assert_equivariant(lambda x: 2 * x, irreps_in=irreps, irreps_out=irreps)


def test_module_attributes_may_list_several_inputs():
    class Scale(torch.nn.Module):
        irreps_in = ["2x1o", "cartesian_points"]
        irreps_out = "2x1o"

        def forward(self, x, pos):
            return x * (pos - pos.mean(0)).norm(dim=-1, keepdim=True)  # translation invariant

    class Shift(Scale):
        def forward(self, x, pos):  # not translation invariant
            return x * pos.norm(dim=-1, keepdim=True)

    assert assert_equivariant(Scale(), [torch.randn(4, 6, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)])
    with pytest.raises(AssertionError):
        assert_equivariant(Shift(), [torch.randn(4, 6, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)])
