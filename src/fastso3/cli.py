"""The ``fastso3`` command line: ``fastso3 demo``, ``fastso3 bench NAME``, ``fastso3 check``, ``fastso3 export``.

* ``fastso3 demo`` walks through the library on a small random point cloud: spherical harmonics, Wigner
  D matrices, equivariance errors and a short timing against e3nn. It is a list of sections
  (:data:`DEMO_SECTIONS`); new features add a section with the :func:`demo_section` decorator.
* ``fastso3 bench NAME [--quick] [--out DIR] [--dir DIR]`` runs ``benchmarks/bench_NAME.py`` from the source
  checkout (see ``benchmarks/harness.py``) and writes ``NAME.json`` and ``NAME.png``.
* ``fastso3 export MODEL.pt OUT.pt2`` writes a saved model's energy, forces and stress as an AOTInductor package
  (``fastso3.models.export_potential``) that ``FastSO3Calculator("OUT.pt2")`` runs.
* ``fastso3 check`` prints an equivariance report (spherical harmonics, Wigner D, the SO(2) message and its
  degree-0 output) and exits non-zero if a check fails.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import platform
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

__all__ = ["DEMO_SECTIONS", "DemoContext", "demo_section", "find_benchmarks_dir", "main"]


def _o3(name: str) -> Any:
    from fastso3 import o3

    return getattr(o3, name)


def _irreps(spec: Any):
    from fastso3 import Irreps

    return Irreps(spec)


def _e3nn_o3():
    try:
        from e3nn import o3
    except ImportError:
        return None
    return o3


def _table(header: list[str], rows: list[list[Any]]) -> str:
    rows = [[str(v) for v in r] for r in rows]
    widths = [max(len(x) for x in col) for col in zip(header, *rows)]
    fmt = lambda r: "  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip()
    return "\n".join([fmt(header), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows])


def _median_time(fn: Callable[[], Any], repeats: int, warmup: int = 3) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls, after ``warmup`` calls (seconds)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# ---------------------------------------------------------------------------------------------------------
# shared checks (used by both ``demo`` and ``check``)
# ---------------------------------------------------------------------------------------------------------
def sh_equivariance_errors(
    lmax: int, points: torch.Tensor, backend: str | None = None
) -> dict[tuple[int, bool], torch.Tensor]:
    """Max |Y(R x) - D(R) Y(x)| per l (index l of each error vector), for proper and improper R.

    Args:
        lmax: the largest degree.
        points: (n, 3) points; their dtype is the dtype of the computation (comparison in float64).
        backend: the fastso3 spherical-harmonics backend.

    Returns:
        ``{(parity_k, False): (lmax + 1,) float64 tensor}`` as in :func:`fastso3.testing.equivariance_error`.
    """
    from fastso3.testing import equivariance_error

    sh = _o3("spherical_harmonics")
    kwargs = {} if backend is None else {"backend": backend}

    def per_l(x):
        return tuple(sh(l, x, True, normalization="component", **kwargs) for l in range(lmax + 1))

    irreps_out = [_irreps(f"1x{l}{'e' if l % 2 == 0 else 'o'}") for l in range(lmax + 1)]
    return equivariance_error(per_l, [points], irreps_in="1o", irreps_out=irreps_out, ntrials=3)


def wigner_errors(lmax: int, dtype: torch.dtype, n: int = 10) -> list[dict[str, float]]:
    """Per l: homomorphism error max|D(R1 R2) - D(R1) D(R2)|, orthogonality max|D D^T - 1|, and for l = 1
    max|D^1(R) - R|, over ``n`` random rotation pairs."""
    wigner_D = _o3("wigner_D")
    rand_angles = _o3("rand_angles")
    angles_to_matrix = _o3("angles_to_matrix")
    matrix_to_angles = _o3("matrix_to_angles")

    a1 = rand_angles(n, dtype=torch.float64)
    a2 = rand_angles(n, dtype=torch.float64)
    R1, R2 = angles_to_matrix(*a1), angles_to_matrix(*a2)
    a12 = matrix_to_angles(R1 @ R2)
    cast = lambda angles: [t.to(dtype) for t in angles]
    rows = []
    for l in range(lmax + 1):
        D1, D2, D12 = (wigner_D(l, *cast(a)) for a in (a1, a2, a12))
        eye = torch.eye(2 * l + 1, dtype=dtype)
        row = {
            "l": l,
            "homomorphism": float((D12 - D1 @ D2).abs().max()),
            "orthogonality": float((D1 @ D1.transpose(-1, -2) - eye).abs().max()),
        }
        if l == 1:
            row["D1_minus_R"] = float((D1.double() - R1).abs().max())
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------------------
# demo
# ---------------------------------------------------------------------------------------------------------
@dataclass
class DemoContext:
    """State shared by the demo sections.

    Attributes:
        points: (n_points, 3) float64 random point cloud (seed 0).
        lmax: the spherical-harmonics degree shown.
        timing_points: number of points for the timing section.
        quick: fewer repeats (for tests).
        out: the print function.
        notes: sections may record values here (a dict).
    """

    points: torch.Tensor
    lmax: int = 3
    timing_points: int = 100_000
    quick: bool = False
    out: Callable[[str], None] = print
    notes: dict[str, Any] = field(default_factory=dict)


@dataclass
class DemoSection:
    title: str
    run: Callable[[DemoContext], None]


#: The demo, in order. Append with :func:`demo_section`.
DEMO_SECTIONS: list[DemoSection] = []


def demo_section(title: str) -> Callable[[Callable[[DemoContext], None]], Callable[[DemoContext], None]]:
    """Decorator registering ``fn(ctx: DemoContext) -> None`` as the next section of ``fastso3 demo``."""

    def register(fn: Callable[[DemoContext], None]) -> Callable[[DemoContext], None]:
        DEMO_SECTIONS.append(DemoSection(title, fn))
        return fn

    return register


@demo_section("Set-up")
def _demo_setup(ctx: DemoContext) -> None:
    import fastso3

    e3nn = _e3nn_o3()
    ctx.out(
        f"fastso3 {fastso3.__version__}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"Python {platform.python_version()}"
    )
    ctx.out(f"e3nn: {'installed' if e3nn is not None else 'not installed (comparisons skipped)'}")
    ctx.out(f"point cloud: {ctx.points.shape[0]} points drawn from N(0, 1)^3 (seed 0)")


@demo_section("Spherical harmonics")
def _demo_sh(ctx: DemoContext) -> None:
    sh = _o3("spherical_harmonics")
    irreps = _irreps([(1, (l, (-1) ** l)) for l in range(ctx.lmax + 1)])
    y = sh(irreps, ctx.points, True, normalization="component")
    ctx.out(f"spherical_harmonics({str(irreps)!r}, x, normalize=True, normalization='component')")
    ctx.out(f"  input {tuple(ctx.points.shape)} -> output {tuple(y.shape)} (layout: l = 0..{ctx.lmax}, m = -l..l)")
    rows = []
    for l, s in zip(range(ctx.lmax + 1), irreps.slices()):
        sq = (y[:, s] ** 2).sum(-1)
        rows.append([l, 2 * l + 1, f"{float(sq.mean()):.6f}", 2 * l + 1])
    ctx.out(_table(["l", "dim", "mean |Y^l|^2", "expected (2l+1)"], rows))
    e3nn = _e3nn_o3()
    if e3nn is not None:
        ref = e3nn.spherical_harmonics(list(range(ctx.lmax + 1)), ctx.points, True, normalization="component")
        ctx.out(f"max |fastso3 - e3nn| = {float((y - ref).abs().max()):.2e} (float64)")


@demo_section("Equivariance: Y(R x) = D(R) Y(x)")
def _demo_sh_equivariance(ctx: DemoContext) -> None:
    from fastso3.testing import FLOAT_TOLERANCE

    ctx.out("max |Y(R x) - D(R) Y(x)| over the point cloud and 3 random rotations R (and improper -R),")
    ctx.out("computed in the given dtype and compared in float64:")
    errs = {dt: sh_equivariance_errors(ctx.lmax, ctx.points.to(dt)) for dt in (torch.float32, torch.float64)}
    rows = []
    for l in range(ctx.lmax + 1):
        row = [l]
        for dt in errs:
            row.append(f"{max(float(e[l]) for e in errs[dt].values()):.2e}")
        rows.append(row)
    ctx.out(_table(["l", "float32", "float64"], rows))
    worst = {dt: max(float(e.max()) for e in errs[dt].values()) for dt in errs}
    ok = all(worst[dt] <= FLOAT_TOLERANCE[dt] for dt in worst)
    ctx.out(f"tolerances 1e-3 (float32) and 1e-9 (float64): {'PASS' if ok else 'FAIL'}")
    ctx.notes["sh_equivariance_ok"] = ok


@demo_section("Wigner D matrices")
def _demo_wigner(ctx: DemoContext) -> None:
    ctx.out("D^l(R) for random rotations (Y-X-Y Euler angles); errors over 10 random pairs (R1, R2):")
    rows = []
    by_dtype = {dt: wigner_errors(ctx.lmax, dt) for dt in (torch.float32, torch.float64)}
    for l in range(ctx.lmax + 1):
        r32, r64 = by_dtype[torch.float32][l], by_dtype[torch.float64][l]
        rows.append([l, f"{r32['homomorphism']:.2e}", f"{r64['homomorphism']:.2e}", f"{r64['orthogonality']:.2e}"])
    ctx.out(_table(["l", "|D(R1R2)-D(R1)D(R2)| f32", "f64", "|D D^T - 1| f64"], rows))
    ctx.out(f"|D^1(R) - R| (float64) = {by_dtype[torch.float64][1]['D1_minus_R']:.2e}  (the l=1 basis is x, y, z)")


@demo_section("Timing: fastso3 vs e3nn")
def _demo_timing(ctx: DemoContext) -> None:
    n, lmax = ctx.timing_points, ctx.lmax
    repeats = 3 if ctx.quick else 25
    ls = list(range(lmax + 1))
    x = torch.randn(n, 3, generator=torch.Generator().manual_seed(0))
    g = torch.randn(n, (lmax + 1) ** 2, generator=torch.Generator().manual_seed(1))
    sh = _o3("spherical_harmonics")
    providers: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
        "fastso3": lambda p: sh(ls, p, True, normalization="component"),
        "fastso3 (reference backend)": lambda p: sh(ls, p, True, normalization="component", backend="reference"),
    }
    e3nn = _e3nn_o3()
    if e3nn is not None:
        providers["e3nn"] = lambda p: e3nn.spherical_harmonics(ls, p, True, normalization="component")
    else:
        ctx.out("e3nn is not installed: timing fastso3 only (pip install e3nn==0.6.0 to compare)")

    def fwd_bwd(f):
        xr = x.clone().requires_grad_(True)

        def run():
            xr.grad = None
            f(xr).backward(g)

        return run

    times = {}
    for name, f in providers.items():
        times[name] = (_median_time(lambda f=f: f(x), repeats), _median_time(fwd_bwd(f), repeats))
    ctx.out(f"spherical harmonics l = 0..{lmax} of {n} float32 points, median of {repeats} calls:")
    rows = []
    for name, (tf, tb) in times.items():
        row = [name, f"{tf * 1e3:.2f} ms", f"{tb * 1e3:.2f} ms"]
        if "e3nn" in times:
            ef, eb = times["e3nn"]
            row += [f"{ef / tf:.2f}x", f"{eb / tb:.2f}x"]
        rows.append(row)
    header = ["provider", "forward", "forward+backward"] + (
        ["speed-up fwd", "speed-up fwd+bwd"] if "e3nn" in times else []
    )
    ctx.out(_table(header, rows))
    if "e3nn" in times:
        ctx.out("(speed-up = e3nn time / provider time; full benchmark: fastso3 bench sh)")
    ctx.notes["timing"] = times


def run_demo(
    n_points: int = 1000, timing_points: int = 100_000, quick: bool = False, out: Callable[[str], None] = print
) -> int:
    """Run every section of :data:`DEMO_SECTIONS`; a failing section is reported and the others still run.

    Returns:
        0 if every section ran, 1 otherwise.
    """
    from fastso3.testing import set_random_seeds

    set_random_seeds(0)
    points = torch.randn(n_points, 3, dtype=torch.float64)
    ctx = DemoContext(points=points, timing_points=timing_points, quick=quick, out=out)
    failed = []
    t_start = time.perf_counter()
    for i, section in enumerate(DEMO_SECTIONS, 1):
        out("")
        out(f"== {i}. {section.title} " + "=" * max(3, 70 - len(section.title)))
        t0 = time.perf_counter()
        try:
            section.run(ctx)
        except Exception as exc:
            failed.append(section.title)
            out(f"section failed: {type(exc).__name__}: {exc}")
            out(traceback.format_exc(limit=3).rstrip())
        out(f"({time.perf_counter() - t0:.1f} s)")
    out("")
    if ctx.notes.get("sh_equivariance_ok") is False:
        failed.append("equivariance tolerance")
    summary = "all sections ran" if not failed else f"FAILED: {', '.join(failed)}"
    out(f"demo finished in {time.perf_counter() - t_start:.1f} s: {summary}")
    return 0 if not failed else 1


@demo_section("The e3nn convolution tutorial, with fastso3 (examples/01_convolution.py)")
def _demo_convolution(ctx: DemoContext) -> None:
    import fastso3

    path = Path(fastso3.__file__).resolve().parents[2] / "examples" / "01_convolution.py"
    if not path.is_file():
        ctx.out(f"examples/01_convolution.py not found at {path} (run from a source checkout)")
        return
    out_dir = Path("demo_output")
    out_dir.mkdir(exist_ok=True)
    _load_module("fastso3_example_convolution", path).main(plot=str(out_dir / "radial_basis.png"), print_fn=ctx.out)


@demo_section("Tensor-product kernels and the fused convolution vs e3nn")
def _demo_tensor_products(ctx: DemoContext) -> None:
    from fastso3 import o3
    from fastso3.core.tensor_product_builders import channelwise_tensor_product_spec
    from fastso3.ops import tensor_product_conv

    e3nn = _e3nn_o3()
    if e3nn is None:
        ctx.out("e3nn is not installed: nothing to compare with (pip install e3nn==0.6.0)")
        return
    from fastso3.compat import from_e3nn

    repeats = 1 if ctx.quick else 5
    gen = torch.Generator().manual_seed(0)
    # the tutorial's fully connected product, per-edge weights (the 'uvw' kernel)
    theirs = e3nn.FullyConnectedTensorProduct("10x0e+10x1e", "1x0e+1x1o+1x2e", "20x0e+10x1e", shared_weights=False)
    ours = from_e3nn(theirs)
    n = 2000
    args = [torch.randn(n, d, generator=gen) for d in (40, 9, theirs.weight_numel)]
    # a channel-wise interaction with gather and scatter: C = 16, l <= 2 (the 'uvu' kernel, fused)
    irreps = o3.Irreps("16x0e+16x1o+16x2e")
    spec = channelwise_tensor_product_spec(irreps, o3.Irreps.spherical_harmonics(2))
    tp_args = (str(irreps), str(spec["irreps_in2"]), str(spec["irreps_out"]), spec["instructions"])
    theirs_uvu = e3nn.TensorProduct(*tp_args, shared_weights=False)
    ours_uvu = o3.TensorProduct(*tp_args, shared_weights=False)
    nodes, edges = 200, 4000
    src, dst = (torch.randint(0, nodes, (edges,), generator=gen) for _ in range(2))
    feats = torch.randn(nodes, irreps.dim, generator=gen)
    sh = o3.spherical_harmonics(spec["irreps_in2"], torch.randn(edges, 3, generator=gen), True)
    ew = torch.randn(edges, ours_uvu.weight_numel, generator=gen)

    def e3nn_conv(f, s, w):
        return torch.zeros(nodes, theirs_uvu.irreps_out.dim).index_add_(0, dst, theirs_uvu(f[src], s, w))

    cases = [
        ("FCTP (tutorial), 2000 edges", lambda *a: ours(*a), lambda *a: theirs(*a), args),
        ("uvu conv, C=16, 4000 edges", lambda f, s, w: tensor_product_conv(f, src, dst, s, w, ours_uvu, nodes),
         e3nn_conv, [feats, sh, ew]),
    ]  # fmt: skip
    rows = []
    for name, f_ours, f_theirs, inputs in cases:
        err = float((f_ours(*inputs) - f_theirs(*inputs)).abs().max())
        times = []
        for f in (f_ours, f_theirs):
            leaves = [t.clone().requires_grad_() for t in inputs]
            times.append(_median_time(lambda f=f, leaves=leaves: f(*leaves).sum().backward(), repeats, warmup=1))
        rows.append([name, f"{times[0] * 1e3:.2f} ms", f"{times[1] * 1e3:.2f} ms", f"{times[1] / times[0]:.1f}x", f"{err:.1e}"])
    ctx.out("forward+backward (gradients w.r.t. every input), float32, median of a few calls:")
    ctx.out(_table(["case", "fastso3", "e3nn", "speed-up", "max |diff|"], rows))
    ctx.out("(full benchmarks: fastso3 bench tp, fastso3 bench conv; results in benchmarks/results/README.md)")


@demo_section("An interatomic potential: NequIP on fastso3 (fastso3.models)")
def _demo_potential(ctx: DemoContext) -> None:
    from fastso3.graph import neighbor_list
    from fastso3.models import NequIP, forces_and_stress
    from fastso3.o3 import rand_matrix

    torch.manual_seed(0)
    model = NequIP([1, 8], r_max=4.0, hidden_irreps="16x0e + 16x1o + 16x2e", num_layers=2,
                   atomic_energies=[-13.6, -2041.3], avg_num_neighbors=20.0).double()  # fmt: skip
    gen = torch.Generator().manual_seed(0)
    cell = torch.eye(3, dtype=torch.float64) * 6.0
    pos = torch.rand(24, 3, generator=gen, dtype=torch.float64) @ cell
    z = torch.where(torch.arange(24) % 3 == 0, 8, 1)

    def predict(positions, cells):
        src, dst, shifts = neighbor_list(positions.detach(), cells.detach(), True, model.r_max)
        return forces_and_stress(lambda p, c: model(p, z, src, dst, shifts, c), positions, cells)

    out = predict(pos, cell)
    rot = rand_matrix(dtype=torch.float64)
    turned = predict(pos @ rot.T, cell @ rot.T)
    ctx.out(f"periodic cell of 24 atoms (8 O, 16 H), untrained model, float64: energy {float(out['energy'][0]):.4f} eV")
    ctx.out(f"max |F| {float(out['forces'].abs().max()):.3f} eV/A, max |stress| {float(out['stress'].abs().max()):.2e} eV/A^3")
    ctx.out("rotating atoms and cell together:")
    rows = [["energy", f"{abs(float(turned['energy'][0] - out['energy'][0])):.1e}"],
            ["forces vs R F", f"{float((turned['forces'] - out['forces'] @ rot.T).abs().max()):.1e}"],
            ["stress vs R s R^T", f"{float((turned['stress'][0] - rot @ out['stress'][0] @ rot.T).abs().max()):.1e}"]]  # fmt: skip
    ctx.out(_table(["quantity", "max |difference|"], rows))
    ctx.out("(benchmark against the same network on e3nn: fastso3 bench nequip; training: fastso3 train)")


@demo_section("eSCN SO(2) messages (fastso3.so2, FastSo3's API)")
def _demo_so2(ctx: DemoContext) -> None:
    ctx.out("get_message on 100 random edges, one random rotation R (as FastSo3's check_equi.py):")
    rows = []
    for L in (2, 6):
        for dt in (torch.float32, torch.float64):
            eq, inv = so2_message_errors(L, "SO2_conv_e", dt)
            rows.append([L, str(dt).replace("torch.", ""), f"{eq:.1e}", f"{inv:.1e}"])
    ctx.out(_table(["L", "dtype", "|D(R) m - m(R.)|", "|m0 - m0(R.)|"], rows))


def so2_message_errors(L: int, layer: str, dtype: torch.dtype) -> list[float]:
    """As FastSo3's check_equi.py, for ``fastso3.so2.get_message`` with ``layer`` ('SO2_conv' or 'SO2_conv_e'):
    b = 100 random edges, one random rotation R; returns ``[max |D(R) m(x, v) - m(D(R) x, R v)|,
    max |m0(x, v) - m0(D(R) x, R v)|]`` (the message's equivariance, its degree-0 part's invariance)."""
    from fastso3 import so2
    from fastso3.o3 import rand_matrix, wigner_D_from_matrix

    b, c_in, c_out, c_hid, c0_in, c0_out = 100, 4, 2, 2, 2, 4
    with torch.random.fork_rng():
        torch.manual_seed(L)
        if layer == "SO2_conv":
            conv = so2.SO2_conv(c_in, c_out, L, c0_in, c0_out)
            w = torch.randn(b, c_in, L, 2 * L, c_out, L)
            w0 = torch.randn(b, c0_in + c_in * L, c0_out + c_out * L)
        else:
            conv = so2.SO2_conv_e(c_in, c_out, c_hid, L, c0_in, c0_out)
            w, w0 = torch.randn(b, c_hid, 2 * L), torch.randn(b, c_hid)
        x = torch.randn(b, c_in, L, 2 * L + 1) * so2.get_mask(L)
        x0, v, R = torch.randn(b, c0_in), torch.randn(b, 3), rand_matrix(dtype=torch.float64)
    pad = torch.nn.functional.pad
    D = torch.stack([pad(wigner_D_from_matrix(l, R), (L - l,) * 4) for l in range(1, L + 1)])
    D = D.expand(b, -1, -1, -1).to(dtype)
    conv, x, x0, w, w0, v = (t.to(dtype) for t in (conv, x, x0, w, w0, v))
    with torch.no_grad():
        m, m0 = so2.get_message(x, x0, w, w0, v, conv, L)
        mR, m0R = so2.get_message(so2.rotate(D, x), x0, w, w0, v @ R.to(dtype).T, conv, L)
    return [float((so2.rotate(D, m) - mR).abs().max()), float((m0 - m0R).abs().max())]


# ---------------------------------------------------------------------------------------------------------
# check
# ---------------------------------------------------------------------------------------------------------
def run_check(lmax: int = 8, out: Callable[[str], None] = print) -> int:
    """Equivariance report of the spherical harmonics (every backend), the Wigner D matrices and the eSCN SO(2)
    messages (``fastso3.so2``).

    Returns:
        0 if every check passes, 1 otherwise.
    """
    from fastso3.testing import FLOAT_TOLERANCE, set_random_seeds

    set_random_seeds(0)
    failures: list[str] = []
    points = torch.randn(200, 3, dtype=torch.float64)

    out(f"== spherical harmonics: max |Y(R x) - D(R) Y(x)| per l, 3 random R and -R, l = 0..{lmax}")
    for backend in (None, "reference"):
        header = ["l"]
        columns = []
        for dt in (torch.float32, torch.float64):
            name = f"{backend or 'default'} {str(dt).replace('torch.', '')}"
            header.append(name)
            try:
                errs = sh_equivariance_errors(lmax, points.to(dt), backend)
            except Exception as exc:
                failures.append(f"SH {name}: {type(exc).__name__}: {exc}")
                columns.append(None)
                continue
            col = [max(float(e[l]) for e in errs.values()) for l in range(lmax + 1)]
            bad = [l for l, e in enumerate(col) if not e <= FLOAT_TOLERANCE[dt]]
            if bad:
                failures.append(f"SH {name}: l = {bad} above {FLOAT_TOLERANCE[dt]:.0e}")
            columns.append(col)
        rows = [[l] + [("error" if c is None else f"{c[l]:.2e}") for c in columns] for l in range(lmax + 1)]
        out(_table(header, rows))
        out("")

    out(f"== Wigner D: homomorphism, orthogonality, D^1 = R; l = 0..{lmax}")
    for dt in (torch.float32, torch.float64):
        tol = FLOAT_TOLERANCE[dt]
        try:
            rows = wigner_errors(lmax, dt)
        except Exception as exc:
            failures.append(f"Wigner D {dt}: {type(exc).__name__}: {exc}")
            continue
        table = []
        for r in rows:
            worst = max(v for k, v in r.items() if k != "l")
            status = "ok" if worst <= tol else "FAIL"
            if status == "FAIL":
                failures.append(f"Wigner D {dt} l={r['l']}: {worst:.2e} above {tol:.0e}")
            table.append([r["l"], f"{r['homomorphism']:.2e}", f"{r['orthogonality']:.2e}", status])
        out(f"{str(dt).replace('torch.', '')} (tolerance {tol:.0e}); |D^1(R) - R| = {rows[1]['D1_minus_R']:.2e}")
        out(_table(["l", "|D(R1R2)-D(R1)D(R2)|", "|D D^T - 1|", "status"], table))
        out("")

    out("== so2 (eSCN): equivariance of get_message and invariance of its degree-0 output, b = 100, c_in = 4")
    table = []
    for L in (2, 6):
        for layer in ("SO2_conv", "SO2_conv_e"):
            for dt in (torch.float32, torch.float64):
                try:
                    errs = so2_message_errors(L, layer, dt)
                except Exception as exc:
                    failures.append(f"so2 {layer} L={L} {dt}: {type(exc).__name__}: {exc}")
                    continue
                status = "ok" if max(errs) <= FLOAT_TOLERANCE[dt] else "FAIL"
                if status == "FAIL":
                    failures.append(f"so2 {layer} L={L} {dt}: {max(errs):.2e} above {FLOAT_TOLERANCE[dt]:.0e}")
                table.append([layer, L, str(dt).replace("torch.", ""), f"{errs[0]:.2e}", f"{errs[1]:.2e}", status])
    out(_table(["layer", "L", "dtype", "equivariance error", "invariance error", "status"], table))
    out("")

    if failures:
        out("FAILED:")
        for f in failures:
            out(f"  - {f}")
        return 1
    out("all checks passed")
    return 0


# ---------------------------------------------------------------------------------------------------------
# bench
# ---------------------------------------------------------------------------------------------------------
def find_benchmarks_dir(explicit: str | Path | None = None) -> Path:
    """The ``benchmarks`` directory of the source checkout (``<repo>/benchmarks``), or ``explicit``.

    Raises:
        FileNotFoundError: with instructions, if it does not exist (e.g. a non-editable install).
    """
    import fastso3

    path = Path(explicit) if explicit is not None else Path(fastso3.__file__).resolve().parents[2] / "benchmarks"
    if not (path / "harness.py").is_file():
        raise FileNotFoundError(
            f"no benchmarks directory at {path} (looked for {path / 'harness.py'}). `fastso3 bench` runs from a "
            "source checkout installed in editable mode (`pip install -e .`); pass --dir PATH/TO/benchmarks otherwise."
        )
    return path


def _load_module(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:  # pragma: no cover
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def available_benchmarks(bench_dir: Path) -> list[str]:
    return sorted(p.stem[len("bench_") :] for p in bench_dir.glob("bench_*.py"))


def run_bench(
    name: str | None,
    quick: bool,
    out_dir: str | None,
    bench_dir: str | None,
    threads: int | None,
    plot: bool = True,
    out: Callable[[str], None] = print,
) -> int:
    directory = find_benchmarks_dir(bench_dir)
    names = available_benchmarks(directory)
    if name is None:
        out(f"benchmarks in {directory}: {', '.join(names) or '(none)'}")
        return 0
    if name not in names:
        out(f"unknown benchmark {name!r}; available in {directory}: {', '.join(names) or '(none)'}")
        return 2
    if threads is not None:
        torch.set_num_threads(threads)
    if str(directory) not in sys.path:
        sys.path.insert(0, str(directory))
    harness = sys.modules.get("harness")
    if harness is None or Path(getattr(harness, "__file__", "")).resolve() != (directory / "harness.py").resolve():
        harness = _load_module("harness", directory / "harness.py")
    module = _load_module(f"bench_{name}", directory / f"bench_{name}.py")
    bench = module.make_benchmark(quick)
    results = Path(out_dir) if out_dir is not None else directory / "results"
    harness.run_benchmark(
        bench,
        results,
        plot=plot,
        log=out,
        extra={"command": ["fastso3", "bench", name] + (["--quick"] if quick else []), "quick": quick},
    )
    return 0


# ---------------------------------------------------------------------------------------------------------
# fastso3 train, and the main demo: train, then molecular dynamics with the trained model
# ---------------------------------------------------------------------------------------------------------
def _report(metrics: dict, out: Callable[[str], None]) -> None:
    rows = [[split, f"{1e3 * m['energy_per_atom_mae']:.2f}", f"{1e3 * m['forces_mae']:.1f}",
             f"{1e3 * m['stress_mae']:.2f}" if "stress_mae" in m else "-"] for split, m in
            (("train", metrics["train"]), ("valid", metrics["valid"]))]  # fmt: skip
    out(_table(["set", "energy MAE (meV/atom)", "forces MAE (meV/A)", "stress MAE (meV/A^3)"], rows))
    out(f"{metrics['epochs']} epochs in {metrics['seconds']:.0f} s (best: epoch {metrics['best_epoch']})")


def run_train(args: argparse.Namespace, out: Callable[[str], None] = print) -> int:
    """``fastso3 train``: train as the flags (and ``--config``) say, print the final metrics."""
    from fastso3.data import DataError
    from fastso3.training import train
    from fastso3.training.config import config_from_args
    from fastso3.util.memory import retain_freed_memory

    retain_freed_memory()  # this process trains: reuse freed memory across steps
    try:
        config = config_from_args(args)
        metrics = train(config)
    except (DataError, ValueError, FileNotFoundError) as exc:
        print(f"fastso3 train: {exc}", file=sys.stderr)
        return 2
    _report(metrics, out)
    out(f"wrote {config.output_dir}/: model.pt (FastSO3Calculator loads it), metrics.json, best.pt, last.pt, "
        "learning_curve.png, parity_energy.png, parity_forces.png")
    return 0


def run_md(model_path: Path, out: Callable[[str], None] = print, steps: int = 250) -> dict:
    """NVE molecular dynamics of a rattled 32-atom Cu3Au cell at 600 K with the model at ``model_path``
    (VelocityVerlet, 2 fs): prints the total-energy drift and the model's errors against EMT on the trajectory."""
    import numpy as np
    from ase import units
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.md.velocitydistribution import thermalize_momenta
    from ase.md.verlet import VelocityVerlet

    from fastso3.calculator import FastSO3Calculator

    atoms = bulk("Cu", "fcc", a=3.75, cubic=True).repeat((2, 2, 2))
    atoms.numbers[::4] = 79
    atoms.rattle(0.05, seed=0)
    atoms.calc = FastSO3Calculator(model_path)
    thermalize_momenta(atoms, temperature_K=600, rng=np.random.default_rng(0))
    energies, frames = [atoms.get_total_energy()], []
    dyn = VelocityVerlet(atoms, timestep=2 * units.fs)

    def record():
        energies.append(atoms.get_total_energy())
        frames.append(atoms.copy())

    dyn.attach(record, interval=25)
    t0 = time.perf_counter()
    dyn.run(steps)
    seconds = time.perf_counter() - t0
    drift = (energies[-1] - energies[0]) / len(atoms)
    spread = (max(energies) - min(energies)) / len(atoms)
    e_err, f_err = [], []
    for frame in frames:
        model_e, model_f = atoms.calc.get_potential_energy(frame), atoms.calc.get_forces(frame)
        frame.calc = EMT()
        e_err.append(abs(model_e - frame.get_potential_energy()) / len(frame))
        f_err.append(np.abs(model_f - frame.get_forces()).mean())
    out(f"NVE MD: {len(atoms)} atoms (Cu3Au) at 600 K, {steps} steps of 2 fs ({steps * 2 / 1000:.1f} ps) in "
        f"{seconds:.1f} s ({steps / seconds:.0f} steps/s)")
    out(f"total energy drift {1e3 * drift:+.3f} meV/atom (max spread {1e3 * spread:.3f} meV/atom, "
        f"final temperature {atoms.get_temperature():.0f} K)")
    out(f"against EMT on {len(frames)} MD frames: energy MAE {1e3 * np.mean(e_err):.2f} meV/atom, "
        f"forces MAE {1e3 * np.mean(f_err):.1f} meV/A")
    return {"drift_per_atom": drift, "spread_per_atom": spread, "steps_per_s": steps / seconds}


