"""The benchmark entry point: ``jaxsky bench --quick --only render`` end to end (CI smoke test)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from jaxsky.bench import AREAS, parse_only, results_table
from jaxsky.bench._util import batch_for, device_tag, rate_row
from jaxsky.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def quick_render(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    assert main(["bench", "--quick", "--only", "render", "--out", str(out)]) == 0
    return out


def test_quick_render_writes_json_and_markdown(quick_render):
    tag = device_tag() + "-quick"
    r = json.loads((quick_render / f"{tag}.json").read_text())
    assert list(r["areas"]) == ["render"] and r["quick"] is True
    assert r["device"]["platform"] in ("cpu", "gpu", "tpu")
    rows = {row["impl"].split(" (")[0]: row for row in r["areas"]["render"]["rows"]}
    gs, jx = rows["galsim"], rows["jaxsky sharded grouped plans"]
    # Timings are recorded, never judged here (speed belongs in benchmarks/; the row
    # arithmetic is checked on fixed numbers in test_parse_only_and_helpers).
    assert {"rate", "run_s", "batch"} <= set(gs) and {"rate", "run_s", "compile_s"} <= set(jx)
    assert "vs_reference" in jx and r["device"]["cpu_cores"] >= 1
    assert r["memory"]["host_peak_rss_mb"] > 50
    md = (quick_render / f"{tag}.md").read_text()
    assert "| render | sersic_x_moffat_64 | galsim" in md
    # The README table is generated from the results directory.
    assert "sersic_x_moffat_64" in results_table(quick_render, include_quick=True)
    assert "No benchmark results" in results_table(quick_render)  # quick runs left out


def test_existing_results_need_overwrite(quick_render, capsys):
    assert main(["bench", "--quick", "--only", "render", "--out", str(quick_render)]) == 2
    err = capsys.readouterr().err
    assert "exists" in err and "--overwrite" in err and len(err.strip().splitlines()) == 1


def test_unknown_area_is_a_one_line_error(tmp_path, capsys):
    assert main(["bench", "--only", "render,warp", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "warp" in err and "render" in err and len(err.splitlines()) == 1
    assert not list(tmp_path.iterdir())


def test_parse_only_and_helpers():
    assert parse_only(None) == AREAS
    assert parse_only("grad, render,grad") == ("grad", "render")
    assert batch_for("cpu", 1, 32, 64) == 32
    assert batch_for("gpu", 2, 32, 64) == 32 * 64 * 2
    row = rate_row("c", "i", 10, 2.0, reference=2.5)  # fixed numbers, not a measurement
    assert row["rate"] == 5.0 and row["vs_reference"] == 2.0 and row["run_s"] == 2.0
    from jaxsky.bench.emulate import train_row

    # run time = fit time - compile time, per step (fixed numbers, not a measurement)
    step = train_row("f", 20, fit_s=3.0, compile_s=1.0, per_step=True)
    assert step["run_s"] == 2.0 and step["step_ms"] == 100.0 and step["rate"] == 10.0
    whole = train_row("f", 20, fit_s=3.0, compile_s=1.0, per_step=False)
    assert whole["batch"] == 1 and whole["rate"] == 0.5 and "step_ms" not in whole


def test_benchmarks_run_py_is_a_thin_wrapper():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and "--only" in proc.stdout and "--quick" in proc.stdout


def test_gpu_benchmark_example_smoke(tmp_path):
    """examples/gpu_benchmark.py runs tiny on a CPU and reports consistent rates."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "gpu_benchmark", ROOT / "examples/gpu_benchmark.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "r.json"
    argv = ["--profile", "exp_gauss", "--batch", "4,8", "--stamp", "16", "--repeats", "1"]
    assert mod.main([*argv, "--stream", "12", "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert [row["batch"] for row in r["render"]] == [4, 8]
    for row in r["render"]:  # recorded, not judged: speed belongs in benchmarks/
        assert {"stamps_per_s", "run_s", "compile_s"} <= set(row)
    assert r["stream"]["n"] == 12 and "stamps_per_s" in r["stream"]


def test_readme_table_is_generated_from_results(quick_render, tmp_path):
    from jaxsky.bench import README_MARKERS

    res = tmp_path / "results"
    res.mkdir()
    r = json.loads((quick_render / f"{device_tag()}-quick.json").read_text())
    r["quick"] = False  # pretend it is a full run: the README shows full runs only
    (res / "cpu-test.json").write_text(json.dumps(r))
    readme = tmp_path / "README.md"
    start, end = README_MARKERS
    readme.write_text(f"# x\n\n{start}\nold table\n{end}\n\nafter\n")
    assert main(["bench", "--readme", str(readme), "--out", str(res)]) == 0
    text = readme.read_text()
    assert "old table" not in text and text.endswith(f"{end}\n\nafter\n")
    assert "| render | sersic_x_moffat_64 | galsim" in text
    (tmp_path / "bare.md").write_text("no markers\n")
    assert main(["bench", "--readme", str(tmp_path / "bare.md"), "--out", str(res)]) == 2


def test_compile_clock_separates_compilation():
    import jax
    import jax.numpy as jnp

    from jaxsky.bench._util import CompileClock

    f = jax.jit(lambda x: jnp.cumsum(jnp.sin(x) * 3.0 + 0.5))
    x = np.linspace(0.0, 1.0, 97)
    with CompileClock() as first:
        jax.block_until_ready(f(x))
    with CompileClock() as again:  # cached: nothing traced or compiled
        jax.block_until_ready(f(x))
    # Counts of JAX's compile events, not timings: speed belongs in benchmarks/.
    assert first.events > 0 and again.events == 0


def test_emulator_area_fits_each_family_once(tmp_path):
    """The emulator area fits a family ONCE and derives both rows from that fit."""
    import jax.numpy as jnp

    from jaxsky.bench._util import Context
    from jaxsky.bench.emulate import _small_family_config, bench_emulators
    from jaxsky.emulators import EmulatorFamily, register_family

    calls = []

    def default_config():
        return {"steps": 1000, "n_hyper": 256, "patience": 3}

    def fit(ds, cfg, *, key):  # least squares (real work), recording the config it got
        calls.append(dict(cfg))
        a = np.column_stack([np.ones(len(ds.params)), ds.params])
        w, *_ = np.linalg.lstsq(a, np.asarray(ds.images).reshape(len(a), -1), rcond=None)
        return {"w": jnp.asarray(w, jnp.float32)}

    def predict(state, theta):
        return (jnp.concatenate([jnp.ones(1), theta]) @ state["w"]).reshape(32, 32)

    register_family(
        EmulatorFamily("bench-test-linear", default_config, fit, predict, lambda r, c, i: r)
    )
    cfg = _small_family_config("bench-test-linear", 7)
    assert cfg == {"steps": 7, "n_hyper": 64, "patience": None}
    ctx = Context(quick=True, seed=0, tmp=tmp_path, log=lambda s: None)
    try:
        res = bench_emulators(ctx, families=("bench-test-linear",))
    finally:  # leave the registry as other tests expect it
        from jaxsky.emulators import _base

        _base._FAMILIES.pop("bench-test-linear", None)
    assert "errors" not in res, res.get("errors")
    assert len(calls) == 1 and calls[0]["steps"] == res["train_steps"]
    rows = {r["area"]: r for r in res["rows"]}
    step, pred = rows["train_step"], rows["predict"]
    # Bookkeeping only (no timing values read): one fit gives both rows.
    assert step["batch"] == res["train_steps"]
    assert {"run_s", "fit_s", "compile_s", "step_ms"} <= set(step)
    assert pred["batch"] == ctx.batch(1024, 4096, accel_factor=256)
