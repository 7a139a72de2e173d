"""Benchmark ``sparse``: the sparse-accumulation op on the seed's shapes, float32.

One real Clebsch-Gordan path ``C^{(L, L, L)}`` applied to ``X1, X2: (rows, 2L+1)`` (L = 5 and 8, 2M rows;
200k with ``--quick``): ``out[:, mu[k]] += X1[:, m1[k]] * X2[:, m2[k]] * C[k]``. Providers:

* ``fastso3``: ``fastso3.ops.sparse_accumulate`` with the compiled CPU backend;
* ``index_add``: the reference backend (gather, multiply, ``index_add_``), the speed-up reference;
* ``dense``: the outer product ``X1 (x) X2`` times the dense ``((2L+1)^2, 2L+1)`` CG matrix;
* ``torch.sparse``: the same product with the CG matrix as a sparse COO tensor;
* ``loop``: a Python loop over the non-zero entries (the seed's pseudocode; ``--quick`` only, where it
  already is 50-100x slower than fastso3: at 2M rows it would take minutes per case).

Measurements: ``forward`` and ``forward+backward`` (gradients w.r.t. X1 and X2).

Run: ``fastso3 bench sparse [--quick]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Benchmark, Case, main

MEASURES = ("forward", "forward+backward")


def _problem(l: int, rows: int):
    from fastso3.core.cg import wigner_3j, wigner_3j_sparse

    sp = wigner_3j_sparse(l, l, l)
    gen = torch.Generator().manual_seed(0)
    x1 = torch.randn(rows, 2 * l + 1, generator=gen)
    x2 = torch.randn(rows, 2 * l + 1, generator=gen)
    idx = {k: torch.from_numpy(getattr(sp, k).copy()) for k in ("i1", "i2", "i3")}
    coef = torch.from_numpy(sp.values.copy()).float()
    dense = torch.from_numpy(wigner_3j(l, l, l).copy()).float().reshape((2 * l + 1) ** 2, 2 * l + 1)
    return x1, x2, idx, coef, dense


def _fn(provider: str, l: int, idx, coef, dense):
    from fastso3.ops import sparse_accumulate

    d = 2 * l + 1
    if provider in ("fastso3", "index_add"):
        backend = "cpu" if provider == "fastso3" else "reference"
        return lambda a, b: sparse_accumulate(a, b, idx["i3"], d, idx["i1"], idx["i2"], coef, backend=backend)
    if provider == "dense":
        return lambda a, b: (a.unsqueeze(2) * b.unsqueeze(1)).reshape(-1, d * d) @ dense
    if provider == "torch.sparse":
        sparse_t = dense.t().to_sparse()
        return lambda a, b: torch.sparse.mm(sparse_t, (a.unsqueeze(2) * b.unsqueeze(1)).reshape(-1, d * d).t()).t()

    def loop(a, b):
        out = a.new_zeros(a.shape[0], d)
        for k in range(len(coef)):
            out[:, idx["i3"][k]] += a[:, idx["i1"][k]] * b[:, idx["i2"][k]] * coef[k]
        return out

    return loop


def _factory(provider: str, l: int, rows: int, measure: str):
    def factory():
        x1, x2, idx, coef, dense = _problem(l, rows)
        fn = _fn(provider, l, idx, coef, dense)
        if measure == "forward":
            return lambda: fn(x1, x2)
        a, b = x1.clone().requires_grad_(), x2.clone().requires_grad_()
        g = torch.randn(rows, 2 * l + 1, generator=torch.Generator().manual_seed(1))

        def run():
            a.grad = b.grad = None
            fn(a, b).backward(g)
            return a.grad

        run()
        return run

    return factory


def _checks(rows: int):
    def checks():
        out = {}
        for l in (5, 8):
            x1, x2, idx, coef, dense = _problem(l, min(rows, 1000))
            ref = _fn("index_add", l, idx, coef, dense)(x1, x2)
            for provider in ("fastso3", "dense", "torch.sparse", "loop"):
                out[f"max_abs_diff_{provider}_L{l}"] = float((_fn(provider, l, idx, coef, dense)(x1, x2) - ref).abs().max())
        return out

    return checks


def make_benchmark(quick: bool = False) -> Benchmark:
    rows = 200_000 if quick else 2_000_000
    providers = ("fastso3", "index_add", "dense", "torch.sparse") + (("loop",) if quick else ())
    cases = [
        Case(
            name=f"{measure} L={l}",
            params={"measure": measure, "L": l, "rows": rows},
            providers={p: _factory(p, l, rows, measure) for p in providers},
        )
        for measure in MEASURES
        for l in (5, 8)
    ]
    timing = (
        {"warmup": 1, "min_repeats": 3, "max_repeats": 5, "min_time": 0.05, "block_time": 0.005}
        if quick
        # at 2M rows one dense or torch.sparse call takes seconds: few blocks, each one call
        else {"warmup": 1, "min_repeats": 3, "max_repeats": 7, "min_time": 0.3, "block_time": 0.02}
    )
    return Benchmark(
        name="sparse",
        description=f"sparse accumulation of one CG path C^(L,L,L), {rows} rows, float32; forward and forward+backward",
        cases=cases,
        reference="index_add",
        ratios=[("dense/fastso3", "dense", "fastso3"), ("index_add/fastso3", "index_add", "fastso3")],
        settings={"rows": rows, "dtype": "float32", "quick": quick},
        plot_x="L",
        plot_panels="measure",
        checks=_checks(rows),
        timing=timing,
    )


if __name__ == "__main__":
    sys.exit(main(make_benchmark))
