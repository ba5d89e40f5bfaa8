"""`jaxsky generate / merge / presets` from the command line: bad input, kill -9 and resume."""

import hashlib
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from jaxsky.cli import main
from jaxsky.data import load


def _sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.mark.parametrize(
    "args, words",
    [
        (["--preset", "nope"], "unknown preset 'nope'"),
        (["--preset", "paper", "--survey", "jwst"], "unknown survey 'jwst'"),
        (["--preset", "paper", "--n", "0"], "n=0"),
        (["--preset", "paper", "--n", "-5"], "n=-5"),
        (["--preset", "paper", "--shard", "3/2"], "--shard='3/2'"),
        (["--preset", "paper", "--shard", "half"], "k/K"),
        (["--preset", "paper", "--chunk", "0"], "chunk=0"),
        (["--preset", "paper", "--workers", "0"], "workers=0"),
        (["--preset", "cosmos-real", "--catalog", "MISSING/cat.fits"], "MISSING"),
        (["--preset", "bulge-disk", "--backend", "jaxsky"], "jaxsky backend"),
        (["--preset", "paper", "--range", "flux=1e5:1e4"], "inverted: (100000.0, 10000.0)"),
        (["--preset", "paper", "--range", "flux=2:2"], "empty"),
        (["--preset", "sersic", "--range", "flux=0:10"], "log-spaced but low=0.0"),
        (["--preset", "sersic", "--range", "n=0.1:3"], "allowed values lie in [0.3, 6.2]"),
        (["--preset", "paper", "--range", "g1=-0.9:0.9"], "|g| = 1.03"),
        (["--preset", "sersic", "--range", "g1=-0.1:0.1"], "cannot be changed"),
        (["--preset", "paper", "--range", "size=1:2"], "unknown parameter 'size'"),
        (["--preset", "paper", "--range", "flux=a:b"], "NAME=LOW:HIGH"),
        (["--preset", "xdf", "--range", "flux=1:2"], "does not accept"),
        (["--preset", "cosmos-real"], "needs a catalogue"),
    ],
)
def test_bad_input_one_line_no_output(tmp_path, capsys, args, words):
    out = tmp_path / "o.h5"
    argv = ["generate", "--n", "4", "--out", str(out), "--quiet", *args]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err, err
    assert list(tmp_path.iterdir()) == []


def test_range_override(tmp_path):
    out = tmp_path / "r.h5"
    argv = ["generate", "--preset", "paper", "--n", "6", "--out", str(out), "--quiet"]
    assert main([*argv, "--range", "flux=100:200", "--range", "g2=-0.1:0.2"]) == 0
    ds = load(out)
    assert ds.ranges["flux"] == (100.0, 200.0) and ds.ranges["g2"] == (-0.1, 0.2)
    assert np.all((ds.param("flux") >= 100) & (ds.param("flux") <= 200))
    assert np.all(ds.images.sum(axis=(1, 2)) <= 1.001 * ds.param("flux"))  # stamp clips light


def test_presets_listing(capsys):
    assert main(["presets"]) == 0
    text = capsys.readouterr().out
    for name in ("paper", "sersic", "bulge-disk", "lsst", "hsc", "des", "euclid-vis", "hst-acs"):
        assert f"  {name} " in text
    assert main(["presets", "--show", "lsst"]) == 0
    assert '"noise_sigma"' in capsys.readouterr().out
    assert main(["presets", "--show", "paper"]) == 0
    assert '"scale_radius"' in capsys.readouterr().out
    assert main(["presets", "--show", "nope"]) == 2


def test_merge_bad_input(tmp_path, capsys):
    assert main(["merge", str(tmp_path / "m.h5"), str(tmp_path / "none.h5")]) == 2
    assert "no data set" in capsys.readouterr().err
    assert not (tmp_path / "m.h5").exists()


def _children(pid):
    """Live (not zombie) child processes of ``pid`` (Linux /proc)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == pid and stat[0] != "Z":
                out.append(int(entry))
    return out


def _alive(pid):
    try:
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(sys.platform != "linux", reason="uses /proc")
def test_resume_after_kill_is_identical(tmp_path):
    n, chunk = 240, 6
    base = ["generate", "--preset", "paper", "--n", str(n), "--seed", "2", "--chunk", str(chunk)]
    killed = tmp_path / "k.h5"
    partial = tmp_path / "k.h5.partial"
    # Killed with two worker processes: they must not outlive their parent.
    cmd = [sys.executable, "-m", "jaxsky.cli", *base, "--out", str(killed), "--quiet"]
    proc = subprocess.Popen(
        [*cmd, "--workers", "2"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if partial.exists() and sum(p.name.startswith("chunk-") for p in partial.iterdir()) > 2:
            break
        time.sleep(0.01)
    workers = _children(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()
    assert len(workers) == 2
    deadline = time.time() + 30
    while time.time() < deadline and any(_alive(w) for w in workers):
        time.sleep(0.1)
    assert not any(_alive(w) for w in workers), "orphaned workers after kill -9"
    n_done = len([p for p in partial.iterdir() if p.name.startswith("chunk-")])
    assert 1 <= n_done < n // chunk
    assert not killed.exists()  # nothing incomplete at the final path
    # Without --resume the interrupted run is not clobbered.
    assert main([*base, "--out", str(killed), "--quiet"]) == 2
    assert main([*base, "--out", str(killed), "--quiet", "--resume"]) == 0
    assert not partial.exists()
    full = tmp_path / "f.h5"
    assert main([*base, "--out", str(full), "--quiet"]) == 0
    assert _sha(killed) == _sha(full)
    np.testing.assert_array_equal(load(killed).images, load(full).images)
