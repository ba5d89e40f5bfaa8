"""``jaxsky merge``: join shard files into one data set."""

from __future__ import annotations

__all__ = ["register"]


def _run(args):
    from jaxsky.data.merge import merge

    out = merge(args.out, args.shards, overwrite=args.overwrite)
    print(f"wrote {out}")


def register(sub) -> None:
    p = sub.add_parser(
        "merge",
        help="merge `jaxsky generate --shard k/K` outputs into one data set",
        description=(
            "Check that the shards come from the same configuration and cover every index "
            "exactly once, then write them as one file (identical to an unsharded run)."
        ),
    )
    p.add_argument("out", help="output .h5 file")
    p.add_argument("shards", nargs="+", help="shard files")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    p.set_defaults(func=_run)
