"""Commands that measure: ``fid``, ``eval``, ``stats`` and ``plot-prd``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from genbench import distributed
from genbench.api import compute_fid, evaluate, evaluate_models
from genbench.cli.commands import register_command
from genbench.cli.options import add_extraction_options, extraction_config
from genbench.errors import GenbenchError
from genbench.evaluation import Pipeline
from genbench.metrics.registry import METRICS
from genbench.report.outputs import check_out_dir
from genbench.report.text import eval_lines, fid_text, models_text

INPUTS = ("a folder, .zip, ADM-style .npz (images, or images with stored statistics), .npy "
          "(images or N×D float features), a data set name (fashion-mnist:train, "
          "fashion-mnist:test, digits), a statistics .npz or python:module:generator")


def _fid_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("a")
    parser.add_argument("b")
    add_extraction_options(parser)


def _fid(args: argparse.Namespace) -> dict:
    record = compute_fid(args.a, args.b, num_images=args.num_images,
                         config=extraction_config(args)).to_dict()
    return record if args.json else {"text": fid_text(record)}


def _eval_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("samples", nargs="+")
    parser.add_argument("--ref", required=True, help="the reference (any input)")
    parser.add_argument("--metrics", default=None,
                        help=f"comma-separated, from {','.join(METRICS)} (default: all that "
                             "the inputs can feed)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random choice")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="write result.json and plots")
    parser.add_argument("--per-class", action="store_true",
                        help="also FID, PRD and precision/recall per class (needs labels on "
                             "both sides)")
    add_extraction_options(parser)


def model_names(paths: list[str]) -> dict[str, str]:
    """Short unique names for model inputs: file or folder names, numbered if they clash."""
    names: dict[str, str] = {}
    for i, path in enumerate(paths):
        name = Path(path).stem or path
        names[name if name not in names else f"{name}#{i + 1}"] = path
    return names


def _eval(args: argparse.Namespace) -> dict:
    common = dict(metrics=args.metrics, seed=args.seed, num_images=args.num_images,
                  per_class=args.per_class, out_dir=args.out, config=extraction_config(args))
    if len(args.samples) == 1:
        record = evaluate(args.samples[0], args.ref, **common)
        return record if args.json else {"text": "\n".join(eval_lines(record))}
    record = evaluate_models(model_names(args.samples), args.ref, **common)
    return record if args.json else {"text": models_text(record)}


def _stats_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source")
    parser.add_argument("-o", "--output", required=True, help="statistics file to write")
    parser.add_argument("--force", action="store_true", help="overwrite an existing file")
    add_extraction_options(parser)


def _stats(args: argparse.Namespace) -> dict:
    output = Path(args.output)
    if output.is_dir():
        raise GenbenchError(f"-o {output}: is a folder; name the statistics file to write "
                            "(*.npz)")
    check_out_dir(output.parent, "-o")
    if output.exists() and not args.force:
        raise GenbenchError(f"{output}: exists; pass --force to overwrite it or choose "
                            "another -o")
    if output.suffix != ".npz":
        raise GenbenchError(f"{output}: a statistics file is an .npz; name it *.npz")
    pipeline = Pipeline(extraction_config(args))
    run = pipeline.statistics(args.source, args.num_images)
    if distributed.current().is_main:
        run.statistics.save(output)
    record = {"output": str(output), "source": run.source, "num_images": run.num_images,
              "protocol": run.statistics.protocol, "extractor": run.statistics.extractor,
              "weights_sha256": run.statistics.weights_sha256, "skipped": run.skipped,
              "seconds": run.seconds, "device": str(pipeline.device)}
    if not args.json:
        record = {"text": f"wrote {output}: {run.num_images} images, protocol "
                          f"{run.statistics.protocol}, device {pipeline.device}, "
                          f"{run.seconds:.1f} s"
                          + (f", skipped {len(run.skipped)}" if run.skipped else "")}
    return record


def _plot_prd_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", nargs="+", help="result.json files written by eval --out")
    parser.add_argument("-o", "--output", required=True,
                        help="image to write (.png, .pdf, .svg)")


def _plot_prd(args: argparse.Namespace) -> dict:
    from genbench.report.prd_plot import plot_prd_curves

    curves = {}
    for path in args.results:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise GenbenchError(f"{path}: not a readable result.json ({exc})") from None
        found = data.get("prd_curves")
        if not found:
            raise GenbenchError(f"{path}: holds no PRD curve; run genbench eval with prd "
                                "among --metrics and --out DIR")
        for label, curve in found.items():
            name = label if label not in curves else f"{label} ({path})"
            curves[name] = (curve["precision"], curve["recall"])
    plot_prd_curves(curves, args.output)
    return {"text": f"wrote {args.output} ({len(curves)} curves)"}


register_command("fid", "FID between two inputs", _fid_arguments, _fid,
                 f"FID between A and B. Each is {INPUTS}.")
register_command("eval", "several metrics from one feature pass", _eval_arguments, _eval,
                 "FID, KID, IS, PRD, precision/recall and density/coverage of SAMPLES "
                 "against --ref, from one feature pass per input. Several SAMPLES are "
                 f"several models: each is scored, and their PRD curves share one plot. "
                 f"Inputs: {INPUTS}.")
register_command("stats", "write feature statistics (.npz, pytorch-fid format)",
                 _stats_arguments, _stats)
register_command("plot-prd", "PRD curves of several result.json files on one plot",
                 _plot_prd_arguments, _plot_prd)
