"""SymmetricContraction: MACE's U tensors and numbers, the fused CPU kernel and the factorised path against the
dense twin, equivariance, derivatives of every order, opcheck, thread-count independence, compile, input errors.
(The Triton kernels: tests/kernels/test_triton_symmetric_contraction.py.)"""

import pytest
import torch

from fastso3 import o3
from fastso3.core.symmetric_contraction import symmetric_contraction_plan, u_matrix
from fastso3.kernels import registry
from fastso3.kernels import symmetric_contraction as symmetric_contraction_kernels
from fastso3.nn import SymmetricContraction

IRREPS_IN = "4x0e+4x1o+4x2e"


def _inputs(module, n=5, dtype=torch.float64):
    x = torch.randn(n, module.channels, module.irreps_in.dim // module.channels, dtype=dtype)
    species = torch.randint(0, module.num_elements, (n,))
    return x, species


@pytest.mark.parametrize("backend", ["cpu", "factorized"])
@pytest.mark.parametrize("irreps_out, correlation", [("4x0e", 1), ("4x0e+4x1o", 2), ("4x0e+4x1o+4x2e", 3),
                                                     ("4x0o+4x1e", 3)])  # fmt: skip
def test_fast_paths_match_dense_twin(f64, irreps_out, correlation, backend):
    module = SymmetricContraction(IRREPS_IN, irreps_out, correlation, num_elements=3, backend=backend)
    x, species = _inputs(module)
    fast = module(x, species)
    assert registry.last_backend("symmetric_contraction") == backend
    module.backend = "reference"
    dense = module(x, species)
    assert fast.shape == (5, module.irreps_out.dim)
    torch.testing.assert_close(fast, dense, rtol=1e-12, atol=1e-12 * dense.abs().max().item())


def test_plans_that_share_their_monomials_keep_their_own_names(f64):
    # at correlation 1 the 2e inputs reach no 0e / 1e output: both plans have the same monomials and projection,
    # and differ in their number of inputs (a name from those tables alone made the second module run the first
    # plan: a shape error, or wrong numbers where the shapes agree)
    small = SymmetricContraction("4x0e+4x1o", "4x0e+4x1e", 1, num_elements=2)
    large = SymmetricContraction(IRREPS_IN, "4x0e+4x1e", 1, num_elements=2)
    assert small.tables().name != large.tables().name
    for module in (small, large):
        x, species = _inputs(module)
        fast = module(x, species)
        module.backend = "reference"
        torch.testing.assert_close(fast, module(x, species), rtol=1e-12, atol=1e-12)


def test_pseudotensor_outputs_have_no_coupling_from_even_inputs(f64):
    module = SymmetricContraction("4x0e+4x2e", "4x0o+4x1e", 2, num_elements=2)
    x, species = _inputs(module)
    assert module(x, species).abs().max().item() == 0.0


@pytest.mark.parametrize("irreps_out", ["4x0e+4x1o", "4x0o+4x1e"])
def test_equivariant_under_rotation_and_inversion(f64, irreps_out):
    module = SymmetricContraction("4x0e+4x1o+4x2e+4x3o", irreps_out, 3, num_elements=2)
    x, species = _inputs(module)
    rotation = -o3.rand_matrix(dtype=torch.float64)  # a rotation times the inversion
    d_in = o3.Irreps("0e+1o+2e+3o").D_from_matrix(rotation)
    d_out = o3.Irreps(irreps_out).D_from_matrix(rotation)
    torch.testing.assert_close(module(x @ d_in.T, species), module(x, species) @ d_out.T, rtol=1e-10, atol=1e-10)


def test_default_backend_is_the_fused_cpu_kernel():
    module = SymmetricContraction("2x0e+2x1o", "2x0e", 2, num_elements=2)
    module(*_inputs(module, dtype=torch.float32))
    assert registry.last_backend("symmetric_contraction") == "cpu"


@pytest.mark.parametrize("correlation", [1, 2, 3])
def test_derivatives_of_every_order(f64, correlation):
    # the fused op's first and second derivatives, and at correlation 3 its third (its double backward's
    # derivative) and the composed backends' first ones
    module = SymmetricContraction("2x0e+2x1o", "2x0e+2x1o", correlation, num_elements=2)
    x, species = _inputs(module, n=2)
    x.requires_grad_(True)
    weights = module._weights()
    torch.autograd.gradcheck(lambda x, *w: module.forward(x, species), (x, *weights))
    torch.autograd.gradgradcheck(lambda x, *w: module.forward(x, species), (x, *weights))
    if correlation < 3:
        return

    def force_like(x):  # d/dx of a scalar, as forces are; its second derivative is the output's third
        return torch.autograd.grad(module(x, species).square().sum(), x, create_graph=True)[0]

    torch.autograd.gradgradcheck(force_like, (x,))
    for backend in ("factorized", "reference"):
        module.backend = backend
        torch.autograd.gradcheck(lambda x, *w: module.forward(x, species), (x, *weights))


def test_ops_pass_opcheck(f64):
    module = SymmetricContraction("2x0e+2x1o", "2x0e+2x1o", 3, num_elements=2)
    d, r, s = symmetric_contraction_kernels._sizes(module._plan)
    x, w, g = torch.randn(3, d, 2), torch.randn(3, r, 2), torch.randn(3, s, 2)
    for backend in ("cpu", "factorized"):
        torch.library.opcheck(symmetric_contraction_kernels.symmetric_contraction_op,
                              (x.requires_grad_(), w.requires_grad_(), module._plan, backend))  # fmt: skip
    for need in ((True, True), (False, True)):
        torch.library.opcheck(symmetric_contraction_kernels.symmetric_contraction_backward_op,
                              (g, x, w, module._plan, "cpu", *need))  # fmt: skip


@pytest.mark.parametrize("correlation", [1, 2, 3])
def test_fused_double_backward_matches_the_composition(f64, correlation):
    module = SymmetricContraction("3x0e+3x1o+3x2e", "3x0e+3x1o+3x2e", correlation, num_elements=2)
    d, r, s = symmetric_contraction_kernels._sizes(module._plan)
    g, x, w = torch.randn(5, s, 3), torch.randn(5, d, 3), torch.randn(5, r, 3)
    hx, hw = torch.randn(5, d, 3), torch.randn(5, r, 3)
    for grad_w in (hw, None):  # None: the weights' cotangent is zero (a force loss)
        fused = symmetric_contraction_kernels.symmetric_contraction_double_backward_op(g, x, w, hx, grad_w,
                                                                                        module._plan, "cpu")  # fmt: skip
        composed = symmetric_contraction_kernels._factorized_double_backward(g, x, w, hx, grad_w, module._plan)
        for a, b in zip(fused, composed):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12 * b.abs().max().item())
    torch.library.opcheck(symmetric_contraction_kernels.symmetric_contraction_double_backward_op,
                          (g, x, w, hx, hw, module._plan, "cpu"), test_utils=("test_schema", "test_faketensor"))  # fmt: skip


