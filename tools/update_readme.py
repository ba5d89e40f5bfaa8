"""Regenerate the README's accuracy and speed tables from ``benchmarks/results/``.

    python tools/update_readme.py

Replaces the text between ``<!-- NAME -->`` and ``<!-- /NAME -->`` markers.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def accuracy_table(r: dict) -> str:
    lines = [
        "| setup | stamp | galaxies | median err/peak | p99 | max | max abs flux err | "
        "redrawn (GalSim FFT > limit) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, s in r["setups"].items():
        st = s["setup"]
        e, f = s["err_over_peak"], s["rel_flux_err"]
        lines.append(
            f'| {name} | {st["nx"]}x{st["nx"]} at {st["scale"]}"/px, hlr {st["hlr"][0]}-'
            f'{st["hlr"][1]}" | {s["n"]} | {e["50"]:.1e} | {e["99"]:.1e} | {e["100"]:.1e} | '
            f"{f['100']:.1e} | {s['skipped_galsim_too_large']} |"
        )
    return "\n".join(lines)


def replace(text: str, name: str, body: str) -> str:
    pat = re.compile(rf"(<!-- {name} -->\n).*?(\n<!-- /{name} -->)", re.S)
    if not pat.search(text):
        raise SystemExit(f"README has no <!-- {name} --> block")
    return pat.sub(lambda m: m.group(1) + body + m.group(2), text)


def main():
    readme = ROOT / "README.md"
    text = readme.read_text()
    res = ROOT / "benchmarks" / "results"
    acc = res / "accuracy.json"
    if acc.exists():
        text = replace(text, "ACCURACY_TABLE", accuracy_table(json.loads(acc.read_text())))
    speed = res / "render-cpu.md"
    if speed.exists():
        text = replace(text, "SPEED_TABLE", speed.read_text().strip())
    readme.write_text(text)


if __name__ == "__main__":
    main()
