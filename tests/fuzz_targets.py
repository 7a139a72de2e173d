"""Property-based fuzzing of the public ops and the registered ``torch.ops.fastso3`` ops.

Run as ``python tests/fuzz_targets.py NAME [NAME ...]`` (``tests/test_fuzz.py`` does, one subprocess per
target, so a segmentation fault turns the test red instead of killing the suite). Each target draws shapes,
dtypes, strides, empty sizes, index dtypes and ranges, backend names and extreme values, and requires of
every call: either a clear error of the documented kinds, or the reference twin's result. The number of
examples per target is ``FASTSO3_FUZZ_EXAMPLES`` (default 40; the slow test runs 400).
"""

from __future__ import annotations

import functools
import math
import os
import sys

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastso3 import o3
from fastso3.kernels import registry
from fastso3.ops import sparse_accumulate, tensor_product_conv

# What a bad input may raise: a clear error (UnsupportedDtype/BackendUnavailable are TypeError/RuntimeError).
CLEAR_ERRORS = (TypeError, ValueError, IndexError, registry.BackendUnavailable)
EXAMPLES = int(os.environ.get("FASTSO3_FUZZ_EXAMPLES", "40"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                    suppress_health_check=list(HealthCheck))  # fmt: skip

FLOATS = [torch.float64, torch.float32, torch.float16, torch.bfloat16]
DTYPES = st.sampled_from([*FLOATS, torch.int64])
INDEX_DTYPES = st.sampled_from([torch.int64, torch.int64, torch.int32])
BACKENDS = st.sampled_from(["cpu", "cpu", "reference", "triton", "bogus"])


def tolerance(dtype):
    """Relative to the result's largest entry: a few roundings of the dtype, over a handful of products."""
    return {torch.float64: 1e-10, torch.float32: 1e-4, torch.float16: 1e-2}.get(dtype, 6e-2)


def maybe_strided(t: torch.Tensor, strided: bool) -> torch.Tensor:
    """The same values, as a non-contiguous view when ``strided`` (the kernels must not assume contiguity)."""
    if not strided or t.dim() == 0:
        return t
    return torch.stack([t, t], dim=-1)[..., 0]


def expect(call, valid: bool, reference):
    """``call()`` raises a clear error (then ``valid`` must be False) or matches ``reference()``."""
    try:
        out = call()
    except CLEAR_ERRORS:
        assert not valid, "a valid input was rejected"
        return
    assert valid, "an invalid input was accepted"
    ref = reference().detach().double()
    tol = tolerance(out.dtype)
    atol = tol * max(1.0, float(ref.abs().max())) if ref.numel() else tol
    torch.testing.assert_close(out.detach().double(), ref, rtol=tol, atol=atol)


@st.composite
def accumulation(draw):
    lead = draw(st.sampled_from([(), (0,), (3,), (2, 2)]))
    n1, n2, n_out = draw(st.integers(0, 4)), draw(st.integers(0, 4)), draw(st.integers(0, 4))
    nnz = draw(st.integers(0, 6))
    lo, hi = -2, max(n1, n2, n_out) + 2
    idx = [draw(st.lists(st.integers(lo, hi), min_size=nnz, max_size=nnz)) for _ in range(3)]
    return lead, n1, n2, n_out, idx, draw(DTYPES), draw(DTYPES), draw(INDEX_DTYPES), \
        draw(st.integers(-1, 1)), draw(BACKENDS), draw(st.booleans())  # fmt: skip


@SETTINGS
@given(accumulation(), st.booleans())
def fuzz_sparse_accumulate(case, direct):
    """The public function and the registered op, eager."""
    lead, n1, n2, n_out, (io, i1, i2), dt1, dt2, idt, mult_extra, backend, strided = case
    x1 = maybe_strided(torch.randn(*lead, n1, dtype=torch.float64).to(dt1), strided)
    x2 = maybe_strided(torch.randn(*lead, n2, dtype=torch.float64).to(dt2), strided)
    idx = [torch.tensor(i, dtype=idt) for i in (io, i1, i2)]
    mult = torch.randn(max(len(io) + mult_extra, 0), dtype=torch.float64).to(dt1 if direct else torch.float64)
    in_range = all(0 <= v < n for vals, n in zip((io, i1, i2), (n_out, n1, n2)) for v in vals)
    kernel_dtype = dt1 in (torch.float32, torch.float64) or (backend == "reference" and dt1.is_floating_point)
    valid = (in_range and idt == torch.int64 and mult_extra == 0 and dt1 == dt2 and kernel_dtype
             and backend in ("cpu", "reference"))  # fmt: skip

    def reference():
        out = torch.zeros(*lead, n_out, dtype=torch.float64)
        for k in range(len(io)):
            out[..., io[k]] += x1[..., i1[k]].double() * x2[..., i2[k]].double() * mult[k].double()
        return out

    if direct:
        expect(lambda: torch.ops.fastso3.sparse_accumulate(x1, x2, *idx, mult, n_out, backend), valid, reference)
    else:
        expect(lambda: sparse_accumulate(x1, x2, idx[0], n_out, idx[1], idx[2], mult, backend=backend), valid, reference)


@SETTINGS
@given(st.integers(0, 4), st.sampled_from([(), (0,), (4,), (2, 3)]), st.integers(-40, 38), DTYPES, BACKENDS,
       st.booleans(), st.booleans())  # fmt: skip
def fuzz_spherical_harmonics(lmax, lead, exponent, dtype, backend, normalize, strided):
    """Any finite nonzero vector normalises correctly in float32 and float64, large or tiny."""
    unit = torch.nn.functional.normalize(torch.randn(*lead, 3, dtype=torch.float64), dim=-1)
    log_scale = exponent if dtype != torch.float64 else exponent * 7
    x = unit * 10.0**log_scale
    xt = maybe_strided(x.to(dtype), strided)
    finite = bool(torch.isfinite(xt).all()) if dtype.is_floating_point else True
    nonzero = bool((xt.double().norm(dim=-1) > 0).all()) if dtype.is_floating_point else True
    valid = (dtype in (torch.float32, torch.float64) or (backend == "reference" and dtype.is_floating_point)) and \
        backend in ("cpu", "reference")  # fmt: skip
    if valid and normalize and not (finite and nonzero):
        return  # outside the property (zero and non-finite vectors are tested separately)
    irreps = o3.Irreps.spherical_harmonics(lmax)

    def reference():  # the exact direction (the norm of x itself may overflow in float64)
        u = unit if normalize else xt.double()
        return o3.spherical_harmonics(irreps, u, False, backend="reference")

    if valid and not normalize and log_scale * max(lmax, 1) > math.log10(torch.finfo(dtype).max) - 1:
        return  # un-normalised harmonics of huge vectors overflow, correctly
    expect(lambda: o3.spherical_harmonics(irreps, xt, normalize, backend=backend), valid, reference)


@st.composite
def convolution(draw):
    nodes, edges = draw(st.integers(0, 4)), draw(st.integers(0, 6))
    hi = nodes + 1
    src = draw(st.lists(st.integers(-2, hi), min_size=edges, max_size=edges))
    dst = draw(st.lists(st.integers(-2, hi), min_size=edges, max_size=edges))
    return nodes, src, dst, draw(DTYPES), draw(DTYPES), draw(INDEX_DTYPES), draw(BACKENDS)


@functools.cache
def conv_product():
    """A channel-wise product with every path kind (scalar and vector inputs, scalar and vector outputs)."""
    return o3.TensorProduct(
        "2x0e + 2x1o", "0e + 1o", "2x0e + 2x1o",
        [(0, 0, 0, "uvu", True), (1, 0, 1, "uvu", True), (0, 1, 1, "uvu", True), (1, 1, 0, "uvu", True)],
        shared_weights=False, internal_weights=False,
    )  # fmt: skip


@SETTINGS
@given(convolution(), st.booleans())
def fuzz_tensor_product_conv(case, with_grad):
    """Out-of-range and negative senders or receivers, zero nodes or edges, mixed dtypes, backend names."""
    nodes, src, dst, dt_x, dt_e, idt, backend = case
    tp = conv_product()
    edges = len(src)
    x = torch.randn(nodes, tp.irreps_in1.dim, dtype=torch.float64).to(dt_x)
    sh = torch.randn(edges, tp.irreps_in2.dim, dtype=torch.float64).to(dt_e)
    w = torch.randn(edges, tp.weight_numel, dtype=torch.float64).to(dt_e)
    s, d = torch.tensor(src, dtype=idt), torch.tensor(dst, dtype=idt)
    num_nodes = nodes + 1
    in_range = all(0 <= v < nodes for v in src) and all(0 <= v < num_nodes for v in dst)
    kernel_dtype = dt_x in (torch.float32, torch.float64) or (backend == "reference" and dt_x.is_floating_point)
    valid = in_range and idt == torch.int64 and dt_x == dt_e and kernel_dtype and backend in ("cpu", "reference")
    if with_grad and dt_x.is_floating_point:
        x.requires_grad_(True)

    def call():
        out = tensor_product_conv(x, s, d, sh, w, tp, num_nodes, backend=backend)
        if x.requires_grad:
            (g,) = torch.autograd.grad(out.square().sum(), x)
            assert g.shape == x.shape
        return out

    def reference():
        out = torch.zeros(num_nodes, tp.irreps_out.dim, dtype=torch.float64)
        if edges:
            tp64 = tp.double()
            out.index_add_(0, d, tp64(x.detach().double()[s], sh.double(), w.double()))
        return out

    expect(call, valid, reference)


@SETTINGS
@given(st.sampled_from([(0,), (3,), (1, 2)]), st.integers(-1, 1), st.integers(-1, 1), DTYPES, BACKENDS,
       st.sampled_from(["x1", "x2", "w", None]))  # fmt: skip
def fuzz_uvw_op(lead, d1_extra, z_extra, dtype, backend, mixed):
    """The registered uvw op with wrong widths, row counts, mixed dtypes and backends."""
    tp = o3.FullyConnectedTensorProduct("2x0e + 1x1o", "1x0e + 1x1o", "1x0e + 2x1o", shared_weights=False)
    from fastso3.kernels.uvw import register_uvw_plan

    table = register_uvw_plan(tp.plan)
    z = lead[0]
    dt = {name: (torch.float64 if name == mixed and dtype != torch.float64 else dtype) for name in ("x1", "x2", "w")}
    x1 = torch.randn(z, tp.irreps_in1.dim + d1_extra, dtype=torch.float64).to(dt["x1"])
    x2 = torch.randn(max(z + z_extra, 0), tp.irreps_in2.dim, dtype=torch.float64).to(dt["x2"])
    w = torch.randn(z, tp.weight_numel, dtype=torch.float64).to(dt["w"])
    kernel_dtype = dtype in (torch.float32, torch.float64) or (backend == "reference" and dtype.is_floating_point)
    valid = d1_extra == 0 and x2.shape[0] == z and len(set(dt.values())) == 1 and kernel_dtype and backend in ("cpu", "reference")

    def reference():
        return torch.ops.fastso3.uvw(x1.double(), x2.double(), w.double(), table, [0, 1, 2, 3], False, "reference")

    expect(lambda: torch.ops.fastso3.uvw(x1, x2, w, table, [0, 1, 2, 3], False, backend), valid, reference)


def _modules():
    """name -> (module (float32), input widths, whether it has parameters (then it takes its dtype only))."""
    from fastso3 import nn

    irreps = o3.Irreps("2x0e + 1x1o + 1x2e")
    return {
        "Linear": (o3.Linear(irreps, "3x0e + 2x1o"), [irreps.dim], True),
        "FullyConnectedTensorProduct": (o3.FullyConnectedTensorProduct(irreps, "0e + 1o", "2x0e + 1x1o"), [irreps.dim, 4], True),
        "ElementwiseTensorProduct": (o3.ElementwiseTensorProduct(irreps, irreps), [irreps.dim, irreps.dim], True),
        "Norm": (o3.Norm(irreps), [irreps.dim], True),
        "Gate": (nn.Gate("2x0e", [torch.tanh], "1x0e", [torch.sigmoid], "1x1o"), [6], False),
        "BatchNorm": (nn.BatchNorm(irreps).eval(), [irreps.dim], True),
        "FullyConnectedNet": (nn.FullyConnectedNet([4, 5, 3], torch.relu), [4], True),
    }


_MODULES = {}


@SETTINGS
@given(st.sampled_from(sorted(_modules())), st.sampled_from([(0,), (1,), (3,), (2, 3), (0, 2)]), DTYPES,
       st.booleans(), st.integers(-1, 1))  # fmt: skip
def fuzz_modules(name, lead, dtype, strided, width_extra):
    """Modules on any batch shape (empty too), strided inputs, wrong widths and dtypes: a clear error, or
    the float64 result of the same module on contiguous inputs."""
    if not _MODULES:
        _MODULES.update(_modules())
    module, dims, has_parameters = _MODULES[name]
    inputs = [torch.randn(*lead, d + (width_extra if k == 0 else 0), dtype=torch.float64) for k, d in enumerate(dims)]
    cast = [maybe_strided(t.to(dtype), strided) for t in inputs]
    dtype_ok = dtype == torch.float32 if has_parameters else dtype.is_floating_point
    valid = width_extra == 0 and dtype_ok

    def reference():
        return module.double()(*[t.double() for t in cast])

    try:
        expect(lambda: module.float()(*cast), valid, reference)
    finally:
        module.float()


@SETTINGS
@given(st.integers(0, 6), st.floats(0.05, 3.0), st.sampled_from([None, "batch"]), st.booleans(), DTYPES,
       st.sampled_from(["torch", "vesin", "auto"]))  # fmt: skip
def fuzz_graph(n, cutoff, batched, periodic, dtype, method):
    """Radius graphs and periodic neighbour lists (torch and vesin agree; ASE's rules) and scatter with bad
    indices."""
    from fastso3.graph import neighbor_list, radius_graph, scatter_sum

    pos = (torch.rand(n, 3, dtype=torch.float64) * 3).to(dtype)
    floating = dtype.is_floating_point
    if periodic:
        cell = torch.eye(3, dtype=torch.float64) * 2.5
        call = lambda m: neighbor_list(pos, cell, True, cutoff, method=m)  # noqa: E731
    else:
        batch = torch.arange(n) % 2 if batched else None
        call = lambda m: radius_graph(pos, cutoff, batch, method=m)  # noqa: E731
    try:
        got = call(method)
    except CLEAR_ERRORS:
        assert not floating, "a valid input was rejected"
        return
    assert floating, "integer positions were accepted"
    for a, b in zip(got, call("torch")):
        assert torch.equal(a, b)
    src = got[0]
    values = torch.randn(src.shape[0], 2, dtype=torch.float64)
    bad = src.clone()
    if bad.numel():
        bad[0] = -1
        try:
            scatter_sum(values, bad, dim=0, dim_size=max(n, 1))
        except IndexError as err:
            assert "negative" in str(err)
        else:
            raise AssertionError("scatter_sum accepted a negative index")


@SETTINGS
@given(st.integers(0, 4), st.integers(0, 6), st.integers(-1, 5), DTYPES, st.booleans())
def fuzz_so2_convolution(nodes, edges, bad_index, dtype, strided):
    """SO2Convolution on empty graphs, strided features, out-of-range or negative indices and dtypes."""
    from fastso3.so2 import SO2Convolution

    if "so2" not in _MODULES:
        _MODULES["so2"] = SO2Convolution("2x0e + 1x1o + 1x2e", "2x0e + 1x1o", mmax=1)
    conv = _MODULES["so2"]
    x = maybe_strided(torch.randn(nodes, conv.irreps_in.dim, dtype=torch.float64).to(dtype), strided)
    index = torch.randint(0, max(nodes, 1), (2, edges))
    if edges and bad_index in (-1, nodes):  # one sender or receiver outside [0, nodes)
        index[bad_index % 2, 0] = bad_index
    vec = torch.randn(edges, 3, dtype=torch.float64).to(dtype) + 0.1
    valid = dtype == torch.float32 and (nodes > 0 or edges == 0) and not (edges and bad_index in (-1, nodes))

    def reference():
        return conv.double()(x.double(), index, vec.double())

    try:
        expect(lambda: conv.float()(x, index, vec), valid, reference)
    finally:
        conv.float()


TARGETS = {f.__name__.removeprefix("fuzz_"): f for f in
           (fuzz_sparse_accumulate, fuzz_spherical_harmonics, fuzz_tensor_product_conv, fuzz_uvw_op,
            fuzz_modules, fuzz_graph, fuzz_so2_convolution)}  # fmt: skip

if __name__ == "__main__":
    for name in sys.argv[1:] or TARGETS:
        TARGETS[name]()
        print(f"fuzz {name}: {EXAMPLES} examples passed")