def test_fused_kernel_is_bitwise_independent_of_the_thread_count():
    # (the kernel's property; the weights' einsum around it is BLAS's business)
    module = SymmetricContraction("40x0e+40x1o+40x2e", "40x0e+40x1o", 3, num_elements=2)
    d, r, s = symmetric_contraction_kernels._sizes(module._plan)
    x, w, g = torch.randn(7, d, 40), torch.randn(7, r, 40), torch.randn(7, s, 40)
    results = []
    threads = torch.get_num_threads()
    try:
        for count in (1, 2):
            torch.set_num_threads(count)
            out = symmetric_contraction_kernels.symmetric_contraction_op(x, w, module._plan, "cpu")
            grads = symmetric_contraction_kernels.symmetric_contraction_backward_op(g, x, w, module._plan, "cpu",
                                                                                    True, True)  # fmt: skip
            second = symmetric_contraction_kernels.symmetric_contraction_double_backward_op(g, x, w, x, w, module._plan,
                                                                                            "cpu")  # fmt: skip
            results.append((out, *grads, *second))
    finally:
        torch.set_num_threads(threads)
    for one, two in zip(*results):
        assert torch.equal(one, two)


def test_u_matrix_shapes_and_plan_blocks():
    u = u_matrix("0e+1o+2e+3o", "1o", 3)
    assert u.shape[:4] == (3, 16, 16, 16)
    plan = symmetric_contraction_plan("0e+1o+2e+3o", "0e+1o", 3)
    assert [(o, nu) for o, nu, _ in plan.blocks] == [(0, 3), (0, 2), (0, 1), (1, 3), (1, 2), (1, 1)]
    assert plan.projection.shape == (plan.monomial_index.shape[0], len(plan.column_rank))
    assert plan.rank < sum(k for _, _, k in plan.blocks)  # the factorisation pays: fewer columns than couplings


