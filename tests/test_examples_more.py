"""Smoke tests for the examples that tie the parts together (small sizes, real computations)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(*args):
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, cwd=ROOT, timeout=900
    )


def test_emulator_inside_user_likelihood_recovers_truth():
    r = run("examples/emulator_likelihood.py", "--n-train", "256", "--steps", "300")
    assert r.returncode == 0, r.stderr
    vals = {
        ln.split()[0]: (float(ln.split()[2]), float(ln.split()[4]))
        for ln in r.stdout.splitlines()
        if " truth " in ln
    }
    assert abs(vals["flux"][1] / vals["flux"][0] - 1) < 0.03
    assert abs(vals["scale_radius"][1] / vals["scale_radius"][0] - 1) < 0.05
    assert abs(vals["g1"][1] - vals["g1"][0]) < 0.03
    assert abs(vals["g2"][1] - vals["g2"][0]) < 0.03


def test_paper_experiment_small(tmp_path):
    out = tmp_path / "exp"
    r = run(
        "examples/paper_experiment.py",
        *("--n-train", "96", "--n-test", "16", "--vae-steps", "30", "--out", str(out)),
    )
    assert r.returncode == 0, r.stderr
    rows = [ln for ln in r.stdout.splitlines() if "R2=" in ln]
    assert [ln.split()[0] for ln in rows] == ["pcagp", "vae"]
    assert (out / "compare" / "comparison.md").exists()
    assert (out / "models" / "pcagp" / "emulator.json").exists()


def test_fit_sersic_batch_example(tmp_path):
    cat = tmp_path / "cat.csv"
    r = run("examples/fit_sersic_batch.py", "--n", "8", "--nx", "24", "--out", str(cat))
    assert r.returncode == 0, r.stderr
    assert cat.exists() and len(cat.read_text().splitlines()) == 9  # header + 8 galaxies


def test_emulate_real_galaxies_example(tmp_path):
    out = tmp_path / "xdf.png"
    r = run("examples/emulate_real_galaxies.py", "--n", "60", "--steps", "100", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert out.stat().st_size > 10_000
    assert "conditions: flux, hlr, g1, g2" in r.stdout


def test_emulate_real_galaxies_example_cosmos_real(tmp_path):
    # The 5-galaxy AEGIS RealGalaxyCatalog shipped in tests/data (GalSim's format, see its README).
    out = tmp_path / "cosmos.png"
    cat = Path(__file__).parent / "data" / "AEGIS_F814w_catalog.fits"
    r = run(
        "examples/emulate_real_galaxies.py",
        *("--preset", "cosmos-real", "--catalog", str(cat), "--n", "40", "--steps", "60"),
        *("--out", str(out)),
    )
    assert r.returncode == 0, r.stderr
    assert out.stat().st_size > 10_000
    assert "conditions: mag" in r.stdout
