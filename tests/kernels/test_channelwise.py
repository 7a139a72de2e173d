import pytest
import torch

from fastso3 import o3
from fastso3.core.channelwise import is_channelwise
from fastso3.core.tensor_product_builders import channelwise_tensor_product_spec
from fastso3.kernels import registry
from fastso3.kernels.channelwise import channelwise_tensor_product, cw_contract_op, register_channelwise_plan

e3nn_o3 = pytest.importorskip("e3nn.o3")


def uvu_args(channels=3, lmax=2):
    irreps_in1 = o3.Irreps([(channels, (l, (-1) ** l)) for l in range(lmax + 1)])
    keep = [(l, p) for l in range(lmax + 1) for p in (1, -1)]
    spec = channelwise_tensor_product_spec(irreps_in1, o3.Irreps.spherical_harmonics(lmax), keep)
    return str(irreps_in1), str(spec["irreps_in2"]), str(spec["irreps_out"]), spec["instructions"]


def modules(dtype=torch.float64, **kw):
    args = uvu_args(**kw)
    fast = o3.TensorProduct(*args, shared_weights=False).to(dtype)
    ref = o3.TensorProduct(*args, shared_weights=False, backend="reference").to(dtype)
    return fast, ref


def inputs(tp, batch=(7,), dtype=torch.float64):
    return [torch.randn(*batch, d, dtype=dtype) for d in (tp.irreps_in1.dim, tp.irreps_in2.dim, tp.weight_numel)]


def test_default_runs_the_kernel_and_matches_reference_and_e3nn(f64):
    fast, ref = modules()
    assert fast._kernel == "channelwise" and is_channelwise(fast.plan)
    x, y, w = inputs(fast)
    out = fast(x, y, w)
    assert registry.last_backend("channelwise_tensor_product") == "cpu"
    torch.testing.assert_close(out, ref(x, y, w), rtol=0, atol=1e-12)
    theirs = e3nn_o3.TensorProduct(*uvu_args(), shared_weights=False)
    assert (out - theirs(x, y, w)).abs().max() <= 1e-10


def test_gradients_and_double_gradients_match_reference():
    fast, ref = modules()
    x, y, w = inputs(fast)
    g = torch.randn(7, fast.irreps_out.dim, dtype=torch.float64)

    def grads(module):
        leaves = [t.clone().requires_grad_() for t in (x, y, w)]
        first = torch.autograd.grad((module(*leaves) * g).sum(), leaves, create_graph=True)
        second = torch.autograd.grad(sum((f.sin()).sum() for f in first), leaves)
        return first + second

    for ours, theirs in zip(grads(fast), grads(ref)):
        torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_gradcheck_gradgradcheck_of_the_table_ops(backend):
    fast, _ = modules(channels=2, lmax=1)
    leaves = [t.requires_grad_() for t in inputs(fast, batch=(3,))]
    fn = lambda a, b, c: channelwise_tensor_product(fast.plan, a, b, c, backend)  # noqa: E731
    assert torch.autograd.gradcheck(fn, leaves)
    assert torch.autograd.gradgradcheck(fn, leaves)


@pytest.mark.parametrize(("dtype", "channels", "lmax"), [(torch.float64, 107, 2), (torch.float32, 211, 1), (torch.float64, 9, 5)])
def test_kernel_chunks_tiles_and_strided_rows_match_reference(dtype, channels, lmax):
    """Channel counts that reach every chunk width of the kernels (8, 4 and 1 vectors, then a plain loop) and
    the register transposes of the mul_ir blocks; l = 5 blocks (11 rows) take the element-wise row copies."""
    fast, ref = modules(dtype=dtype, channels=channels, lmax=lmax)
    x, y, w = (t.requires_grad_() for t in inputs(fast, batch=(5,), dtype=dtype))
    g = torch.randn(5, fast.irreps_out.dim, dtype=dtype)

    def run(module):
        out = module(x, y, w)
        return (out, *torch.autograd.grad(out, (x, y, w), g))

    tol = {"rtol": 1e-12, "atol": 1e-12} if dtype == torch.float64 else {"rtol": 1e-4, "atol": 1e-4}
    for ours, theirs in zip(run(fast), run(ref)):
        torch.testing.assert_close(ours, theirs, **tol)


def _slot_tensors(fast, z=6, dtype=torch.float64):
    table = register_channelwise_plan(fast.plan)
    dims = (fast.irreps_out.dim, fast.irreps_in1.dim, fast.irreps_in2.dim, fast.weight_numel)
    return table, [torch.randn(z, d, dtype=dtype) for d in dims]


@pytest.mark.parametrize("outputs", [[1, 3, 2], [3, 1], [0, 1, 3], [2, 0], [0]])
def test_contract_into_several_slots_matches_reference(outputs):
    """One pass of the CPU kernel into several slots (a product's gradients) against one reference
    contraction per slot; odd channel counts and l = 3 reach the plain loop and the register transposes."""
    fast, _ = modules(channels=21, lmax=3)
    # more than 16 samples (the kernel's parallel branch), in blocks of 8 and 16 with a partial last one
    table, by_slot = _slot_tensors(fast, z=43)
    if outputs == [0]:
        by_slot[0] = None  # the sole output's slot need not be given
    previous = torch.get_num_threads()
    try:
        runs = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            runs.append(cw_contract_op(*by_slot, table, outputs, "cpu"))
    finally:
        torch.set_num_threads(previous)
    theirs = cw_contract_op(*by_slot, table, outputs, "reference")
    for s, one, two, ref in zip(outputs, *runs, theirs):
        assert one.shape == (43, [fast.irreps_out.dim, fast.irreps_in1.dim, fast.irreps_in2.dim, fast.weight_numel][s])
        assert torch.equal(one, two)  # one thread per sample: the same sums for any thread count
        torch.testing.assert_close(one, ref, rtol=1e-12, atol=1e-12)


