"""TensorProductPlan / LinearPlan: coefficients, layout and validation, checked against e3nn 0.6.0."""

import math

import numpy as np
import pytest
import torch

from fastso3.core.cg import wigner_3j
from fastso3.core.irreps import Irreps
from fastso3.core.tensor_product import (
    CONNECTION_MODES,
    Instruction,
    TensorProductPlan,
    linear_plan,
    path_flops,
    tensor_product_plan,
)
from fastso3.testing import random_irreps

e3nn_o3 = pytest.importorskip("e3nn.o3")

IRREP_NORMS = ["component", "norm", "none"]
PATH_NORMS = ["element", "path", "none"]


def _valid_modes(m1, m2, mo):
    """Modes (with the allowed has_weight values) whose multiplicity constraints hold."""
    modes = [("uvw", (True,))]
    if mo == m1:
        modes.append(("uvu", (True, False)))
    if mo == m2:
        modes.append(("uvv", (True, False)))
    if m1 == m2:
        modes.append(("uuw", (True, False) if mo == 1 else (True,)))
        modes.append(("u<vw", (True,)))
        if mo == m1:
            modes.append(("uuu", (True, False)))
        if mo == m1 * (m1 - 1) // 2:
            modes.append(("uvu<v", (True, False)))
    if mo == m1 * m2:
        modes.append(("uvuv", (True, False)))
    return modes


def _random_tensor_product(rng):
    """Random irreps and a random valid instruction list (several paths per output, all modes)."""
    in1 = random_irreps(clean=True, lmax=2, mul_min=0, mul_max=3, len_min=1, len_max=3)
    in2 = random_irreps(clean=True, lmax=2, mul_min=0, mul_max=3, len_min=1, len_max=3)
    out, instructions = [], []
    for _ in range(int(rng.integers(1, 5))):
        i1, i2 = int(rng.integers(len(in1))), int(rng.integers(len(in2)))
        (m1, ir1), (m2, ir2) = in1[i1], in2[i2]
        ir_out = list(ir1 * ir2)[int(rng.integers(len(list(ir1 * ir2))))]
        mode = str(rng.choice(CONNECTION_MODES))
        mo = {
            "uvu": m1,
            "uvv": m2,
            "uuu": m1,
            "uvuv": m1 * m2,
            "uvu<v": m1 * (m1 - 1) // 2,
        }.get(mode, int(rng.integers(0, 4)))
        if (mode in ("uuw", "uuu", "uvu<v", "u<vw") and m1 != m2) or mo < 0:
            mode, mo = "uvw", int(rng.integers(0, 4))
        out.append((mo, ir_out))
        io = len(out) - 1
        # every compatible (i1, i2) may feed this output, with a random valid mode
        for j1, (n1, jr1) in enumerate(in1):
            for j2, (n2, jr2) in enumerate(in2):
                if ir_out not in list(jr1 * jr2):
                    continue
                if (j1, j2) == (i1, i2):
                    instructions.append((j1, j2, io, mode, mode in ("uvw", "u<vw") or (mode == "uuw" and mo != 1) or bool(rng.integers(2)), float(rng.uniform(0.1, 3))))
                elif rng.random() < 0.5:
                    modes = _valid_modes(n1, n2, mo) if min(n1, n2, mo) > 0 else [("uvw", (True,))]
                    m, weights = modes[int(rng.integers(len(modes)))]
                    instructions.append((j1, j2, io, m, weights[int(rng.integers(len(weights)))], float(rng.uniform(0.1, 3))))
    rng.shuffle(instructions)
    return in1, in2, Irreps(out), [tuple(i) for i in instructions]


@pytest.mark.parametrize("irrep_normalization", IRREP_NORMS)
@pytest.mark.parametrize("path_normalization", PATH_NORMS)
def test_coefficients_match_e3nn_exactly(irrep_normalization, path_normalization):
    rng = np.random.default_rng(hash((irrep_normalization, path_normalization)) % 2**32)
    checked = 0
    for trial in range(8):
        in1, in2, out, instructions = _random_tensor_product(rng)
        variances = {}
        if trial % 2:
            variances = dict(
                in1_var=[float(v) for v in rng.uniform(0.2, 3, len(in1))],
                in2_var=[float(v) for v in rng.uniform(0.2, 3, len(in2))],
                out_var=[float(v) for v in rng.uniform(0.2, 3, len(out))],
            )
        plan = tensor_product_plan(
            in1, in2, out, instructions, irrep_normalization=irrep_normalization, path_normalization=path_normalization, **variances
        )
        ref = e3nn_o3.TensorProduct(
            str(in1),
            str(in2),
            str(out),
            instructions,
            irrep_normalization=irrep_normalization,
            path_normalization=path_normalization,
            _optimize_einsums=False,
            **variances,
        )
        assert len(plan.instructions) == len(ref.instructions)
        for ours, theirs in zip(plan.instructions, ref.instructions):
            assert ours.path_weight == theirs.path_weight  # bit-identical
            assert ours.path_shape == tuple(theirs.path_shape)
            assert (ours.i_in1, ours.i_in2, ours.i_out, ours.connection_mode, ours.has_weight) == (
                theirs.i_in1,
                theirs.i_in2,
                theirs.i_out,
                theirs.connection_mode,
                theirs.has_weight,
            )
            assert tuple(ours) == tuple(theirs)  # unpacks like e3nn's 7-field Instruction
        assert plan.weight_numel == ref.weight_numel
        np.testing.assert_array_equal(plan.output_mask, ref.output_mask.numpy())
        checked += len(instructions)
    assert checked > 10


