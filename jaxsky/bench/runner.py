"""The benchmark orchestrator behind ``jaxsky bench`` and ``python benchmarks/run.py``.

Each area is a function ``(Context) -> {"rows": [...]} | {"status": "skipped: ..."}`` run
in this process; an area whose module is not built yet reports "skipped: not available",
and an area that raises is recorded as an error without stopping the others. Results go to
``<out>/<platform>-<device>[-quick].json`` and ``.md`` (atomic writes).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from jaxsky._io import atomic_write_bytes

__all__ = [
    "AREAS",
    "run_benchmarks",
    "markdown",
    "results_table",
    "update_readme",
    "parse_only",
    "README_MARKERS",
]

README_MARKERS = ("<!-- bench-table:start -->", "<!-- bench-table:end -->")

AREAS = ("render", "grad", "predict", "train_step", "generate", "fit")


def _area_fns() -> dict[str, Callable]:
    from jaxsky.bench import emulate, pipeline, render

    return {
        "render": render.bench_render,
        "grad": render.bench_grad,
        "predict": lambda ctx: emulate.bench_emulators(ctx, areas=("predict",)),
        "train_step": lambda ctx: emulate.bench_emulators(ctx, areas=("train_step",)),
        "generate": pipeline.bench_generate,
        "fit": pipeline.bench_fit,
    }


def parse_only(only: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"render,grad"`` -> ("render", "grad"); unknown names raise ValueError."""
    if only is None or only == "" or only == ():
        return AREAS
    names = [s.strip() for s in (only.split(",") if isinstance(only, str) else only)]
    bad = [s for s in names if s not in AREAS]
    if bad:
        raise ValueError(f"--only {','.join(bad)}: unknown area; choose from {','.join(AREAS)}")
    return tuple(dict.fromkeys(names))


def _run_areas(ctx, names, fns, on_area=lambda areas: None):
    from jaxsky.bench._util import memory

    areas = {}
    both = {"predict", "train_step"} <= set(names)
    for name in names:
        if name == "train_step" and both:
            continue  # measured together with predict (same trained emulators)
        ctx.log(f"== {name}")
        t0 = time.perf_counter()
        try:
            if name == "predict" and both:
                from jaxsky.bench.emulate import bench_emulators

                res = bench_emulators(ctx)
            else:
                res = fns[name](ctx)
        except Exception as err:
            res = {
                "status": f"error: {type(err).__name__}: {err}"[:500],
                "traceback": traceback.format_exc()[-2000:],
            }
        res.setdefault("status", "ok")
        res["wall_s"] = time.perf_counter() - t0
        res["memory_after"] = memory()
        if name == "predict" and both:
            rows = res.pop("rows", [])
            areas["predict"] = {**res, "rows": [r for r in rows if r.get("area") == "predict"]}
            areas["train_step"] = {
                **res,
                "rows": [r for r in rows if r.get("area") == "train_step"],
            }
        else:
            areas[name] = res
        on_area({k: areas[k] for k in names if k in areas})
    return {k: areas[k] for k in names if k in areas}


def run_benchmarks(
    *,
    quick: bool = False,
    only=None,
    out="benchmarks/results",
    overwrite: bool = False,
    seed: int = 0,
    log: Callable[[str], None] | None = print,
) -> dict:
    """Run the selected areas; write JSON + markdown to ``out``; return the results dict."""
    # `import jaxsky` already gave XLA's CPU pool spare threads before JAX started, so that
    # batched LAPACK calls cannot deadlock it (jaxlib 0.10; see jaxsky._cpu_pool).
    from jaxsky import _cpu_pool

    # JAX is imported here, not at module level: the CLI builds its parser from this module.
    from jaxsky.bench._util import Context, device_info, device_tag, memory

    names = parse_only(only)
    out = Path(out)
    stem = device_tag() + ("-quick" if quick else "")
    targets = [out / f"{stem}.json", out / f"{stem}.md"]
    for t in targets:
        if t.exists() and not overwrite:
            raise FileExistsError(f"{t} exists; pass --overwrite to replace it")
    logger = log or (lambda s: None)
    t0 = time.perf_counter()
    load_start = _load()
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    out.mkdir(parents=True, exist_ok=True)

    def write(areas, complete):
        # Rewritten after every area, so a long run that is stopped keeps what it measured.
        res = dict(
            tag=stem,
            quick=quick,
            seed=seed,
            started=started,
            complete=complete,
            total_s=time.perf_counter() - t0,
            device=device_info(),
            cpu_pool_workaround=_cpu_pool.APPLIED,
            nproc=os.environ.get("NPROC"),
            # other processes on the machine inflate times: 1-minute load at start and now
            load_avg=[load_start, _load()],
            memory=memory(),
            areas=areas,
        )
        atomic_write_bytes(
            targets[0], json.dumps(res, indent=1, default=str).encode(), overwrite=True
        )
        atomic_write_bytes(targets[1], markdown(res).encode(), overwrite=True)
        return res

    with tempfile.TemporaryDirectory(prefix="jaxsky-bench-") as tmp:
        ctx = Context(quick=quick, seed=seed, tmp=Path(tmp), log=lambda s: logger(f"[bench] {s}"))
        areas = _run_areas(ctx, names, _area_fns(), lambda a: write(a, False))
    result = write(areas, True)
    logger(markdown(result))
    logger(f"[bench] wrote {targets[0]} and {targets[1]}")
    return result


