"""Run a snippet in a fresh Python process (JAX's backends and pools start anew there)."""

from __future__ import annotations

import subprocess
import sys


def run_fresh(code: str, *args, env=None, timeout: float = 300) -> str:
    """Run ``code`` with ``args`` in a new interpreter; it must exit 0. Returns the text after
    ``RESULT`` on the last stdout line that starts with it."""
    proc = subprocess.run(
        [sys.executable, "-c", code, *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [s for s in proc.stdout.splitlines() if s.startswith("RESULT")][-1]
    return line[len("RESULT") :].strip()