def run_main_demo(minutes: float, output_dir: str, out: Callable[[str], None] = print) -> int:
    """``fastso3 demo``: train the default potential on the embedded EMT Cu/Au data for ``minutes``, report its
    validation errors and plots, then run NVE molecular dynamics with it through the ASE calculator."""
    from fastso3.training import TrainConfig, train
    from fastso3.util.memory import retain_freed_memory

    retain_freed_memory()  # this process trains: reuse freed memory across steps
    config = TrainConfig(time_limit=minutes, max_num_epochs=DEMO_EPOCHS, output_dir=output_dir)
    out(f"== 1. Training {config.model} ({config.hidden_irreps}, correlation {config.correlation}) on the embedded "
        f"EMT Cu/Au data for up to {minutes:g} min, {config.default_dtype}, {torch.get_num_threads()} threads")  # fmt: skip
    metrics = train(config)
    _report(metrics, out)
    out(f"wrote {output_dir}/: model.pt, metrics.json, learning_curve.png, parity_energy.png, parity_forces.png")
    out("")
    out("== 2. Molecular dynamics with the trained model (fastso3.calculator.FastSO3Calculator in ASE)")
    run_md(Path(output_dir) / "model.pt", out)
    out("")
    out("(the layer-level tour: fastso3 demo --kernels; benchmarks: fastso3 bench NAME)")
    return 0


