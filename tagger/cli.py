"""The ``keychords`` command line."""

from __future__ import annotations

import argparse
import sys

IMPORTERS = {
    "crema": ("model_zoo.crema", "import_model_h5", "crema's model.h5 (needs h5py)"),
    "skey": ("model_zoo.skey", "import_checkpoint", "the official S-KEY skey.pt"),
    "btc": ("model_zoo.btc", "import_checkpoint", "a BTC-ISMIR19 checkpoint (.pt)"),
}


def _models_list(args) -> int:
    from model_zoo import registry
    cards = registry.list_models()
    if not cards:
        print(f"no models installed (user model directory: {registry.user_model_dir()})")
        return 0
    width = max(len(c.id) for c in cards)
    for c in cards:
        where = "built-in" if c.builtin else "user"
        flag = " (default)" if c.default else ""
        print(f"{c.id:<{width}}  {c.task:<5}  {c.architecture:<9}  "
              f"{c.parameters:>9,} params  {where}{flag}")
    print(f"user model directory: {registry.user_model_dir()}")
    return 0


def _models_import(args) -> int:
    import importlib

    from model_zoo.registry import ModelError
    module, func, _ = IMPORTERS[args.kind]
    importer = getattr(importlib.import_module(module), func)
    try:
        card = importer(args.path, model_id=args.name or args.kind)
    except ModelError as e:
        print(f"keychords: error: {e}", file=sys.stderr)
        return 1
    print(f"imported {args.path} as '{card.id}' ({card.task} model, "
          f"{card.parameters:,} parameters) -> {card.card_path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="keychords", description="Musical key and chord tagging for music libraries.")
    sub = parser.add_subparsers(dest="command", required=True)

    models = sub.add_parser("models", help="list or import models")
    msub = models.add_subparsers(dest="models_command", required=True)
    p = msub.add_parser("list", help="show built-in and user models")
    p.set_defaults(func=_models_list)
    p = msub.add_parser("import", help="convert a foreign checkpoint into a keychords model")
    p.add_argument("kind", choices=sorted(IMPORTERS),
                   help="; ".join(f"{k}: {v[2]}" for k, v in sorted(IMPORTERS.items())))
    p.add_argument("path", help="checkpoint file")
    p.add_argument("--name", help="model id to register (default: the kind)")
    p.set_defaults(func=_models_import)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