def _load():
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):  # not available on this platform
        return None


def _fmt(x, spec=".3g"):
    return "" if x is None else format(x, spec)


def markdown(r: dict) -> str:
    """One device's results as a markdown table (rows: area, case, implementation)."""
    d = r["device"]
    lines = [
        f"### {d['device_kind']} ({d['platform']}, {d['local_devices']} local device(s), "
        f"{d['cpu_cores']} CPU cores){' - quick' if r.get('quick') else ''}"
        f"{'' if r.get('complete', True) else ' - INCOMPLETE (stopped early)'}",
        "",
        f"jaxsky {d['jaxsky']}, JAX {d['jax']}, GalSim {d['galsim']}; total {r['total_s']:.0f} s; "
        f"host peak RSS {r['memory']['host_peak_rss_mb']:.0f} MiB"
        + (
            f"; device peak {r['memory']['device_peak_mb_in_use']:.0f} MiB"
            if "device_peak_mb_in_use" in r["memory"]
            else ""
        )
        + (
            f"; 1-min load average {r['load_avg'][0]} at start, {r['load_avg'][1]} at end"
            if None not in r.get("load_avg", [None])
            else ""
        )
        + ".",
        "",
        "| area | case | implementation | batch | rate | compile s | run s | vs reference |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for area, res in r["areas"].items():
        rows = res.get("rows") or []
        if not rows:
            lines.append(f"| {area} | | {res.get('status', 'no rows')} | | | | | |")
        for row in rows:
            if "rate" not in row:
                lines.append(
                    f"| {area} | {row.get('case', '')} | {row.get('impl', '')}: "
                    f"{row.get('status', '')} | | | | | |"
                )
                continue
            extra = (
                f" (grad/fwd {row['grad_over_forward']:.2f})" if "grad_over_forward" in row else ""
            )
            lines.append(
                f"| {area} | {row['case']} | {row['impl']}{extra} | {row['batch']} | "
                f"{row['rate']:.4g} {row['unit']} | {_fmt(row.get('compile_s'), '.1f')} | "
                f"{row['run_s']:.3g} | {_fmt(row.get('vs_reference'), '.2f')} |"
            )
        if res.get("errors"):
            for k, v in res["errors"].items():
                lines.append(f"| {area} | {k} | error: {v[:120]} | | | | | |")
    return "\n".join(lines) + "\n"


def results_table(results_dir="benchmarks/results", *, include_quick: bool = False) -> str:
    """The README's performance section: every ``*.json`` result in ``results_dir``."""
    parts = []
    for p in sorted(Path(results_dir).glob("*.json")):
        try:
            r = json.loads(p.read_text())
        except json.JSONDecodeError:
            continue
        if "areas" not in r or (r.get("quick") and not include_quick):
            continue
        parts.append(markdown(r))
    if not parts:
        return f"No benchmark results in {results_dir} (run `jaxsky bench`).\n"
    return "\n".join(parts)


def update_readme(readme, results_dir="benchmarks/results") -> str:
    """Replace the text between :data:`README_MARKERS` in ``readme`` with the results table."""
    path = Path(readme)
    text = path.read_text()
    start, end = README_MARKERS
    i, j = text.find(start), text.find(end)
    if i < 0 or j < i:
        raise ValueError(f"{path} has no '{start}' ... '{end}' block to fill")
    table = results_table(results_dir)
    new = text[: i + len(start)] + "\n" + table + text[j:]
    atomic_write_bytes(path, new.encode(), overwrite=True)
    return table