def run_export(args: argparse.Namespace, out: Callable[[str], None] = print) -> int:
    """``fastso3 export MODEL OUT``: the saved model ``MODEL`` as the package ``OUT`` (``.pt2``)."""
    from fastso3.models import export_potential, load

    try:
        model = load(args.model, args.device)
    except (ValueError, FileNotFoundError) as exc:
        print(f"fastso3 export: {exc}", file=sys.stderr)
        return 2
    if args.dtype is not None:
        model = model.to(getattr(torch, args.dtype))
    t0 = time.perf_counter()
    try:
        path = export_potential(model, args.out, aoti=not args.no_aoti)
    except ValueError as exc:
        print(f"fastso3 export: {exc}", file=sys.stderr)
        return 2
    kind = "exported program (no AOTInductor)" if args.no_aoti else "AOTInductor package"
    out(f"wrote {path}: {type(model).__name__} energy, forces and stress as an {kind}, "
        f"{str(model.atomic_energies.energies.dtype).removeprefix('torch.')} on {args.device}, in "
        f"{time.perf_counter() - t0:.0f} s; run it with FastSO3Calculator({str(path)!r}) (needs fastso3 and torch "
        f"{torch.__version__}, not the model's file)")  # fmt: skip
    return 0


DEMO_EPOCHS = 50  # about 100 s on a quiet 2-core machine; the time limit stops it on a busier one


