"""A small, generic benchmark harness for fastso3.

A benchmark module (``benchmarks/bench_<name>.py``) defines ``make_benchmark(quick: bool) -> Benchmark``.
A :class:`Benchmark` is a list of :class:`Case` objects; each case maps provider names to *factories*.
A factory does the set-up (data, modules, a first call) outside the timed region and returns a zero-argument
callable, the thing that is timed. A factory raising :class:`Unavailable` (or ImportError) marks the provider
as unavailable for that case (for example e3nn not installed) instead of failing the run.

Timing discipline (:func:`measure`): garbage collection off while timing, warm-up calls, a block size
calibrated so that one block lasts at least ``block_time`` seconds, at least ``min_repeats`` blocks and at
least ``min_time`` seconds in total, per-call time = block time / block size; reported as the median and
the inter-quartile range (IQR) over blocks. CUDA is synchronized around each block when it is in use.

Every row of the printed table carries its ratio to the benchmark's reference provider *measured in the same
run*; further named ratios (``Benchmark.ratios``) are computed per case. Results go to ``<out>/<name>.json``
(machine information included) and ``<out>/<name>.png``.

Usage, from the repository root::

    fastso3 bench sh --quick            # through the CLI
    python benchmarks/bench_sh.py --quick
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

Factory = Callable[[], Callable[[], Any]]

SCHEMA_VERSION = 1


class Unavailable(RuntimeError):
    """Raised by a provider factory when the provider cannot run here (missing package, backend, device)."""


@dataclass
class Case:
    """One benchmark configuration.

    Attributes:
        name: a short, unique label, e.g. ``"forward lmax=3"``.
        params: the parameters of the case (JSON-serialisable), e.g. ``{"measure": "forward", "lmax": 3}``.
        providers: provider name -> factory; the factory returns the zero-argument callable to time.
    """

    name: str
    params: dict[str, Any]
    providers: dict[str, Factory]


@dataclass
class Benchmark:
    """A named set of cases, with a reference provider and the ratios to report.

    Attributes:
        name: the benchmark's name (``sh`` for ``bench_sh.py``); also the stem of the output files.
        description: one or two sentences, written into the JSON.
        cases: the cases, in order.
        reference: the provider every row is compared to (ratio = reference time / row time, i.e. the
            row's speed-up over the reference).
        ratios: extra per-case ratios, ``(label, numerator provider, denominator provider)``; the value is
            time(numerator) / time(denominator).
        settings: what was fixed for the run (points, dtype, normalization, ...), written into the JSON.
        plot_x: a numeric ``params`` key for the plot's x axis (default: the case index).
        plot_panels: a ``params`` key splitting the plot into panels (default: one panel).
        checks: an optional callable run once before timing (e.g. a correctness cross-check); its dict
            result is stored under ``"checks"`` in the JSON.
        timing: keyword arguments for :func:`measure` (warm-up, repeats, ...).
    """

    name: str
    description: str
    cases: list[Case]
    reference: str
    ratios: list[tuple[str, str, str]] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    plot_x: str | None = None
    plot_panels: str | None = None
    checks: Callable[[], dict[str, Any]] | None = None
    timing: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------------
# timing
# ---------------------------------------------------------------------------------------------------------
def _sync() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def _quantile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolation quantile of an already sorted list."""
    if len(sorted_values) == 1:
        return sorted_values[0]
    pos = q * (len(sorted_values) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def measure(
    fn: Callable[[], Any],
    *,
    warmup: int = 3,
    min_repeats: int = 7,
    max_repeats: int = 100,
    min_time: float = 1.0,
    block_time: float = 0.02,
) -> dict[str, Any]:
    """Time ``fn()``: per-call seconds as median and IQR over blocks.

    Args:
        fn: a zero-argument callable.
        warmup: calls before timing (at least one, which also calibrates the block size).
        min_repeats: the fewest timed blocks.
        max_repeats: the most timed blocks.
        min_time: keep adding blocks (up to ``max_repeats``) until this many seconds were spent timing.
        block_time: the target duration of one block; fast calls are repeated ``number`` times per block.

    Returns:
        ``{"median_s", "iqr_s", "q1_s", "q3_s", "min_s", "repeats", "number", "times_s"}``; ``times_s`` lists
        the per-call time of every block.
    """
    gc_was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        t_single = float("inf")
        for _ in range(max(1, warmup)):
            _sync()
            t0 = time.perf_counter()
            fn()
            _sync()
            t_single = min(t_single, time.perf_counter() - t0)
        number = max(1, int(block_time / max(t_single, 1e-9)))
        times: list[float] = []
        start = time.perf_counter()
        while len(times) < min_repeats or (time.perf_counter() - start < min_time and len(times) < max_repeats):
            _sync()
            t0 = time.perf_counter()
            for _ in range(number):
                fn()
            _sync()
            times.append((time.perf_counter() - t0) / number)
    finally:
        if gc_was_enabled:
            gc.enable()
    s = sorted(times)
    q1, q3 = _quantile(s, 0.25), _quantile(s, 0.75)
    return {
        "median_s": statistics.median(s),
        "iqr_s": q3 - q1,
        "q1_s": q1,
        "q3_s": q3,
        "min_s": s[0],
        "repeats": len(s),
        "number": number,
        "times_s": times,
    }


# ---------------------------------------------------------------------------------------------------------
# machine information
# ---------------------------------------------------------------------------------------------------------
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _git_info(repo: Path) -> dict[str, Any]:
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", "-C", str(repo), *args], check=False, capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:
        return None


def _load_average() -> float | None:
    """1-minute load average: well above 0 means other processes competed for the cores (noisy timings)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def machine_info() -> dict[str, Any]:
    """CPU model, core counts, thread settings, library versions and the git commit of this checkout."""
    try:
        affinity = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None
    info: dict[str, Any] = {
        "cpu_model": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": affinity,
        "torch_num_threads": torch.get_num_threads(),
        "torch_num_interop_threads": torch.get_num_interop_threads(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "load_average_1m": _load_average(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "numpy": _version("numpy"),
        "fastso3": _version("fastso3"),
        "e3nn": _version("e3nn"),
        "sphericart": _version("sphericart"),
        "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    info.update({f"git_{k}": v for k, v in _git_info(Path(__file__).resolve().parent).items()})
    return info


# ---------------------------------------------------------------------------------------------------------
# running
# ---------------------------------------------------------------------------------------------------------
def _fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def _fmt_ratio(r: float | None) -> str:
    return "-" if r is None else f"{r:.2f}x"


def run_case(case: Case, timing: dict[str, Any], log: Callable[[str], None]) -> list[dict[str, Any]]:
    rows = []
    for provider, factory in case.providers.items():
        row: dict[str, Any] = {"case": case.name, "params": dict(case.params), "provider": provider}
        try:
            fn = factory()
        except (Unavailable, ImportError) as exc:
            row.update(status="unavailable", reason=f"{type(exc).__name__}: {exc}")
            log(f"  {case.name:<28} {provider:<20} unavailable ({exc})")
            rows.append(row)
            continue
        except Exception as exc:  # a broken provider should not hide the others
            row.update(status="error", reason=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())
            log(f"  {case.name:<28} {provider:<20} ERROR in set-up: {type(exc).__name__}: {exc}")
            rows.append(row)
            continue
        try:
            row.update(measure(fn, **timing), status="ok")
        except Exception as exc:
            row.update(status="error", reason=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())
            log(f"  {case.name:<28} {provider:<20} ERROR: {type(exc).__name__}: {exc}")
        else:
            log(
                f"  {case.name:<28} {provider:<20} {_fmt_time(row['median_s']):>10}  (IQR {_fmt_time(row['iqr_s'])}, {row['repeats']} x {row['number']})"
            )
        del fn
        rows.append(row)
    return rows


def _time_of(rows: list[dict[str, Any]], case: str, provider: str) -> float | None:
    for r in rows:
        if r["case"] == case and r["provider"] == provider and r["status"] == "ok":
            return r["median_s"]
    return None


def run_benchmark(
    bench: Benchmark,
    out_dir: Path | str | None = None,
    *,
    plot: bool = True,
    log: Callable[[str], None] = print,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run every case of ``bench``, print a table, write ``<out_dir>/<name>.json`` and ``.png``.

    Args:
        bench: the benchmark.
        out_dir: where to write results (created if needed); None writes nothing.
        plot: also write the PNG plot.
        log: where progress and the table go.
        extra: more top-level entries for the JSON (e.g. the command line).

    Returns:
        The JSON document as a dict (see ``benchmarks/results/README.md`` for the keys).
    """
    started = time.perf_counter()
    machine = machine_info()
    log(f"benchmark {bench.name}: {bench.description}")
    log(
        f"machine: {machine['cpu_model']}, {machine['usable_cores']} usable cores, torch {machine['torch']} "
        f"({machine['torch_num_threads']} threads), commit {machine['git_commit'] or 'unknown'}"
    )
    checks = None
    if bench.checks is not None:
        try:
            checks = bench.checks()
        except Exception as exc:
            checks = {"error": f"{type(exc).__name__}: {exc}"}
        log(f"checks: {checks}")

    rows: list[dict[str, Any]] = []
    for case in bench.cases:
        rows.extend(run_case(case, bench.timing, log))

    # ratios measured in this run
    for r in rows:
        t_ref = _time_of(rows, r["case"], bench.reference)
        r["ratio_to_reference"] = t_ref / r["median_s"] if (t_ref is not None and r["status"] == "ok") else None
    ratios = []
    for case in bench.cases:
        entry: dict[str, Any] = {"case": case.name, "params": dict(case.params)}
        for label, num, den in bench.ratios:
            t_num, t_den = _time_of(rows, case.name, num), _time_of(rows, case.name, den)
            entry[label] = t_num / t_den if (t_num is not None and t_den is not None) else None
        ratios.append(entry)

    doc: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "benchmark": bench.name,
        "description": bench.description,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine,
        "settings": dict(bench.settings),
        "timing": {**measure.__kwdefaults__, **bench.timing},
        "reference": bench.reference,
        "ratio_definitions": {label: f"time({num}) / time({den})" for label, num, den in bench.ratios},
        "checks": checks,
        "results": rows,
        "ratios": ratios,
        "elapsed_s": None,
    }
    if extra:
        doc.update(extra)

    doc["machine"]["load_average_1m_end"] = _load_average()
    log("")
    log(format_table(doc))
    load = doc["machine"]["load_average_1m_end"]
    if load is not None and machine["usable_cores"] and load > machine["usable_cores"] + 1:
        log(
            f"warning: load average {load:.1f} on {machine['usable_cores']} cores; other processes may have "
            "disturbed these timings"
        )
    doc["elapsed_s"] = time.perf_counter() - started

    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        json_path = out / f"{bench.name}.json"
        json_path.write_text(json.dumps(doc, indent=1, default=str) + "\n")
        doc_paths = [str(json_path)]
        if plot:
            png_path = out / f"{bench.name}.png"
            plot_results(doc, png_path, x_key=bench.plot_x, panel_key=bench.plot_panels)
            doc_paths.append(str(png_path))
        log("wrote " + ", ".join(doc_paths))
    return doc


def format_table(doc: dict[str, Any]) -> str:
    """The results table: one row per (case, provider), with the speed-up over the reference, then the
    named ratios per case."""
    ref = doc["reference"]
    header = ["case", "provider", "median", "IQR", f"speed-up vs {ref}"]
    lines_rows = []
    for r in doc["results"]:
        if r["status"] == "ok":
            lines_rows.append(
                [
                    r["case"],
                    r["provider"],
                    _fmt_time(r["median_s"]),
                    _fmt_time(r["iqr_s"]),
                    _fmt_ratio(r["ratio_to_reference"]),
                ]
            )
        else:
            lines_rows.append([r["case"], r["provider"], r["status"], "", ""])
    out = [_table(header, lines_rows)]
    labels = list(doc["ratio_definitions"])
    if labels:
        out.append("")
        out.append("ratios (" + "; ".join(f"{k} = {v}" for k, v in doc["ratio_definitions"].items()) + "):")
        out.append(_table(["case"] + labels, [[e["case"]] + [_fmt_ratio(e[k]) for k in labels] for e in doc["ratios"]]))
    return "\n".join(out)


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    fmt = lambda row: "  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip()
    return "\n".join([fmt(header), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows])


def plot_results(doc: dict[str, Any], path: Path | str, x_key: str | None = None, panel_key: str | None = None) -> None:
    """Median time per provider (log scale, IQR as error bars), one panel per value of ``panel_key``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in doc["results"] if r["status"] == "ok"]
    case_index = {}
    for r in doc["results"]:
        case_index.setdefault(r["case"], len(case_index))
    panels = sorted({str(r["params"].get(panel_key)) for r in doc["results"]}) if panel_key else [None]
    providers = list(dict.fromkeys(r["provider"] for r in doc["results"]))

    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        for provider in providers:
            pts = [
                r
                for r in rows
                if r["provider"] == provider and (panel is None or str(r["params"].get(panel_key)) == panel)
            ]
            if not pts:
                continue
            xs = [r["params"][x_key] if x_key else case_index[r["case"]] for r in pts]
            ys = [r["median_s"] * 1e3 for r in pts]
            lo = [(r["median_s"] - r["q1_s"]) * 1e3 for r in pts]
            hi = [(r["q3_s"] - r["median_s"]) * 1e3 for r in pts]
            ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", capsize=3, label=provider)
        ax.set_yscale("log")
        ax.set_xlabel(x_key or "case")
        ax.set_ylabel("time per call [ms]")
        ax.set_title(f"{panel_key} = {panel}" if panel is not None else doc["benchmark"])
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    m = doc["machine"]
    fig.suptitle(
        f"{doc['benchmark']}: {m['cpu_model']}, {m['torch_num_threads']} threads, torch {m['torch']}", fontsize=9
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------------------
# command line, shared by the bench modules and ``fastso3 bench``
# ---------------------------------------------------------------------------------------------------------
def default_results_dir() -> Path:
    return Path(__file__).resolve().parent / "results"


def main(make_benchmark: Callable[[bool], Benchmark], argv: list[str] | None = None) -> int:
    """``python benchmarks/bench_<name>.py [--quick] [--out DIR] [--threads N] [--no-plot]``."""
    parser = argparse.ArgumentParser(description="run one fastso3 benchmark")
    parser.add_argument("--quick", action="store_true", help="a few small cases, for smoke tests")
    parser.add_argument("--out", type=Path, default=None, help="output directory (default: benchmarks/results)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads before running")
    parser.add_argument("--no-plot", action="store_true", help="do not write the PNG")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    bench = make_benchmark(args.quick)
    run_benchmark(
        bench,
        args.out or default_results_dir(),
        plot=not args.no_plot,
        extra={"command": sys.argv, "quick": args.quick},
    )
    return 0
