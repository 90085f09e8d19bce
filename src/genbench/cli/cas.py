"""The ``cas`` command: Classification Accuracy Score of labelled samples."""

from __future__ import annotations

import argparse

from genbench.cli.commands import register_command
from genbench.cli.options import add_device_option, add_output_options
from genbench.errors import GenbenchError
from genbench.report.text import cas_text


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("samples", help="class folders, an .npz with arr_1 labels, a data set "
                                        "or python:module:generator (class-conditional)")
    parser.add_argument("--real-train", required=True)
    parser.add_argument("--real-test", required=True)
    parser.add_argument("--recipe", default="auto", help="small-resnet, resnet50 or auto (by "
                                                         "image size)")
    parser.add_argument("--epochs", type=int, default=None, help="override the recipe's "
                                                                 "epochs")
    parser.add_argument("--no-flip", action="store_true", help="no random horizontal flips")
    parser.add_argument("--nas", default="", help="Naive Augmentation Score: real + these "
                                                  "percentages of synthetic, e.g. 25,50,100")
    parser.add_argument("--seed", type=int, default=0)
    add_device_option(parser)
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="write cas.json and cas_per_class.png")
    parser.add_argument("--no-cache", action="store_true")
    add_output_options(parser)


def _run(args: argparse.Namespace) -> dict:
    from genbench.cas import classification_accuracy_score

    try:
        nas = tuple(int(p) for p in args.nas.split(",") if p.strip())
    except ValueError:
        raise GenbenchError(f"--nas must be comma-separated integers, got {args.nas!r}") \
            from None
    options = {"epochs": args.epochs, "flip": False if args.no_flip else None}
    record = classification_accuracy_score(
        args.samples, real_train=args.real_train, real_test=args.real_test,
        recipe=args.recipe, recipe_options=options, seed=args.seed, nas=nas,
        device=args.device, out_dir=args.out, use_cache=not args.no_cache,
        progress=not args.quiet)
    return record if args.json else {"text": cas_text(record)}


register_command("cas", "Classification Accuracy Score of labelled samples", _arguments, _run,
                 "Train a classifier only on the labelled SAMPLES, test it on REAL_TEST, and "
                 "compare with the same recipe trained on REAL_TRAIN (cached).")