def test_conventions_examples():
    plan = tensor_product_plan(
        "4x0e+3x1o",
        "2x0e+1x1o",
        "5x0e+2x1o+1x2e",
        [
            (i1, i2, io, "uvw", True)
            for i1, ir1 in enumerate(["0e", "1o"])
            for i2, ir2 in enumerate(["0e", "1o"])
            for io, iro in enumerate(["0e", "1o", "2e"])
            if Irreps(iro)[0].ir in list(Irreps(ir1)[0].ir * Irreps(ir2)[0].ir)
        ],
    )
    by_out = {}
    for ins in plan.instructions:
        by_out.setdefault(ins.i_out, set()).add(ins.path_weight)
    assert [len(by_out[i]) for i in range(3)] == [1, 1, 1]  # one coefficient per output
    assert by_out[0].pop() == pytest.approx(1 / math.sqrt(11), abs=1e-15)  # fan-in 4*2 + 3*1
    assert by_out[1].pop() == pytest.approx(math.sqrt(3 / 10), abs=1e-15)  # 3 * 1/(4*1 + 3*2)
    assert by_out[2].pop() == pytest.approx(math.sqrt(5 / 3), abs=1e-15)  # 5 * 1/(3*1)

    base = tensor_product_plan("1x1o", "1x1o", "1x2e", [(0, 0, 0, "uvw", True)])
    doubled = tensor_product_plan("1x1o", "1x1o", "1x2e", [(0, 0, 0, "uvw", True, 4.0)])
    halved = tensor_product_plan("1x1o", "1x1o", "1x2e", [(0, 0, 0, "uvw", True)], in1_var=[4.0])
    c = base.instructions[0].path_weight
    assert c == pytest.approx(math.sqrt(5))
    assert doubled.instructions[0].path_weight == pytest.approx(2 * c, rel=1e-15)
    assert doubled.instructions[0].user_path_weight == 4.0
    assert halved.instructions[0].path_weight == pytest.approx(c / 2, rel=1e-15)


def test_weight_slices_match_e3nn_weight_views():
    in1, in2, out = "2x0e+1x1o+2x1e", "1x0e+2x1o", "2x0e+3x1o+1x1e"
    instructions = [
        (0, 1, 1, "uvw", True),
        (0, 0, 0, "uvu", False),  # unweighted: takes no slice
        (1, 0, 1, "uvw", True, 2.0),
        (1, 1, 0, "uvv", True),
        (2, 1, 1, "uvw", True),
        (1, 1, 2, "uvw", True),
    ]
    plan = tensor_product_plan(in1, in2, out, instructions)
    ref = e3nn_o3.TensorProduct(in1, in2, out, instructions, _optimize_einsums=False)
    w = torch.arange(ref.weight_numel, dtype=torch.float64)
    views = list(ref.weight_views(w, yield_instruction=True))
    assert [i for i, _, _ in views] == [p.index for p in plan.paths if p.has_weight]
    for (i, _, view), p in zip(views, [p for p in plan.paths if p.has_weight]):
        np.testing.assert_array_equal(view.numpy(), w.numpy()[p.weight_slice].reshape(p.path_shape))


def test_paths_describe_slices_and_cg():
    plan = tensor_product_plan("2x0e+3x1o", "1x1o+1x2e", "3x1e+3x1o", [(1, 0, 0, "uvu", True), (1, 1, 1, "uvu", False)])
    p0, p1 = plan.paths
    assert (p0.in1_slice, p0.in2_slice, p0.out_slice) == (slice(2, 11), slice(0, 3), slice(0, 9))
    assert (p1.in1_slice, p1.in2_slice, p1.out_slice) == (slice(2, 11), slice(3, 8), slice(9, 18))
    assert p0.weight_slice == slice(0, 3) and p1.weight_slice is None
    np.testing.assert_array_equal(p1.cg, wigner_3j(1, 2, 1))
    dense = np.zeros_like(p1.cg)
    dense[p1.cg_sparse.i1, p1.cg_sparse.i2, p1.cg_sparse.i3] = p1.cg_sparse.values
    np.testing.assert_array_equal(dense, p1.cg)
    assert not p1.cg.flags.writeable and not plan.output_mask.flags.writeable
    assert plan.cg_keys() == [(1, 1, 1), (1, 2, 1)]


