"""Smoke tests: examples run, the CLI reports user errors in one line, outputs are atomic."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(*args, **kw):
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, cwd=ROOT, timeout=600, **kw
    )


def test_fit_example_recovers_truth():
    r = run("examples/fit_galaxy.py", "--steps", "500")
    assert r.returncode == 0, r.stderr
    fit = {
        ln.split()[0]: (float(ln.split()[2]), float(ln.split()[4]))
        for ln in r.stdout.splitlines()
        if " truth " in ln
    }
    assert abs(fit["flux"][1] / fit["flux"][0] - 1) < 0.05
    assert abs(fit["hlr"][1] / fit["hlr"][0] - 1) < 0.1
    assert abs(fit["g1"][1] - fit["g1"][0]) < 0.05


def test_gallery_example(tmp_path):
    out = tmp_path / "g.png"
    r = run("examples/render_gallery.py", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert out.stat().st_size > 10_000
    worst = float(r.stdout.strip().split("=")[-1])
    assert worst < 1e-4


def test_cli_demo_small(tmp_path):
    out = tmp_path / "demo"
    small = ["--n-galaxies", "2", "--quick", "--n-train", "96", "--n-test", "16"]
    r = run("-m", "jaxsky.cli", "demo", "--out", str(out), *small, "--vae-steps", "50")
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert all(a["max_err_over_peak"] < 1e-4 for a in summary["accuracy"].values())
    assert all(g["rel_diff"] < 1e-3 for g in summary["gradients"])
    assert (out / "gallery.png").exists() and (out / "summary.md").exists()
    # The pipeline part: data files, reloadable models, validation reports, a converged fit.
    assert {r["model"] for r in summary["emulators"]["table"]} == {"pcagp", "vae"}
    assert (out / "validation" / "comparison.md").exists()
    assert (out / "models" / "pcagp" / "emulator.json").exists()
    assert (out / "data" / "paper-train.h5").exists()
    assert summary["fit"]["converged"]
    assert all(abs(r["z"]) < 5 for r in summary["fit"]["rows"])
    # An existing output is never overwritten silently: one-line error, non-zero exit.
    r2 = run("-m", "jaxsky.cli", "demo", "--out", str(out), "--n-galaxies", "2", "--quick")
    assert r2.returncode == 2
    assert "exists" in r2.stderr and "Traceback" not in r2.stderr
    assert len(r2.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args", [["demo", "--n-galaxies", "0"], ["nonsense"]])
def test_cli_bad_input(tmp_path, args):
    r = (
        run("-m", "jaxsky.cli", *args, "--out", str(tmp_path / "x"))
        if args[0] == "demo"
        else run("-m", "jaxsky.cli", *args)
    )
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "x").exists()
