"""Tests of the ``fastso3`` command line and of the benchmark harness."""

import importlib.util
import json
import subprocess
import sys
import time

import pytest

from fastso3 import cli

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SH_PROVIDERS = {"fastso3", "fastso3-reference", "e3nn", "sphericart"}


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _load_harness():
    directory = cli.find_benchmarks_dir()
    if str(directory) not in sys.path:
        sys.path.insert(0, str(directory))
    import harness

    return harness


# ------------------------------------------------------------------------------------------------
# fastso3 bench
# ------------------------------------------------------------------------------------------------
def test_bench_sh_quick_writes_json_and_png(tmp_path, capsys):
    assert cli.main(["bench", "sh", "--quick", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "speed-up vs e3nn" in printed and "e3nn/fastso3" in printed

    doc = json.loads((tmp_path / "sh.json").read_text())
    for key in (
        "schema_version",
        "benchmark",
        "machine",
        "settings",
        "timing",
        "reference",
        "ratio_definitions",
        "checks",
        "results",
        "ratios",
        "elapsed_s",
        "quick",
    ):
        assert key in doc, key
    assert doc["benchmark"] == "sh" and doc["quick"] is True and doc["reference"] == "e3nn"
    for key in ("cpu_model", "logical_cores", "torch_num_threads", "torch", "git_commit"):
        assert key in doc["machine"], key
    assert doc["settings"]["dtype"] == "float32" and doc["settings"]["lmax"] == [1, 3]

    # 2 measures x 2 lmax x 4 providers, each measured (or reported unavailable if not installed)
    results = doc["results"]
    assert len(results) == 16
    assert {r["provider"] for r in results} == SH_PROVIDERS
    assert {r["params"]["measure"] for r in results} == {"forward", "forward+backward"}
    assert {r["params"]["lmax"] for r in results} == {1, 3}
    for r in results:
        package = {"e3nn": "e3nn", "sphericart": "sphericart"}.get(r["provider"], "fastso3")
        expected = "ok" if _installed(package) else "unavailable"
        assert r["status"] == expected, (r["case"], r["provider"], r.get("reason"))
        if r["status"] == "ok":
            assert 0 < r["q1_s"] <= r["median_s"] <= r["q3_s"]
            assert r["iqr_s"] >= 0 and r["repeats"] >= 3 and len(r["times_s"]) == r["repeats"]
        if r["provider"] == "e3nn" and r["status"] == "ok":
            assert r["ratio_to_reference"] == pytest.approx(1.0)

    assert len(doc["ratios"]) == 4
    for entry in doc["ratios"]:
        assert set(entry) >= {"case", "params", "e3nn/fastso3", "fastso3/sphericart"}
        if _installed("e3nn"):
            assert entry["e3nn/fastso3"] > 0
    if _installed("e3nn"):
        assert all(v < 1e-4 for v in doc["checks"].values()), doc["checks"]

    png = (tmp_path / "sh.png").read_bytes()
    assert png.startswith(PNG_MAGIC) and len(png) > 10_000


def test_bench_lists_benchmarks(capsys):
    assert cli.main(["bench"]) == 0
    assert "sh" in capsys.readouterr().out


def test_bench_unknown_name(capsys):
    assert cli.main(["bench", "no_such_benchmark"]) == 2
    assert "unknown benchmark" in capsys.readouterr().out


def test_bench_missing_directory(tmp_path, capsys):
    assert cli.main(["bench", "sh", "--dir", str(tmp_path / "nowhere")]) == 2
    assert "no benchmarks directory" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------
# the harness on its own (generic: fake providers)
# ------------------------------------------------------------------------------------------------
def test_harness_statuses_and_ratios(tmp_path):
    harness = _load_harness()

    def sleeper(seconds):
        return lambda: lambda: time.sleep(seconds)

    def missing():
        raise harness.Unavailable("not installed here")

    def broken():
        raise RuntimeError("boom")

    bench = harness.Benchmark(
        name="fake",
        description="a fake benchmark",
        cases=[
            harness.Case(
                "small", {"n": 1}, {"ref": sleeper(0.004), "fast": sleeper(0.001), "gone": missing, "bad": broken}
            ),
            harness.Case("large", {"n": 2}, {"ref": sleeper(0.004), "fast": sleeper(0.002)}),
        ],
        reference="ref",
        ratios=[("ref/fast", "ref", "fast"), ("fast/gone", "fast", "gone")],
        plot_x="n",
        timing={"warmup": 1, "min_repeats": 3, "max_repeats": 5, "min_time": 0.0, "block_time": 0.0},
    )
    lines = []
    doc = harness.run_benchmark(bench, tmp_path, log=lines.append)
    status = {(r["case"], r["provider"]): r["status"] for r in doc["results"]}
    assert status[("small", "gone")] == "unavailable"
    assert status[("small", "bad")] == "error"
    assert status[("small", "ref")] == status[("small", "fast")] == "ok"
    fast = next(r for r in doc["results"] if r["case"] == "small" and r["provider"] == "fast")
    assert fast["median_s"] >= 0.001
    # sleeps of 4 ms vs 1 ms: the fast provider is faster than the reference, whatever the machine load
    assert fast["ratio_to_reference"] > 1.0
    small = doc["ratios"][0]
    assert small["ref/fast"] > 1.0 and small["fast/gone"] is None
    table = "\n".join(lines)
    assert "unavailable" in table and "error" in table and "speed-up vs ref" in table
    assert json.loads((tmp_path / "fake.json").read_text())["benchmark"] == "fake"
    assert (tmp_path / "fake.png").read_bytes().startswith(PNG_MAGIC)


def test_measure_counts_calls():
    harness = _load_harness()
    calls = []
    result = harness.measure(
        lambda: calls.append(1), warmup=2, min_repeats=4, max_repeats=4, min_time=0.0, block_time=1e-4
    )
    assert result["repeats"] == 4
    assert len(calls) == 2 + 4 * result["number"]
    assert result["q1_s"] <= result["median_s"] <= result["q3_s"]


# ------------------------------------------------------------------------------------------------
# fastso3 check and fastso3 demo
# ------------------------------------------------------------------------------------------------
def test_check_passes(capsys):
    assert cli.main(["check", "--lmax", "4"]) == 0
    out = capsys.readouterr().out
    assert "all checks passed" in out
    assert "reference float64" in out and "|D(R1R2)-D(R1)D(R2)|" in out


def test_demo_quick_in_process():
    lines = []
    assert cli.run_demo(n_points=200, timing_points=2000, quick=True, out=lines.append) == 0
    text = "\n".join(lines)
    for section in cli.DEMO_SECTIONS:
        assert section.title in text
    assert "PASS" in text and "all sections ran" in text
    assert ("speed-up fwd" in text) == _installed("e3nn")


def test_demo_sections_are_extensible_and_failures_reported(monkeypatch):
    ran = []
    sections = [
        cli.DemoSection("first", lambda ctx: ran.append("first")),
        cli.DemoSection("broken", lambda ctx: 1 / 0),
        cli.DemoSection("last", lambda ctx: ran.append("last")),
    ]
    monkeypatch.setattr(cli, "DEMO_SECTIONS", sections)
    lines = []
    assert cli.run_demo(n_points=10, out=lines.append) == 1
    assert ran == ["first", "last"]
    text = "\n".join(lines)
    assert "ZeroDivisionError" in text and "FAILED: broken" in text


@pytest.mark.slow
def test_main_demo_trains_and_runs_md(tmp_path):
    """``fastso3 demo`` (what ``make demo`` runs), shortened: training, validation errors, plots, NVE MD."""
    lines = []
    assert cli.run_main_demo(0.05, str(tmp_path), out=lines.append) == 0
    text = "\n".join(lines)
    assert "energy MAE (meV/atom)" in text and "total energy drift" in text and "against EMT" in text
    assert (tmp_path / "parity_forces.png").exists() and (tmp_path / "model.pt").exists()


@pytest.mark.slow
def test_kernel_demo_command_runs_every_section():
    """The real ``fastso3 demo --kernels``, in a fresh interpreter (its duration is a benchmark, not asserted here)."""
    proc = subprocess.run(
        [sys.executable, "-m", "fastso3.cli", "demo", "--kernels"], check=False, capture_output=True, text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "all sections ran" in proc.stdout
