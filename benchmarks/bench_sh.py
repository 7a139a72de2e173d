"""Benchmark ``sh``: real spherical harmonics of 0..l_max on random points, float32.

Providers (same points for all):

* ``fastso3``: ``fastso3.o3.spherical_harmonics`` with the default backend;
* ``fastso3-reference``: the same with ``backend='reference'`` (the pure-torch oracle);
* ``e3nn``: ``e3nn.o3.spherical_harmonics`` (eager), the reference of the speed-up column;
* ``sphericart``: ``sphericart.SphericalHarmonics(l_max)`` (numpy interface) on the float32 array. Its
  basis and normalization differ from e3nn's (same cost class), so only its time is comparable.

Measurements: ``forward`` (values) and ``forward+backward`` (values and the gradient with respect to the
points: ``y.backward(g)`` with a fixed random ``g`` for torch providers, ``compute_with_gradients`` for
sphericart). All calls use ``normalize=True`` and ``normalization='component'``.

Run: ``fastso3 bench sh [--quick]`` or ``python benchmarks/bench_sh.py [--quick]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Benchmark, Case, Unavailable, main

NORMALIZATION = "component"
MEASURES = ("forward", "forward+backward")


def _fastso3_sh():
    from fastso3.o3 import spherical_harmonics

    return spherical_harmonics


def _e3nn_sh():
    try:
        from e3nn import o3
    except ImportError as exc:
        raise Unavailable("e3nn is not installed") from exc
    return o3.spherical_harmonics


def _torch_factory(get_sh, lmax: int, points: torch.Tensor, measure: str, **kwargs):
    """A factory timing ``sh(list(range(lmax+1)), x, True, normalization=...)`` (and its backward)."""

    def factory():
        sh = get_sh()
        ls = list(range(lmax + 1))

        def forward(x):
            return sh(ls, x, True, normalization=NORMALIZATION, **kwargs)

        if measure == "forward":
            x = points.clone()

            def run():
                return forward(x)

        else:
            x = points.clone().requires_grad_(True)
            gen = torch.Generator().manual_seed(1)
            g = torch.randn(x.shape[0], (lmax + 1) ** 2, generator=gen, dtype=x.dtype)

            def run():
                x.grad = None
                forward(x).backward(g)
                return x.grad

        out = run()  # fail in set-up, not in the timed loop
        if out is None or out.shape[0] != points.shape[0]:
            raise RuntimeError(f"unexpected output {None if out is None else tuple(out.shape)}")
        return run

    return factory


def _sphericart_factory(lmax: int, points: torch.Tensor, measure: str):
    def factory():
        try:
            import sphericart
        except ImportError as exc:
            raise Unavailable("sphericart is not installed") from exc
        calc = sphericart.SphericalHarmonics(lmax)
        xyz = points.numpy().copy()  # float32, C-contiguous
        run = (lambda: calc.compute(xyz)) if measure == "forward" else (lambda: calc.compute_with_gradients(xyz))
        run()
        return run

    return factory


def _checks(lmax: int):
    """Cross-check fastso3 (both backends) against e3nn before timing anything."""

    def checks():
        x = torch.randn(1000, 3, generator=torch.Generator().manual_seed(2))
        ls = list(range(lmax + 1))
        e3nn_y = _e3nn_sh()(ls, x, True, normalization=NORMALIZATION)
        sh = _fastso3_sh()
        out = {}
        for name, kwargs in (("fastso3", {}), ("fastso3-reference", {"backend": "reference"})):
            y = sh(ls, x, True, normalization=NORMALIZATION, **kwargs)
            out[f"max_abs_diff_{name}_vs_e3nn_lmax{lmax}"] = float((y - e3nn_y).abs().max())
        return out

    return checks


def make_benchmark(quick: bool = False) -> Benchmark:
    n_points = 10_000 if quick else 100_000
    lmaxes = [1, 3] if quick else list(range(1, 9))
    gen = torch.Generator().manual_seed(0)
    points = torch.randn(n_points, 3, generator=gen, dtype=torch.float32)

    cases = []
    for measure in MEASURES:
        for lmax in lmaxes:
            cases.append(
                Case(
                    name=f"{measure} lmax={lmax}",
                    params={"measure": measure, "lmax": lmax, "n_points": n_points},
                    providers={
                        "fastso3": _torch_factory(_fastso3_sh, lmax, points, measure),
                        "fastso3-reference": _torch_factory(_fastso3_sh, lmax, points, measure, backend="reference"),
                        "e3nn": _torch_factory(_e3nn_sh, lmax, points, measure),
                        "sphericart": _sphericart_factory(lmax, points, measure),
                    },
                )
            )
    timing = (
        {"warmup": 1, "min_repeats": 3, "max_repeats": 10, "min_time": 0.05, "block_time": 0.005}
        if quick
        else {"warmup": 3, "min_repeats": 7, "max_repeats": 100, "min_time": 1.0, "block_time": 0.02}
    )
    return Benchmark(
        name="sh",
        description=f"spherical harmonics 0..lmax of {n_points} random float32 points, normalize=True, "
        f"normalization='{NORMALIZATION}'; forward and forward+backward (gradient w.r.t. the points)",
        cases=cases,
        reference="e3nn",
        ratios=[("e3nn/fastso3", "e3nn", "fastso3"), ("fastso3/sphericart", "fastso3", "sphericart")],
        settings={
            "n_points": n_points,
            "lmax": lmaxes,
            "dtype": "float32",
            "normalize": True,
            "normalization": NORMALIZATION,
            "quick": quick,
            "note": "sphericart uses its own real-SH convention and normalization; timings only",
        },
        plot_x="lmax",
        plot_panels="measure",
        checks=_checks(max(lmaxes)),
        timing=timing,
    )


if __name__ == "__main__":
    sys.exit(main(make_benchmark))
