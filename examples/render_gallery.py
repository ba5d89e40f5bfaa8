"""Render a gallery of galaxies with jaxsky next to GalSim and save it as a PNG.

python examples/render_gallery.py --out gallery.png
"""

from __future__ import annotations

import argparse

from jaxsky.demo import gallery_figure


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="gallery.png")
    args = ap.parse_args(argv)
    worst = gallery_figure(args.out)
    print(f"wrote {args.out}; max |jaxsky - GalSim| / peak = {worst:.1e}")


if __name__ == "__main__":
    main()
