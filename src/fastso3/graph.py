"""Graph operations without ``torch_scatter`` / ``torch_cluster``: scatter reductions, radius graphs and
periodic neighbour lists.

Edge convention (see ``docs/graphs.md``): an edge ``e`` carries a message from ``edge_src[e]`` (sender) to
``edge_dst[e]`` (receiver), its vector is

    edge_vec[e] = pos[edge_dst[e]] - pos[edge_src[e]] + shifts[e] @ cell

(``cell`` holds the lattice vectors as rows) and messages are aggregated at ``edge_dst``. Edge lists are
full (every pair appears in both directions) and sorted by ``edge_dst``, then ``edge_src``, then shift.
Graph construction returns integer data only; build edge vectors inside the autograd graph with
:func:`edge_vectors` to get forces and stress.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from .core.limits import TooLarge, check_work
from .kernels._checks import tracing

__all__ = [
    "MAX_EDGES",
    "NEIGHBOR_LIST_VESIN_MIN_ATOMS",
    "TooLarge",
    "RADIUS_GRAPH_VESIN_MIN_ATOMS",
    "edge_vectors",
    "neighbor_list",
    "radius_graph",
    "scatter",
    "scatter_max",
    "scatter_mean",
    "scatter_sum",
]

#: ``radius_graph(method='auto')`` uses vesin (when installed) once the largest structure has at least this
#: many points, and the pure-torch brute force below it (and always when vesin is missing). Measured
#: crossover on a 2-core CPU at ~15-20 neighbours per point: torch 0.9 ms vs vesin 2.2 ms at 512 points,
#: 7 ms vs 3 ms at 1024 (see docs/graphs.md).
RADIUS_GRAPH_VESIN_MIN_ATOMS = 1024
#: ``neighbor_list(method='auto')`` uses vesin (when installed) from this many atoms on: the periodic torch
#: brute force also loops over images (27 or more), so vesin wins earlier (3.8 ms vs 1.4 ms at 128 atoms).
NEIGHBOR_LIST_VESIN_MIN_ATOMS = 128

#: Graphs estimated to have more edges than this raise ``TooLarge`` unless ``allow_large=True``: 1e8 edges
#: are 2.4 GB of int64 indices and shifts, and more while they are built.
MAX_EDGES = 100_000_000
#: ``radius_graph(method='auto')`` uses the brute force when the cutoff is at least this share of the largest
#: structure's extent: cell lists gain nothing when one cell holds the whole cloud.
RADIUS_GRAPH_BRUTE_FORCE_EXTENT = 0.5

# Number of candidate pairs (receiver, sender, image) evaluated at once by the torch brute force.
_PAIR_BUDGET = 1 << 20


# ----------------------------------------------------------------------------------------------------
# scatter
# ----------------------------------------------------------------------------------------------------


def _prepare_scatter(name: str, src, index, dim: int, dim_size):
    """Validate arguments; return ``(src2, idx, d, size, out_shape)``: a 1-D int64 ``idx`` over axis ``d``
    of ``src2`` with ``size`` output slots, and the final output shape."""
    if not isinstance(src, Tensor):
        raise TypeError(f"{name}: src must be a torch.Tensor, got {type(src).__name__}")
    if not isinstance(index, Tensor):
        raise TypeError(f"{name}: index must be a torch.Tensor, got {type(index).__name__}")
    if index.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"{name}: index must have dtype int64 (or int32), got {index.dtype}")
    if src.dim() == 0:
        raise ValueError(f"{name}: src must have at least one dimension")
    if isinstance(dim, bool) or not isinstance(dim, int):
        raise TypeError(f"{name}: dim must be an int, got {dim!r}")
    nd = src.dim()
    if not -nd <= dim < nd:
        raise IndexError(f"{name}: dim={dim} is out of range for src with {nd} dimensions")
    dim %= nd
    if index.device != src.device:
        raise ValueError(f"{name}: index is on {index.device} but src is on {src.device}")
    n = src.shape[dim]
    if index.dim() == 1:
        if index.shape[0] != n:
            raise ValueError(
                f"{name}: index has {index.shape[0]} entries but src has size {n} along dim {dim} "
                f"(src shape {tuple(src.shape)})"
            )
    elif tuple(index.shape) != tuple(src.shape[: dim + 1]):
        raise ValueError(
            f"{name}: index of shape {tuple(index.shape)} does not fit src of shape {tuple(src.shape)} with "
            f"dim={dim}: expected a 1-D index of length {n} or an index of shape {tuple(src.shape[: dim + 1])} "
            "(src.shape[:dim + 1]); the index is broadcast over the trailing dimensions only"
        )
    index = index.long()
    if dim_size is not None:
        if isinstance(dim_size, Tensor) and dim_size.numel() == 1 and not dim_size.is_floating_point():
            dim_size = int(dim_size)
        if isinstance(dim_size, bool) or not isinstance(dim_size, (int, torch.SymInt)) or dim_size < 0:
            raise ValueError(f"{name}: dim_size must be a non-negative int or None, got {dim_size!r}")
    if index.numel() > 0 and not tracing():
        lo, hi = (int(v) for v in torch.aminmax(index))
        if lo < 0:
            raise IndexError(f"{name}: index contains negative values (min {lo}); indices must be >= 0")
        if dim_size is None:
            dim_size = hi + 1
        elif hi >= dim_size:
            raise IndexError(
                f"{name}: index contains {hi} but dim_size={dim_size}; dim_size must be at least "
                f"max(index) + 1 = {hi + 1}"
            )
    elif dim_size is None:
        dim_size = int(index.max()) + 1 if index.numel() > 0 else 0

    out_shape = (*src.shape[:dim], dim_size, *src.shape[dim + 1 :])
    if index.dim() == 1:
        return src, index, dim, dim_size, out_shape
    # Multi-dimensional index: fold the leading dimensions into the segment id.
    lead = math.prod(src.shape[:dim])
    offsets = torch.arange(lead, device=index.device, dtype=torch.int64) * dim_size
    idx = (index.reshape(lead, n) + offsets[:, None]).reshape(-1)
    src2 = src.reshape(lead * n, *src.shape[dim + 1 :])
    return src2, idx, 0, lead * dim_size, out_shape


def _segment_sum_sorted(src: Tensor, index: Tensor, dim: int, size: int) -> Tensor:
    """Deterministic segmented sum: stable sort by index, then ``segment_reduce`` (fixed order, no atomics;
    on the CPU the entries of each segment are added one after the other in their original order)."""
    x = src.movedim(dim, 0)
    out_shape = (size, *x.shape[1:])
    if x.shape[0] == 0 or size == 0:
        return src.new_zeros(out_shape).movedim(0, dim).contiguous()
    if not (x.is_floating_point() or x.is_complex()):
        # Integer sums are exact, so any order gives the same bits.
        return x.new_zeros(out_shape).index_add_(0, index, x).movedim(0, dim).contiguous()
    perm = torch.argsort(index, stable=True)
    xs = x.index_select(0, perm)
    lengths = torch.bincount(index, minlength=size)
    out = torch.segment_reduce(xs, "sum", lengths=lengths, axis=0, unsafe=True)
    return out.movedim(0, dim).contiguous()


class _SegmentSum(torch.autograd.Function):
    """Deterministic scatter-sum whose backward is a gather (and the gather's backward this sum), so
    derivatives of every order stay deterministic."""

    @staticmethod
    def forward(ctx, src: Tensor, index: Tensor, dim: int, size: int) -> Tensor:
        ctx.save_for_backward(index)
        ctx.dim = dim
        ctx.n = src.shape[dim]
        return _segment_sum_sorted(src, index, dim, size)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (index,) = ctx.saved_tensors
        return _Gather.apply(grad, index, ctx.dim, grad.shape[ctx.dim]), None, None, None


class _Gather(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, index: Tensor, dim: int, size: int) -> Tensor:
        ctx.save_for_backward(index)
        ctx.dim = dim
        ctx.size = size
        return x.index_select(dim, index)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (index,) = ctx.saved_tensors
        return _SegmentSum.apply(grad, index, ctx.dim, ctx.size), None, None, None


def _sum_flat(src2: Tensor, idx: Tensor, d: int, size: int, deterministic: bool) -> Tensor:
    if deterministic:
        return _SegmentSum.apply(src2, idx, d, size)
    shape = list(src2.shape)
    shape[d] = size
    return src2.new_zeros(shape).index_add(d, idx, src2)


def scatter_sum(
    src: Tensor,
    index: Tensor,
    dim: int = 0,
    dim_size: int | None = None,
    *,
    deterministic: bool = False,
) -> Tensor:
    """Sum the slices of ``src`` along ``dim`` into the output slots given by ``index``.

    ``out[..., i, ...] = sum over k with index[k] == i of src[..., k, ...]``; empty slots are 0.

    Args:
        src: ``(*lead, n, *trail)`` tensor (any dtype ``index_add`` supports; float32/float64 tested).
        index: int64 (or int32) ``(n,)``, or ``(*lead, n)`` (= ``src.shape[:dim + 1]``, one index per leading
            position); broadcast over the trailing dimensions. Values in ``[0, dim_size)``.
        dim: the dimension of ``src`` that is reduced.
        dim_size: number of output slots; default ``max(index) + 1`` (0 for an empty index).
        deterministic: if True, stable-sort by index and reduce each segment with ``torch.segment_reduce``
            (no atomics), so results are bitwise reproducible run to run, for all derivative orders too; on
            the CPU each segment is added in its original order (same bits as a sequential loop). Otherwise
            ``index_add`` (faster; atomic adds on CUDA, so the last bits may vary).

    Returns:
        ``(*lead, dim_size, *trail)``, same dtype and device as ``src``; differentiable to any order in ``src``.

    Raises:
        TypeError: non-tensor inputs or a non-integer index.
        ValueError: index length/shape not matching ``src``, negative ``dim_size``.
        IndexError: ``dim`` out of range, negative indices, or ``max(index) >= dim_size`` (range checks run
            in eager mode only, as they read the data).
    """
    src2, idx, d, size, out_shape = _prepare_scatter("scatter_sum", src, index, dim, dim_size)
    return _sum_flat(src2, idx, d, size, deterministic).reshape(out_shape)


def scatter_mean(
    src: Tensor,
    index: Tensor,
    dim: int = 0,
    dim_size: int | None = None,
    *,
    deterministic: bool = False,
) -> Tensor:
    """Mean of the slices of ``src`` that share an index; empty slots are 0.

    Same arguments, shapes and errors as :func:`scatter_sum`; ``src`` must be floating point. The result is
    ``scatter_sum(...) / max(count, 1)``.
    """
    if isinstance(src, Tensor) and not (src.is_floating_point() or src.is_complex()):
        raise TypeError(f"scatter_mean: src must be floating point, got {src.dtype}")
    src2, idx, d, size, out_shape = _prepare_scatter("scatter_mean", src, index, dim, dim_size)
    total = _sum_flat(src2, idx, d, size, deterministic)
    real = total.real.dtype if total.is_complex() else total.dtype
    count = torch.bincount(idx, minlength=size).clamp_(min=1).to(real)
    count = count.view([size if k == d else 1 for k in range(total.dim())])
    return (total / count).reshape(out_shape)


def scatter_max(
    src: Tensor,
    index: Tensor,
    dim: int = 0,
    dim_size: int | None = None,
) -> Tensor:
    """Maximum of the slices of ``src`` that share an index (values only, no argmax); empty slots are 0.

    Same arguments, shapes and errors as :func:`scatter_sum`. Built on ``scatter_reduce(reduce='amax',
    include_self=False)``: deterministic; NaN propagates; the gradient of a slot is shared equally among
    the entries that tie for its maximum (torch's rule), so it is differentiable to any order almost
    everywhere.
    """
    if isinstance(src, Tensor) and src.is_complex():
        raise TypeError("scatter_max: src must be real")
    src2, idx, d, size, out_shape = _prepare_scatter("scatter_max", src, index, dim, dim_size)
    shape = list(src2.shape)
    shape[d] = size
    idx_b = idx.view([-1 if k == d else 1 for k in range(src2.dim())]).expand_as(src2)
    out = src2.new_zeros(shape).scatter_reduce(d, idx_b, src2, "amax", include_self=False)
    return out.reshape(out_shape)


def scatter(
    src: Tensor,
    index: Tensor,
    dim: int = 0,
    dim_size: int | None = None,
    reduce: str = "sum",
) -> Tensor:
    """``torch_scatter.scatter``-style dispatcher: ``reduce`` is ``'sum'`` (alias ``'add'``), ``'mean'`` or
    ``'max'`` (values only). See :func:`scatter_sum`."""
    if reduce in ("sum", "add"):
        return scatter_sum(src, index, dim, dim_size)
    if reduce == "mean":
        return scatter_mean(src, index, dim, dim_size)
    if reduce == "max":
        return scatter_max(src, index, dim, dim_size)
    raise ValueError(f"scatter: reduce must be 'sum', 'add', 'mean' or 'max', got {reduce!r}")


# ----------------------------------------------------------------------------------------------------
# input validation for graph construction
# ----------------------------------------------------------------------------------------------------


def _check_positions(name: str, pos) -> Tensor:
    if not isinstance(pos, Tensor):
        raise TypeError(f"{name}: positions must be a torch.Tensor, got {type(pos).__name__}")
    if not pos.is_floating_point():
        raise TypeError(f"{name}: positions must be floating point, got {pos.dtype}")
    if pos.dim() != 2 or pos.shape[1] != 3:
        raise ValueError(f"{name}: positions must have shape (N, 3), got {tuple(pos.shape)}")
    if pos.numel() > 0 and not bool(torch.isfinite(pos).all()):
        raise ValueError(f"{name}: positions contain NaN or inf")
    return pos


def _check_cutoff(name: str, what: str, r) -> float:
    if isinstance(r, Tensor):
        if r.numel() != 1:
            raise ValueError(f"{name}: {what} must be a scalar, got a tensor of shape {tuple(r.shape)}")
        r = r.item()
    if isinstance(r, bool) or not isinstance(r, (int, float)):
        raise TypeError(f"{name}: {what} must be a number, got {type(r).__name__}")
    r = float(r)
    if not math.isfinite(r) or r <= 0.0:
        raise ValueError(f"{name}: {what} must be a positive finite number, got {r}")
    return r


def _check_method(name: str, method: str) -> str:
    if method not in ("auto", "torch", "vesin"):
        raise ValueError(f"{name}: method must be 'auto', 'torch' or 'vesin', got {method!r}")
    return method


def _has_vesin() -> bool:
    try:
        import vesin  # noqa: F401
    except ImportError:
        return False
    return True


def _import_vesin():
    try:
        import vesin
    except ImportError as exc:
        raise ImportError(
            "method='vesin' needs the optional package 'vesin' (pip install vesin); "
            "use method='torch' for the pure-torch brute force"
        ) from exc
    return vesin


def _resolve_method(method: str, n_largest: int, threshold: int) -> str:
    if method != "auto":
        if method == "vesin":
            _import_vesin()
        return method
    return "vesin" if n_largest >= threshold and _has_vesin() else "torch"


def _lexsort_edges(src: Tensor, dst: Tensor, n: int, shifts: Tensor | None = None) -> Tensor:
    """Permutation sorting edges by (dst, src, shift_x, shift_y, shift_z)."""
    perm = None
    if shifts is not None and shifts.shape[0] > 0:
        b = int(shifts.abs().max())
        w = 2 * b + 1
        s = shifts + b
        key = (s[:, 0] * w + s[:, 1]) * w + s[:, 2]
        perm = torch.argsort(key, stable=True)
    key = dst * max(n, 1) + src
    if perm is None:
        return torch.argsort(key, stable=True)
    return perm[torch.argsort(key[perm], stable=True)]


# ----------------------------------------------------------------------------------------------------
# radius graph (non-periodic)
# ----------------------------------------------------------------------------------------------------


def _radius_torch(x: Tensor, r2: float, starts: Tensor, sizes: Tensor, seg: Tensor, loop: bool):
    """Brute force within structures. ``x``: (N, 3) float64 sorted by structure; ``seg[i]``: structure of
    atom i; ``starts``/``sizes``: per-structure ranges. Returns (src, dst) sorted by (dst, src)."""
    n = x.shape[0]
    dev = x.device
    xt = x.t().contiguous()  # (3, N): per-component arithmetic is much faster than reducing a size-3 axis
    srcs, dsts = [], []
    if sizes.shape[0] == 1:  # one structure: dense blocks of receivers x all senders
        rows_per_chunk = max(1, _PAIR_BUDGET // max(n, 1))
        for r0 in range(0, n, rows_per_chunk):
            r1 = min(n, r0 + rows_per_chunk)
            d2 = (xt[0, r0:r1, None] - xt[0, None, :]).square_()
            d2 += (xt[1, r0:r1, None] - xt[1, None, :]).square_()
            d2 += (xt[2, r0:r1, None] - xt[2, None, :]).square_()
            hit = d2 < r2
            if not loop:
                ar = torch.arange(r0, r1, device=dev)
                hit[ar - r0, ar] = False
            rr, cc = torch.nonzero(hit, as_tuple=True)
            srcs.append(cc)
            dsts.append(rr + r0)
    else:  # many structures: enumerate the candidate pairs of each receiver's own structure
        cand = sizes[seg]
        cum_list = torch.cumsum(cand, 0).tolist()
        r0 = 0
        done = 0
        while r0 < n:
            # largest r1 with sum(cand[r0:r1]) <= budget (at least one row)
            r1 = max(r0 + 1, bisect.bisect_right(cum_list, done + _PAIR_BUDGET, r0))
            cnt = cand[r0:r1]
            total = int(cum_list[r1 - 1] - done)
            rows = torch.repeat_interleave(torch.arange(r0, r1, device=dev), cnt, output_size=total)
            first = torch.repeat_interleave(torch.cumsum(cnt, 0) - cnt, cnt, output_size=total)
            cols = starts[seg[rows]] + (torch.arange(total, device=dev) - first)
            d2 = (xt[0, rows] - xt[0, cols]).square_()
            d2 += (xt[1, rows] - xt[1, cols]).square_()
            d2 += (xt[2, rows] - xt[2, cols]).square_()
            hit = d2 < r2
            if not loop:
                hit &= rows != cols
            srcs.append(cols[hit])
            dsts.append(rows[hit])
            done = cum_list[r1 - 1]
            r0 = r1
    if not srcs:
        e = torch.zeros(0, dtype=torch.int64, device=dev)
        return e, e
    return torch.cat(srcs), torch.cat(dsts)


def _radius_vesin(x: Tensor, r: float, starts: Tensor, sizes: Tensor, loop: bool):
    vesin = _import_vesin()
    xn = x.detach().cpu().numpy()
    nl = vesin.NeighborList(cutoff=r, full_list=True)
    box = torch.zeros(3, 3, dtype=torch.float64).numpy()
    srcs, dsts = [], []
    for a, m in zip(starts.tolist(), sizes.tolist()):
        if m < 2:
            continue
        i, j = nl.compute(points=xn[a : a + m], box=box, periodic=False, quantities="ij", copy=True)
        srcs.append(torch.from_numpy(i.astype("int64")) + a)
        dsts.append(torch.from_numpy(j.astype("int64")) + a)
    if loop:
        ar = torch.arange(x.shape[0])
        srcs.append(ar)
        dsts.append(ar)
    if not srcs:
        e = torch.zeros(0, dtype=torch.int64, device=x.device)
        return e, e
    src = torch.cat(srcs)
    dst = torch.cat(dsts)
    perm = _lexsort_edges(src, dst, x.shape[0])
    return src[perm].to(x.device), dst[perm].to(x.device)


def _keep_nearest(src: Tensor, dst: Tensor, d2: Tensor, n: int, k: int):
    """Keep, for each receiver, the ``k`` edges of smallest ``d2``; ties go to the smaller sender index.
    Input and output sorted by (dst, src)."""
    order = torch.argsort(d2, stable=True)
    order = order[torch.argsort(dst[order], stable=True)]  # by dst, then d2, then src
    counts = torch.bincount(dst, minlength=n)
    seg_start = torch.cumsum(counts, 0) - counts
    rank = torch.arange(dst.shape[0], device=dst.device) - seg_start[dst[order]]
    keep = torch.sort(order[rank < k]).values
    return src[keep], dst[keep]


def radius_graph(
    pos: Tensor,
    r_max: float,
    batch: Tensor | None = None,
    max_num_neighbors: int | None = None,
    loop: bool = False,
    *,
    method: str = "auto",
    allow_large: bool = False,
) -> tuple[Tensor, Tensor]:
    """All pairs of points closer than ``r_max`` (no periodic boundaries).

    Args:
        pos: ``(N, 3)`` float positions (finite). Gradients do not flow through the graph (integer data);
            compute ``pos[edge_dst] - pos[edge_src]`` afterwards for differentiable edge vectors.
        r_max: cutoff > 0. An edge exists when ``|pos[dst] - pos[src]| < r_max`` (strict), decided as
            ``|d|^2 < r_max^2`` in float64 for every input dtype and method.
        batch: optional ``(N,)`` integer structure label per point; points with different labels are never
            connected (labels need not be sorted or contiguous).
        max_num_neighbors: optional int >= 1: keep at most this many incoming edges per receiver (``dst``),
            the nearest ones; among equal distances the smaller ``src`` wins. With ``loop=True`` the self
            edge counts (it is always the nearest). Default None: no limit (unlike torch_cluster's 32).
        loop: include the self edges ``(i, i)``.
        method: ``'torch'`` (chunked brute force within each structure, O(sum n_b^2), any device),
            ``'vesin'`` (cell lists on the CPU, one call per structure; raises ImportError without vesin),
            or ``'auto'``: vesin when installed and the largest structure has at least
            ``RADIUS_GRAPH_VESIN_MIN_ATOMS`` (1024) points and a diameter over twice ``r_max``, else torch.
            Both give identical graphs. The vesin path runs on the CPU (inputs on a GPU are copied to the
            host and the graph back).
        allow_large: graphs estimated at more than ``MAX_EDGES`` (1e8) edges raise ``TooLarge`` (with the
            estimate) unless this is True.

    Returns:
        ``(edge_src, edge_dst)``: int64 ``(E,)`` each on ``pos.device``, sorted by ``edge_dst`` then
        ``edge_src``. Every pair appears in both directions (before the ``max_num_neighbors`` pruning).
    """
    name = "radius_graph"
    pos = _check_positions(name, pos)
    r = _check_cutoff(name, "r_max", r_max)
    _check_method(name, method)
    if max_num_neighbors is not None and (
        isinstance(max_num_neighbors, bool) or not isinstance(max_num_neighbors, int) or max_num_neighbors < 1
    ):
        raise ValueError(f"{name}: max_num_neighbors must be None or an int >= 1, got {max_num_neighbors!r}")
    n = pos.shape[0]
    dev = pos.device
    x = pos.detach().to(torch.float64)

    perm = None
    if batch is None:
        starts = torch.zeros(1, dtype=torch.int64, device=dev)
        sizes = torch.full((1,), n, dtype=torch.int64, device=dev)
        seg = torch.zeros(n, dtype=torch.int64, device=dev)
    else:
        if not isinstance(batch, Tensor) or batch.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
            raise TypeError(f"{name}: batch must be an integer tensor, got {getattr(batch, 'dtype', type(batch))}")
        if batch.dim() != 1 or batch.shape[0] != n:
            raise ValueError(f"{name}: batch must have shape ({n},) to match pos, got {tuple(batch.shape)}")
        if batch.device != dev:
            raise ValueError(f"{name}: batch is on {batch.device} but pos is on {dev}")
        b = batch.long()
        if n > 1 and not bool((b[1:] >= b[:-1]).all()):
            perm = torch.argsort(b, stable=True)
            b = b[perm]
            x = x[perm]
        _, sizes = torch.unique_consecutive(b, return_counts=True)
        starts = torch.cumsum(sizes, 0) - sizes
        seg = torch.repeat_interleave(torch.arange(sizes.shape[0], device=dev), sizes, output_size=n)

    n_largest = int(sizes.max()) if n > 0 else 0
    extent = _check_radius_size(name, x, sizes, r, allow_large) if n > 0 else 0.0
    chosen = _resolve_method(method, n_largest, RADIUS_GRAPH_VESIN_MIN_ATOMS)
    if method == "auto" and r >= RADIUS_GRAPH_BRUTE_FORCE_EXTENT * extent:
        chosen = "torch"
    if n == 0:
        src = dst = torch.zeros(0, dtype=torch.int64, device=dev)
    elif chosen == "torch":
        src, dst = _radius_torch(x, r * r, starts, sizes, seg, loop)
    else:
        src, dst = _radius_vesin(x, r, starts, sizes, loop)

    if perm is not None and src.numel() > 0:
        src, dst = perm[src], perm[dst]
        order = _lexsort_edges(src, dst, n)
        src, dst = src[order], dst[order]
    if max_num_neighbors is not None and src.numel() > 0:
        xo = pos.detach().to(torch.float64)
        d2 = (xo[dst] - xo[src]).square().sum(-1)
        src, dst = _keep_nearest(src, dst, d2, n, max_num_neighbors)
    return src, dst


# ----------------------------------------------------------------------------------------------------
# periodic neighbour list
# ----------------------------------------------------------------------------------------------------


def _check_pbc(name: str, pbc) -> tuple[bool, bool, bool]:
    if isinstance(pbc, Tensor):
        if pbc.dtype != torch.bool:
            raise TypeError(f"{name}: pbc must be a bool or 3 bools, got a tensor of dtype {pbc.dtype}")
        pbc = pbc.tolist()
    elif hasattr(pbc, "tolist") and not isinstance(pbc, (bool, int)):  # numpy bool / array
        pbc = pbc.tolist()
    if isinstance(pbc, bool):
        return (pbc, pbc, pbc)
    if isinstance(pbc, (list, tuple)) and len(pbc) == 3 and all(isinstance(p, bool) for p in pbc):
        return (pbc[0], pbc[1], pbc[2])
    raise TypeError(f"{name}: pbc must be a bool or a sequence of 3 bools, got {pbc!r}")


def _check_cell(name: str, cell, pbc: tuple[bool, bool, bool]) -> Tensor:
    """Return the cell as a detached float64 CPU tensor (3, 3) after checks."""
    if cell is None:
        if any(pbc):
            raise ValueError(f"{name}: a cell is required when pbc is True along any axis")
        return torch.zeros(3, 3, dtype=torch.float64)
    c = cell.detach() if isinstance(cell, Tensor) else torch.as_tensor(np.asarray(cell))  # e.g. an ase Cell
    if c.is_complex() or c.dtype == torch.bool:
        raise TypeError(f"{name}: cell must be real, got {c.dtype}")
    c = c.to(device="cpu", dtype=torch.float64)
    if tuple(c.shape) != (3, 3):
        raise ValueError(f"{name}: cell must have shape (3, 3) (lattice vectors as rows), got {tuple(c.shape)}")
    if not bool(torch.isfinite(c).all()):
        raise ValueError(f"{name}: cell contains NaN or inf")
    if any(pbc):
        full = _complete_cell(c, pbc)
        norms = full.norm(dim=1)
        det = torch.linalg.det(full).abs()
        if bool((norms == 0).any()) or float(det) <= 1e-10 * float(norms.prod()):
            raise ValueError(
                f"{name}: the cell is singular along its periodic directions (pbc={pbc}); "
                "the periodic lattice vectors must be linearly independent"
            )
    return c


def _complete_cell(c: Tensor, pbc: tuple[bool, bool, bool]) -> Tensor:
    """Replace the non-periodic rows of ``c`` by unit vectors orthogonal to the periodic rows (and to each
    other), so the result is a basis whose periodic rows are the lattice vectors."""
    per = [k for k in range(3) if pbc[k]]
    rows = [c[k] for k in per]
    full = c.clone()
    non = [k for k in range(3) if not pbc[k]]
    if not non:
        return full
    if len(per) == 2:
        v = torch.linalg.cross(rows[0], rows[1])
        full[non[0]] = v / v.norm().clamp_min(1e-300)
        return full
    if len(per) == 1:
        a = rows[0] / rows[0].norm().clamp_min(1e-300)
        trial = torch.eye(3, dtype=c.dtype)[int(torch.argmin(a.abs()))]
        u = torch.linalg.cross(a, trial)
        u = u / u.norm()
        w = torch.linalg.cross(a, u)
        full[non[0]], full[non[1]] = u, w
        return full
    return torch.eye(3, dtype=c.dtype)


def _image_reps(full: Tensor, pbc, cutoff: float) -> list[int]:
    """Images needed on each side along each periodic axis: the cutoff over the cell's perpendicular width."""
    vol = float(torch.linalg.det(full).abs())
    reps = []
    for a in range(3):
        if pbc[a]:
            h = vol / float(torch.linalg.cross(full[(a + 1) % 3], full[(a + 2) % 3]).norm())
            reps.append(math.floor(cutoff / h) + 1)
        else:
            reps.append(0)
    return reps


def _check_periodic_size(name: str, n: int, cell: Tensor, pbc, cutoff: float, allow_large: bool) -> None:
    """Estimated edges: the density times the cutoff ball's volume per atom when all axes are periodic,
    else at most every atom times every image of every atom."""
    if not any(pbc):
        return
    full = _complete_cell(cell, pbc)
    images = math.prod(2 * m + 1 for m in _image_reps(full, pbc, cutoff))
    estimate = float(n) * n * images
    if all(pbc):
        estimate = min(estimate, n * n / float(torch.linalg.det(full).abs()) * 4 / 3 * math.pi * cutoff**3)
    check_work(name, estimate, MAX_EDGES,
               f"about {estimate:.3g} edges ({images:.3g} periodic images of a cell of {n} atoms within the cutoff "
               f"{cutoff:g})", "allow_large=True", allow_large)  # fmt: skip


def _check_radius_size(name: str, x: Tensor, sizes: Tensor, r: float, allow_large: bool) -> float:
    """The largest structure's extent (its bounding box's diagonal); raises ``TooLarge`` if the graph is estimated
    to exceed ``MAX_EDGES`` edges: per structure, n^2 times the share of its bounding box a cutoff ball covers."""
    lo = torch.segment_reduce(x, "min", lengths=sizes, axis=0)
    hi = torch.segment_reduce(x, "max", lengths=sizes, axis=0)
    extent = hi - lo  # (structures, 3)
    share = (4 / 3 * math.pi * r**3 / extent.clamp_min(r).prod(-1)).clamp_max(1.0)
    estimate = float((sizes.to(torch.float64) ** 2 * share).sum())
    check_work(name, estimate, MAX_EDGES, f"about {estimate:.3g} edges (cutoff {r:g})", "allow_large=True", allow_large)
    return float(extent.norm(dim=-1).max())


def _nl_torch(x: Tensor, cell: Tensor, pbc, cutoff: float, self_interaction: bool):
    """Brute force over periodic images. ``x``: (N, 3) float64 CPU/any device; ``cell`` float64 CPU."""
    n = x.shape[0]
    dev = x.device
    full = _complete_cell(cell, pbc)
    if any(pbc):
        inv = torch.linalg.inv(full)
        frac = x @ inv.to(dev)
        mask = torch.tensor(pbc, device=dev)
        k = torch.where(mask, torch.floor(frac), torch.zeros_like(frac))
        xw = x - k @ full.to(dev)
        k = k.to(torch.int64)
        reps = _image_reps(full, pbc, cutoff)
    else:
        xw = x
        k = torch.zeros(n, 3, dtype=torch.int64, device=dev)
        reps = [0, 0, 0]
    shifts = torch.tensor(
        list(itertools.product(*(range(-m, m + 1) for m in reps))), dtype=torch.int64, device=dev
    )  # (M, 3), lexicographic
    n_img = shifts.shape[0]
    zero_img = n_img // 2  # index of (0, 0, 0)
    sv = shifts.to(torch.float64) @ cell.to(dev)  # (M, 3)
    # images of the senders: pos_w[src] - shift @ cell, so that edge_vec = pos_w[dst] - image
    img = (xw[:, None, :] - sv[None, :, :]).reshape(n * n_img, 3).t().contiguous()  # (3, N*M)
    xt = xw.t().contiguous()
    r2 = cutoff * cutoff
    rows_per_chunk = max(1, _PAIR_BUDGET // max(1, n * n_img))
    srcs, dsts, shs = [], [], []
    for r0 in range(0, n, rows_per_chunk):
        r1 = min(n, r0 + rows_per_chunk)
        d2 = (xt[0, r0:r1, None] - img[0, None, :]).square_()  # (R, N*M)
        d2 += (xt[1, r0:r1, None] - img[1, None, :]).square_()
        d2 += (xt[2, r0:r1, None] - img[2, None, :]).square_()
        hit = d2 < r2
        if not self_interaction:
            ar = torch.arange(r0, r1, device=dev)
            hit[ar - r0, ar * n_img + zero_img] = False
        rr, cc = torch.nonzero(hit, as_tuple=True)
        srcs.append(torch.div(cc, n_img, rounding_mode="floor"))
        dsts.append(rr + r0)
        shs.append(cc % n_img)
    if not srcs:
        e = torch.zeros(0, dtype=torch.int64, device=dev)
        return e, e, torch.zeros(0, 3, dtype=torch.int64, device=dev)
    src, dst, m = torch.cat(srcs), torch.cat(dsts), torch.cat(shs)
    # undo the wrapping: edge_vec = pos[dst] - pos[src] + (s_w + k[src] - k[dst]) @ cell
    sh = shifts[m] + k[src] - k[dst]
    return src, dst, sh


def _nl_vesin(x: Tensor, cell: Tensor, pbc, cutoff: float, self_interaction: bool):
    vesin = _import_vesin()
    n = x.shape[0]
    nl = vesin.NeighborList(cutoff=cutoff, full_list=True)
    i, j, s = nl.compute(
        points=x.detach().cpu().numpy(),
        box=cell.numpy(),
        periodic=list(pbc),
        quantities="ijS",
        copy=True,
    )
    src = torch.from_numpy(i.astype("int64"))
    dst = torch.from_numpy(j.astype("int64"))
    sh = torch.from_numpy(s.astype("int64")).reshape(-1, 3)
    if self_interaction:
        ar = torch.arange(n)
        src, dst = torch.cat([src, ar]), torch.cat([dst, ar])
        sh = torch.cat([sh, torch.zeros(n, 3, dtype=torch.int64)])
    perm = _lexsort_edges(src, dst, n, sh)
    return src[perm].to(x.device), dst[perm].to(x.device), sh[perm].to(x.device)


def neighbor_list(
    positions: Tensor,
    cell: Tensor | Sequence[Sequence[float]] | None,
    pbc: bool | Sequence[bool] | Tensor,
    cutoff: float,
    method: str = "auto",
    self_interaction: bool = False,
    *,
    allow_large: bool = False,
) -> tuple[Tensor, Tensor, Tensor]:
    """Periodic neighbour list: all (sender, receiver, lattice translation) triples within ``cutoff``.

    An edge ``(src, dst, S)`` exists when ``|pos[dst] - pos[src] + S @ cell| < cutoff`` (strict, decided in
    float64), with ``S`` an integer vector that is 0 along non-periodic axes. Positions need not be wrapped
    into the cell. When the cutoff exceeds the cell size an atom meets several images of the same
    neighbour (several edges with different ``S``), including images of itself.

    Args:
        positions: ``(N, 3)`` float positions (finite).
        cell: ``(3, 3)`` lattice vectors as rows (ASE convention); may be None, or singular along
            non-periodic axes (e.g. a zero row), when the corresponding ``pbc`` entries are False.
        pbc: a bool or 3 bools (python, numpy, or a bool tensor): periodicity along each cell vector.
        cutoff: > 0.
        method: ``'torch'`` (brute force over the needed periodic images, counted from the cell's
            perpendicular widths; O(N^2 * images)), ``'vesin'`` (cell lists; CPU; raises ImportError when
            vesin is missing), or ``'auto'``: vesin if installed and ``N >= NEIGHBOR_LIST_VESIN_MIN_ATOMS``
            (128), else torch. Both return identical tensors. The vesin path runs on the CPU (GPU inputs
            are copied to the host and the result back).
        self_interaction: include the self edges ``(i, i, 0)`` (images of ``i`` itself are always included).
        allow_large: lists estimated at more than ``MAX_EDGES`` (1e8) edges, e.g. a tiny cell with a large
            cutoff, raise ``TooLarge`` (with the estimate) unless this is True.

    Returns:
        ``(edge_src, edge_dst, shifts)``: int64 ``(E,)``, ``(E,)``, ``(E, 3)`` on ``positions.device``, sorted
        by ``edge_dst``, then ``edge_src``, then ``shifts`` (lexicographically). The list is full: ``(i, j, S)``
        is present iff ``(j, i, -S)`` is. ASE's ``neighbor_list('ijS', atoms, cutoff)`` returns the same set
        with ``(i, j, S) = (edge_src, edge_dst, shifts)``. Use :func:`edge_vectors` for differentiable
        vectors.
    """
    name = "neighbor_list"
    pos = _check_positions(name, positions)
    pbc_t = _check_pbc(name, pbc)
    c = _check_cell(name, cell, pbc_t)
    r = _check_cutoff(name, "cutoff", cutoff)
    _check_method(name, method)
    n = pos.shape[0]
    _check_periodic_size(name, n, c, pbc_t, r, allow_large)
    chosen = _resolve_method(method, n, NEIGHBOR_LIST_VESIN_MIN_ATOMS)
    x = pos.detach().to(torch.float64)
    if n == 0:
        e = torch.zeros(0, dtype=torch.int64, device=pos.device)
        return e, e, torch.zeros(0, 3, dtype=torch.int64, device=pos.device)
    if chosen == "torch":
        return _nl_torch(x, c, pbc_t, r, bool(self_interaction))
    return _nl_vesin(x, c, pbc_t, r, bool(self_interaction))


def edge_vectors(
    positions: Tensor,
    cell: Tensor | None,
    edge_src: Tensor,
    edge_dst: Tensor,
    shifts: Tensor | None = None,
) -> Tensor:
    """Differentiable edge vectors ``positions[edge_dst] - positions[edge_src] + shifts @ cell``.

    Args:
        positions: ``(N, 3)`` float.
        cell: ``(3, 3)`` lattice vectors as rows, same dtype (or None for non-periodic graphs).
        edge_src, edge_dst: int64 ``(E,)``.
        shifts: integer ``(E, 3)`` lattice translations (or None).

    Returns:
        ``(E, 3)`` in ``positions``' dtype, differentiable to any order w.r.t. ``positions`` and ``cell``
        (for stress, apply a strain to both before calling).
    """
    name = "edge_vectors"
    if not isinstance(positions, Tensor) or not positions.is_floating_point():
        raise TypeError(f"{name}: positions must be a floating-point tensor")
    if positions.dim() != 2 or positions.shape[1] != 3:
        raise ValueError(f"{name}: positions must have shape (N, 3), got {tuple(positions.shape)}")
    for nm, t in (("edge_src", edge_src), ("edge_dst", edge_dst)):
        if not isinstance(t, Tensor) or t.dtype not in (torch.int64, torch.int32) or t.dim() != 1:
            raise TypeError(f"{name}: {nm} must be a 1-D int64 tensor")
    if edge_src.shape != edge_dst.shape:
        raise ValueError(f"{name}: edge_src {tuple(edge_src.shape)} and edge_dst {tuple(edge_dst.shape)} differ")
    vec = positions.index_select(0, edge_dst.long()) - positions.index_select(0, edge_src.long())
    if shifts is None or cell is None:
        if shifts is not None and cell is None and shifts.numel() and bool(shifts.any()):
            raise ValueError(f"{name}: non-zero shifts need a cell")
        return vec
    if not isinstance(cell, Tensor):
        cell = torch.as_tensor(cell, dtype=positions.dtype, device=positions.device)
    if tuple(cell.shape) != (3, 3):
        raise ValueError(f"{name}: cell must have shape (3, 3), got {tuple(cell.shape)}")
    if not isinstance(shifts, Tensor) or shifts.dim() != 2 or shifts.shape != (edge_src.shape[0], 3):
        got = tuple(getattr(shifts, "shape", ()))
        raise ValueError(f"{name}: shifts must have shape ({edge_src.shape[0]}, 3), got {got}")
    return vec + shifts.to(vec.dtype) @ cell.to(vec.dtype)