def test_contract_gradcheck_gradgradcheck():
    """The multilinear autograd of a call into several slots: every derivative is cw_contract again."""
    fast, _ = modules(channels=3, lmax=2)
    table, by_slot = _slot_tensors(fast, z=3)
    leaves = [t.requires_grad_() for t in by_slot]
    fn = lambda *t: cw_contract_op(*t, table, [1, 3, 2], "cpu")  # noqa: E731
    assert torch.autograd.gradcheck(fn, leaves)
    assert torch.autograd.gradgradcheck(fn, leaves)


@pytest.mark.parametrize("outputs", [[1, 3, 2], [0]])
def test_contract_passes_opcheck(outputs):
    """Schema, fake tensor and autograd registration of ``fastso3::cw_contract``."""
    fast, _ = modules(channels=5, lmax=2)
    table, by_slot = _slot_tensors(fast, z=4)
    by_slot = [t.requires_grad_() for t in by_slot]
    if outputs == [0]:
        by_slot[0] = None
    torch.library.opcheck(cw_contract_op, (*by_slot, table, outputs, "cpu"))


def test_contract_checks_its_operands():
    fast, _ = modules()
    table, by_slot = _slot_tensors(fast)
    with pytest.raises(ValueError, match="distinct slots"):
        cw_contract_op(*by_slot, table, [1, 1], "cpu")
    with pytest.raises(ValueError, match="must be given"):
        cw_contract_op(None, *by_slot[1:], table, [1], "cpu")
    with pytest.raises(ValueError, match="shape"):
        cw_contract_op(by_slot[0][:, :-1], *by_slot[1:], table, [1], "cpu")
    with pytest.raises(TypeError, match="dtype"):
        cw_contract_op(by_slot[0].float(), *by_slot[1:], table, [1], "cpu")
    with pytest.raises(ValueError, match="unknown table"):
        cw_contract_op(*by_slot, "no such table", [1], "cpu")


def test_results_do_not_depend_on_the_thread_count():
    fast, _ = modules(dtype=torch.float32, channels=19, lmax=2)
    x, y, w = (t.requires_grad_() for t in inputs(fast, batch=(40,), dtype=torch.float32))
    g = torch.randn(40, fast.irreps_out.dim)

    def run(threads):
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            out = fast(x, y, w)
            return (out, *torch.autograd.grad(out, (x, y, w), g))
        finally:
            torch.set_num_threads(previous)

    for one, two in zip(run(1), run(2)):
        assert torch.equal(one, two)  # one thread per sample: the same sums in the same order


def test_float32_within_reference_precision():
    fast32, ref32 = modules(dtype=torch.float32, channels=8, lmax=3)
    _, ref64 = modules(dtype=torch.float64, channels=8, lmax=3)
    x, y, w = inputs(ref64, batch=(50,))
    exact = ref64(x, y, w)
    budget = (ref32(x.float(), y.float(), w.float()).double() - exact).abs().max()
    err = (fast32(x.float(), y.float(), w.float()).double() - exact).abs().max()
    assert err <= 4 * budget


def test_batch_broadcasting():
    fast, ref = modules()
    x, _, w = inputs(fast, batch=(2, 1, 4))
    y = torch.randn(3, 4, fast.irreps_in2.dim, dtype=torch.float64)  # broadcasts to (2, 3, 4)
    out = fast(x, y, w)
    assert out.shape == (2, 3, 4, fast.irreps_out.dim)
    torch.testing.assert_close(out, ref(x, y, w), rtol=0, atol=1e-12)


def test_explicit_cpu_backend_raises_where_it_does_not_apply():
    args = uvu_args()
    shared = o3.TensorProduct(*args, backend="cpu").double()  # shared weights: not covered by the kernel
    x, y, _ = inputs(shared)
    with pytest.raises(registry.BackendUnavailable):
        shared(x, y)
    with pytest.raises(ValueError, match="unknown backend"):
        o3.TensorProduct(*args, backend="gpu")


@pytest.mark.compile
def test_compile_fullgraph_dynamic_matches_eager():
    torch._dynamo.reset()
    fast, _ = modules(dtype=torch.float32)
    compiled = torch.compile(fast, fullgraph=True, dynamic=True)
    for n in (5, 9):
        x, y, w = (t.requires_grad_() for t in inputs(fast, batch=(n,), dtype=torch.float32))
        eager = fast(x, y, w)
        (ge,) = torch.autograd.grad(eager.pow(2).sum(), x)
        out = compiled(x, y, w)
        (gc,) = torch.autograd.grad(out.pow(2).sum(), x)
        torch.testing.assert_close(out, eager)
        torch.testing.assert_close(gc, ge)
