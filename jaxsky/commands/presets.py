"""``jaxsky presets``: list galaxy presets and survey conditions, or show one in full."""

from __future__ import annotations

import json

__all__ = ["register"]


def _describe(name):
    from jaxsky.data.presets import get_preset
    from jaxsky.errors import UserError

    try:
        return get_preset(name)
    except (UserError, ValueError, TypeError, FileNotFoundError):
        return None  # catalogue presets need --catalog to be built


def _run(args):
    from jaxsky.data.presets import list_presets, preset_factories
    from jaxsky.data.surveys import SURVEYS, get_survey

    if args.show:
        if args.show.lower() in SURVEYS:
            print(json.dumps(get_survey(args.show).config(), indent=2))
            return
        if args.show not in preset_factories():
            raise ValueError(
                f"unknown preset or survey {args.show!r}; choose one of "
                f"{list_presets() + sorted(SURVEYS)}"
            )
        from jaxsky.data.presets import get_preset

        preset = get_preset(args.show, catalog=args.catalog)
        print(json.dumps(preset.config(), indent=2, default=str))
        return
    print("presets (jaxsky generate --preset NAME):")
    for name in list_presets():
        preset = _describe(name)
        desc = preset.description if preset is not None else _doc(name)
        print(f"  {name:18s} {desc}")
    print("surveys (jaxsky generate --survey NAME):")
    for name, s in SURVEYS.items():
        print(f"  {name:18s} {s.description}")


def _doc(name):
    from jaxsky.data.presets import preset_factories

    doc = (preset_factories()[name].__doc__ or "").strip().splitlines()
    return (doc[0] if doc else "") + " (needs --catalog)"


def register(sub) -> None:
    p = sub.add_parser(
        "presets",
        help="list galaxy presets and survey conditions",
        description="List presets and surveys; --show NAME prints one's full configuration.",
    )
    p.add_argument("--show", default=None, help="print the full config of a preset or survey")
    p.add_argument("--catalog", default=None, help="catalogue for catalogue presets")
    p.set_defaults(func=_run)