def test_mace_u_matrices_and_numbers(f64):
    mace_sc = pytest.importorskip("mace.modules.symmetric_contraction")
    import e3nn.o3

    irreps_in, irreps_out = "4x0e+4x1o+4x2e+4x3o", "4x0e+4x1o"
    theirs = mace_sc.SymmetricContraction(e3nn.o3.Irreps(irreps_in), e3nn.o3.Irreps(irreps_out), 3,
                                          num_elements=3, use_reduced_cg=False)  # fmt: skip
    ours = SymmetricContraction(irreps_in, irreps_out, 3, num_elements=3)
    missing, unexpected = ours.load_state_dict(theirs.state_dict(), strict=False)
    assert not missing and all("U_matrix" in k or "zeroed" in k for k in unexpected)
    for b, (o, nu, _) in enumerate(ours._blocks):
        theirs_u = theirs.state_dict()[f"contractions.{o}.U_matrix_{nu}"]
        torch.testing.assert_close(getattr(ours, f"u_{b}"), theirs_u.reshape(getattr(ours, f"u_{b}").shape),
                                   rtol=0, atol=1e-14)  # fmt: skip
    x, species = _inputs(ours)
    expected = theirs(x, torch.nn.functional.one_hot(species, 3).to(x.dtype))
    torch.testing.assert_close(ours(x, species), expected, rtol=1e-12, atol=1e-12 * expected.abs().max().item())


@pytest.mark.compile
def test_compiles_without_graph_breaks():
    module = SymmetricContraction("2x0e+2x1o", "2x0e+2x1o", 3, num_elements=2)
    x, species = _inputs(module, dtype=torch.float32)
    compiled = torch.compile(module, fullgraph=True)
    torch.testing.assert_close(compiled(x, species), module(x, species), rtol=1e-5, atol=1e-5)


def test_bad_inputs_raise_clear_errors():
    module = SymmetricContraction("2x0e+2x1o", "2x0e", 2, num_elements=2)
    x, species = _inputs(module, dtype=torch.float32)
    with pytest.raises(IndexError, match="species contains 2"):
        module(x, torch.tensor([0, 1, 2, 0, 0]))
    with pytest.raises(ValueError, match="x must have shape"):
        module(x[..., :3], species)
    with pytest.raises(ValueError, match="species has 4 entries"):
        module(x, species[:4])
    with pytest.raises(TypeError, match="dtype"):
        module(x.double(), species)
    with pytest.raises(TypeError, match="int64"):
        module(x, species.int())
    module.backend = "gpu"
    with pytest.raises(registry.BackendUnavailable, match="does not exist"):
        module(x, species)
    with pytest.raises(ValueError, match="one multiplicity"):
        SymmetricContraction("2x0e+4x1o", "2x0e", 2, num_elements=2)
    with pytest.raises(ValueError, match="correlation"):
        SymmetricContraction("2x0e+2x1o", "2x0e", 4, num_elements=2)