def test_pairs_follow_triu_indices_order():
    plan = tensor_product_plan("4x0e", "4x0e", "6x0e", [(0, 0, 0, "uvu<v", False)])
    np.testing.assert_array_equal(plan.paths[0].pairs, torch.triu_indices(4, 4, 1).numpy())


def test_output_mask_zero_path_weight_and_unreached():
    plan = tensor_product_plan("1x0e", "1x0e", "1x0e+2x0e+1x1o", [(0, 0, 0, "uvw", True, 0.0), (0, 0, 1, "uvw", True)])
    np.testing.assert_array_equal(plan.output_mask, [0, 1, 1, 0, 0, 0])


def test_flops_and_bytes():
    # 1x0e x 1x0e -> 1x0e uvw: 3 (x y C) + 2 (weight) + 1 (c) = 6
    plan = tensor_product_plan("1x0e", "1x0e", "1x0e", [(0, 0, 0, "uvw", True)])
    assert plan.flops == 6
    assert plan.bytes_per_sample(4) == 12
    assert plan.bytes_per_sample(8, shared_weights=False) == 32
    # 2x1o x 1x1o -> 3x1e uvw: nnz(C^111) = 6, P = 2: 3*6*2 + 2*2*3*3 + 3*3
    plan = tensor_product_plan("2x1o", "1x1o", "3x1e", [(0, 0, 0, "uvw", True)])
    assert plan.flops == 3 * 6 * 2 + 2 * 2 * 3 * 3 + 9 == path_flops("uvw", True, 2, 1, 3, 6, 3)
    assert plan.paths[0].bytes_per_sample(4) == 4 * (6 + 3 + 9)
    assert plan.paths[0].bytes_per_sample(8, shared_weights=False) == 8 * (6 + 3 + 9 + 6)
    assert plan.num_paths == 6


def test_plan_is_cached_hashable_and_printable():
    args = ("2x0e+1x1o", "1x1o", "1x0e+1x1o", [(0, 0, 1, "uvw", True), (1, 0, 0, "uvw", True, 2.0)])
    a = tensor_product_plan(*args)
    b = tensor_product_plan(Irreps("2x0e+1x1o"), Irreps("1x1o"), "1x0e+1x1o", [tuple(i) for i in args[3]])
    c = tensor_product_plan(*args, path_normalization="path")
    assert a is b and a == b and hash(a) == hash(b)
    assert a != c and len({a, b, c}) == 2
    assert isinstance(a, TensorProductPlan)
    text = repr(a)
    assert "TensorProductPlan(2x0e+1x1o x 1x1o -> 1x0e+1x1o" in text
    assert "uvw" in text and "w[0:2]" in text and "2 instructions" in text
    assert str(a) == text
    with pytest.raises(AttributeError):  # frozen (dataclasses.FrozenInstanceError is an AttributeError)
        a.weight_numel = 3
    with pytest.raises(AttributeError):
        a.instructions[0].path_weight = 1.0


def test_instruction_objects_are_accepted():
    plan = tensor_product_plan("1x0e", "1x0e", "1x0e", [(0, 0, 0, "uvw", True, 9.0)])
    again = tensor_product_plan("1x0e", "1x0e", "1x0e", list(plan.instructions))
    assert again is plan
    assert isinstance(plan.instructions[0], Instruction)