# ---------------------------------------------------------------------------------------------------------
# entry point
# ---------------------------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    from fastso3.training.config import add_arguments

    parser = argparse.ArgumentParser(prog="fastso3", description="fastso3 command line: train, demo, benchmarks, checks")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a potential (default data: the embedded EMT Cu/Au set)")
    add_arguments(p)

    p = sub.add_parser("demo", help="the main job: train a potential for ~2 minutes, then run NVE MD with it; "
                                    "--kernels: a tour of the layers (harmonics, Wigner D, equivariance, timing)")  # fmt: skip
    p.add_argument("--kernels", action="store_true", help="the layer-level tour instead of training")
    p.add_argument("--minutes", type=float, default=2.0, help="training time of the main demo (default 2)")
    p.add_argument("--output_dir", default="fastso3_demo", help="where the demo's run is written")
    p.add_argument("--points", type=int, default=1000, help="--kernels: size of the random point cloud (default 1000)")
    p.add_argument("--timing-points", type=int, default=100_000, help="--kernels: points for the timing table")
    p.add_argument("--quick", action="store_true", help="--kernels: fewer timing repeats")

    p = sub.add_parser("bench", help="run benchmarks/bench_NAME.py; without NAME, list the benchmarks")
    p.add_argument("name", nargs="?", default=None, help="the benchmark, e.g. 'sh'")
    p.add_argument("--quick", action="store_true", help="small problem sizes and few repeats (smoke test)")
    p.add_argument("--out", default=None, help="output directory (default: <benchmarks>/results)")
    p.add_argument("--dir", default=None, help="the benchmarks directory (default: <repository>/benchmarks)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads before running")
    p.add_argument("--no-plot", action="store_true", help="do not write the PNG")

    p = sub.add_parser("export", help="a saved model (fastso3.models.save, fastso3 train) as an AOTInductor .pt2 "
                                      "package for FastSO3Calculator")  # fmt: skip
    p.add_argument("model", help="the model file (e.g. run/model.pt)")
    p.add_argument("out", help="the package to write (ending in .pt2)")
    p.add_argument("--dtype", choices=("float32", "float64"), default=None, help="default: the model's")
    p.add_argument("--device", default="cpu", help="where the package runs (default cpu)")
    p.add_argument("--no-aoti", action="store_true", help="store the exported program only (no C++ compile)")

    p = sub.add_parser(
        "check", help="equivariance report: spherical harmonics, Wigner D, SO(2) messages (non-zero exit on failure)"
    )
    p.add_argument("--lmax", type=int, default=8, help="largest degree checked (default 8)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``fastso3`` console script; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.command == "train":
        return run_train(args)
    if args.command == "demo" and args.kernels:
        return run_demo(n_points=args.points, timing_points=args.timing_points, quick=args.quick)
    if args.command == "demo":
        return run_main_demo(args.minutes, args.output_dir)
    if args.command == "bench":
        try:
            return run_bench(args.name, args.quick, args.out, args.dir, args.threads, plot=not args.no_plot)
        except FileNotFoundError as exc:
            print(f"fastso3 bench: {exc}", file=sys.stderr)
            return 2
    if args.command == "check":
        return run_check(lmax=args.lmax)
    if args.command == "export":
        return run_export(args)
    raise AssertionError(args.command)  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())