@pytest.mark.parametrize(
    "in1, in2, out, instruction, match",
    [
        ("1x1o", "1x1o", "1x1o", (0, 0, 0, "uvw", True), "parity"),
        ("1x0e", "1x0e", "1x2e", (0, 0, 0, "uvw", True), "triangle"),
        ("2x0e", "1x0e", "3x0e", (0, 0, 0, "uvu", True), "uvu"),
        ("2x0e", "3x0e", "2x0e", (0, 0, 0, "uvv", True), "uvv"),
        ("2x0e", "3x0e", "2x0e", (0, 0, 0, "uuw", True), "uuw"),
        ("2x0e", "2x0e", "2x0e", (0, 0, 0, "uuw", False), "unweighted"),
        ("2x0e", "2x0e", "3x0e", (0, 0, 0, "uuu", False), "uuu"),
        ("2x0e", "2x0e", "3x0e", (0, 0, 0, "uvuv", False), "uvuv"),
        ("3x0e", "3x0e", "2x0e", (0, 0, 0, "uvu<v", False), "m\\(m-1\\)/2"),
        ("3x0e", "2x0e", "2x0e", (0, 0, 0, "u<vw", True), "u<vw"),
        ("3x0e", "3x0e", "2x0e", (0, 0, 0, "u<vw", False), "has_weight"),
        ("1x0e", "1x0e", "1x0e", (0, 0, 0, "uvw", False), "has_weight"),
        ("1x0e", "1x0e", "1x0e", (0, 0, 0, "uvx", True), "unknown connection mode"),
        ("1x0e", "1x0e", "1x0e", (1, 0, 0, "uvw", True), "out of range"),
        ("1x0e", "1x0e", "1x0e", (0, 0, 0, "uvw", True, -1.0), "non-negative"),
        ("1x0e", "1x0e", "1x0e", (0, 0, 0, "uvw"), "expected"),
        ("1x0e", "1x0e", "1x0e", (0, 0, 0, "uvw", "yes"), "bool"),
    ],
)
def test_invalid_instructions_raise(in1, in2, out, instruction, match):
    with pytest.raises(ValueError, match=match):
        tensor_product_plan(in1, in2, out, [instruction])


def test_invalid_settings_raise():
    ins = [(0, 0, 0, "uvw", True)]
    with pytest.raises(ValueError, match="irrep_normalization"):
        tensor_product_plan("0e", "0e", "0e", ins, irrep_normalization="integral")
    with pytest.raises(ValueError, match="path_normalization"):
        tensor_product_plan("0e", "0e", "0e", ins, path_normalization="elements")
    with pytest.raises(ValueError, match="in1_var"):
        tensor_product_plan("0e", "0e", "0e", ins, in1_var=[1.0, 2.0])


def test_empty_paths_are_allowed_and_marked():
    plan = tensor_product_plan("0x0e+1x1o", "2x0e", "3x0e+1x1o", [(0, 0, 0, "uvu", True), (1, 0, 1, "uvw", True)])
    assert plan.paths[0].empty and not plan.paths[1].empty
    assert plan.weight_numel == 2


# ------------------------------------------------------------------------------------------------
# Linear plans
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path_normalization", ["element", "path"])
@pytest.mark.parametrize("f", [None, 3])
def test_linear_coefficients_match_e3nn(path_normalization, f):
    in_, out = "3x0e+2x1o+4x0e+1x2e", "2x0e+3x1o+1x0e"
    plan = linear_plan(in_, out, path_normalization=path_normalization, f_in=f, f_out=None if f is None else 2, biases=True)
    ref = e3nn_o3.Linear(
        in_, out, path_normalization=path_normalization, f_in=f, f_out=None if f is None else 2, biases=True, _optimize_einsums=False
    )
    assert len(plan.instructions) == len(ref.instructions)
    for ours, theirs in zip(plan.instructions, ref.instructions):
        assert tuple(ours) == tuple(theirs)
    assert plan.weight_numel == ref.weight_numel and plan.bias_numel == ref.bias_numel
    np.testing.assert_array_equal(plan.output_mask, ref.output_mask.numpy())


def test_linear_plan_examples_and_errors():
    plan = linear_plan("4x0e+2x0e", "5x0e")
    assert [ins.path_weight for ins in plan.weight_instructions] == [6**-0.5] * 2
    plan = linear_plan("4x0e+2x0e", "5x0e", path_normalization="path")
    assert [ins.path_weight for ins in plan.weight_instructions] == [8**-0.5, 4**-0.5]
    plan = linear_plan("2x0e+1x1o", "3x0e+1x1o+2x0e", biases=[True, False, True])
    assert plan.bias_numel == 5 and plan.bias_slices == (slice(0, 3), slice(3, 5))
    assert "LinearPlan(2x0e+1x1o -> 3x0e+1x1o+2x0e" in repr(plan)
    assert linear_plan("2x0e", "1x0e") is linear_plan("2x0e", "1x0e")
    with pytest.raises(ValueError, match="same irrep"):
        linear_plan("1x0e", "1x1o", instructions=[(0, 0)])
    with pytest.raises(ValueError, match="valid index") as bad:
        linear_plan("1x0e", "1x0e", instructions=[(1, 0)])
    assert isinstance(bad.value, IndexError)  # e3nn's type too
    with pytest.raises(ValueError, match="0e"):
        linear_plan("1x1o", "1x1o", biases=[True])
    with pytest.raises(ValueError, match="flags"):
        linear_plan("1x0e", "1x0e", biases=[True, True])
    with pytest.raises(ValueError, match="both"):
        linear_plan("1x0e", "1x0e", f_in=2)
    with pytest.raises(ValueError, match="path_normalization"):
        linear_plan("1x0e", "1x0e", path_normalization="none")
