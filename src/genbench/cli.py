"""The ``genbench`` command line. Results go to stdout (text, or one JSON object with
``--json``); progress bars, warnings and errors go to stderr. Errors are one line and exit 2.

Under ``torchrun --nproc_per_node=K -m genbench ...`` the images are split across processes and
only process 0 prints.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

from genbench import __version__, distributed
from genbench.api import Evaluator, compute_fid, evaluate, evaluate_models
from genbench.errors import GenbenchError
from genbench.extractors import EXTRACTORS
from genbench.features import CHUNK_SIZE
from genbench.metrics.registry import METRICS
from genbench.protocols import DEFAULT_PROTOCOL, PROTOCOLS


def _evaluation_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--protocol", default=DEFAULT_PROTOCOL, choices=sorted(PROTOCOLS),
                        help=f"preprocessing protocol (default {DEFAULT_PROTOCOL}: TF1 "
                             "bilinear, what papers report)")
    parser.add_argument("--num-images", type=int, default=None, metavar="N",
                        help="use the first N images of each input (default: all)")
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ...")
    parser.add_argument("--weights", default=None, metavar="PATH",
                        help="Inception weights file (also $GENBENCH_INCEPTION_WEIGHTS)")
    parser.add_argument("--extractor", default="inception", choices=sorted(EXTRACTORS))
    parser.add_argument("--compile", default="auto", choices=["auto", "yes", "no"],
                        help="torch.compile the network (auto: where a compiler/GPU exists)")
    parser.add_argument("--no-cache", action="store_true",
                        help="neither read nor write the feature cache")
    parser.add_argument("--skip-bad", action="store_true",
                        help="skip undecodable images (counted and reported) instead of "
                             "stopping")
    parser.add_argument("--chunk-size", type=int, default=CHUNK_SIZE,
                        help="images per cached chunk: the unit of resuming and of the split "
                             f"across torchrun processes (default {CHUNK_SIZE})")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="genbench", description="Faithful, fast metrics for generative image models.")
    parser.add_argument("--version", action="version", version=f"genbench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    fid = sub.add_parser("fid", help="FID between two inputs",
                         description="FID between A and B. Each is a folder, .zip, ADM-style "
                                     ".npz, .npy, a data set name (fashion-mnist:train, "
                                     "fashion-mnist:test, digits) or a statistics .npz.")
    fid.add_argument("a")
    fid.add_argument("b")
    _evaluation_options(fid)

    ev = sub.add_parser("eval", help="several metrics from one feature pass",
                        description="FID, KID, IS, PRD, precision/recall and density/coverage "
                                    "of SAMPLES against --ref, from one feature pass per "
                                    "input. Several SAMPLES are several models: each is "
                                    "scored, and their PRD curves share one plot.")
    ev.add_argument("samples", nargs="+")
    ev.add_argument("--ref", required=True, help="reference images (any source)")
    ev.add_argument("--metrics", default=None,
                    help=f"comma-separated, from {','.join(METRICS)} (default: all)")
    ev.add_argument("--seed", type=int, default=0, help="seed of every random choice")
    ev.add_argument("--out", default=None, metavar="DIR", help="write result.json and plots")
    ev.add_argument("--per-class", action="store_true",
                    help="also FID, PRD and precision/recall per class (needs labels on both "
                         "sides)")
    _evaluation_options(ev)

    plot = sub.add_parser("plot-prd", help="PRD curves of several result.json files on one "
                                           "plot")
    plot.add_argument("results", nargs="+", help="result.json files written by eval --out")
    plot.add_argument("-o", "--output", required=True, help="image to write (.png, .pdf, .svg)")

    cas = sub.add_parser("cas", help="Classification Accuracy Score of labelled samples",
                         description="Train a classifier only on the labelled SAMPLES, test "
                                     "it on REAL_TEST, and compare with the same recipe "
                                     "trained on REAL_TRAIN (cached).")
    cas.add_argument("samples", help="class folders, an .npz with arr_1 labels, or a data set")
    cas.add_argument("--real-train", required=True)
    cas.add_argument("--real-test", required=True)
    cas.add_argument("--recipe", default="auto", help="small-resnet, resnet50 or auto (by "
                                                       "image size)")
    cas.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs")
    cas.add_argument("--no-flip", action="store_true", help="no random horizontal flips")
    cas.add_argument("--nas", default="", help="Naive Augmentation Score: real + these "
                                               "percentages of synthetic, e.g. 25,50,100")
    cas.add_argument("--seed", type=int, default=0)
    cas.add_argument("--device", default="cpu")
    cas.add_argument("--out", default=None, metavar="DIR",
                     help="write cas.json and cas_per_class.png")
    cas.add_argument("--no-cache", action="store_true")
    cas.add_argument("--json", action="store_true")
    cas.add_argument("--quiet", action="store_true")

    stats = sub.add_parser("stats", help="write feature statistics (.npz, pytorch-fid format)")
    stats.add_argument("source")
    stats.add_argument("-o", "--output", required=True, help="statistics file to write")
    _evaluation_options(stats)

    weights = sub.add_parser("weights", help="show (or download) the Inception weights in use")
    weights.add_argument("--weights", default=None, metavar="PATH")
    weights.add_argument("--download", action="store_true",
                         help="fetch the official pytorch-fid file (needs the internet)")

    sub.add_parser("protocols", help="list the preprocessing protocols")
    return parser


def _evaluator_kwargs(args: argparse.Namespace) -> dict:
    compile_flag = {"auto": "auto", "yes": True, "no": False}[args.compile]
    return {"protocol": args.protocol, "extractor": args.extractor, "weights": args.weights,
            "device": args.device, "batch_size": args.batch_size, "compile": compile_flag,
            "use_cache": not args.no_cache, "skip_bad": args.skip_bad,
            "progress": not args.quiet, "chunk_size": args.chunk_size}


def _cmd_fid(args: argparse.Namespace) -> dict:
    result = compute_fid(args.a, args.b, num_images=args.num_images, **_evaluator_kwargs(args))
    record = result.to_dict()
    if not args.json:
        lines = [f"FID {result.fid:.4f}",
                 f"  protocol   {result.protocol}: {result.protocol_description}",
                 f"  extractor  {result.extractor}",
                 f"  weights    sha256 {result.weights_sha256 or 'unknown'}"]
        for name, side in zip("AB", result.inputs, strict=True):
            how = "statistics file" if side.from_statistics_file else (
                f"{side.extracted} extracted, {side.num_images - side.extracted} from cache"
                if side.num_images is not None else "")
            lines.append(f"  {name}          {side.source}: {side.num_images} images ({how})")
        lines.append(f"  time       {result.seconds:.1f} s")
        lines += [f"  note       {note}" for note in result.notes]
        record = {"text": "\n".join(lines)}
    return record


def _model_names(paths: list[str]) -> dict[str, str]:
    """Short unique names for model inputs: file or folder names, numbered if they clash."""
    names: dict[str, str] = {}
    for i, path in enumerate(paths):
        name = Path(path).stem or path
        names[name if name not in names else f"{name}#{i + 1}"] = path
    return names


def _format_record(record: dict) -> list[str]:
    lines = [f"{name:4s} " + ", ".join(f"{k} {v:.6g}" if isinstance(v, float) else f"{k} {v}"
                                      for k, v in values.items()
                                      if isinstance(v, float | int | str))
             for name, values in record["metrics"].items()]
    for cls, values in record.get("per_class", {}).items():
        lines.append(f"  class {cls}: " + ", ".join(
            f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in values.items()))
    lines.append(f"protocol {record['protocol']}, seed {record['seed']}, images "
                 f"{record['inputs']['samples']['num_images']} vs "
                 f"{record['inputs']['reference']['num_images']}, {record['seconds']:.1f} s")
    return lines + [f"note {n}" for n in record["notes"]]


def _cmd_eval(args: argparse.Namespace) -> dict:
    common = dict(metrics=args.metrics, seed=args.seed, num_images=args.num_images,
                  per_class=args.per_class, out_dir=args.out, **_evaluator_kwargs(args))
    if len(args.samples) == 1:
        record = evaluate(args.samples[0], args.ref, **common)
        return record if args.json else {"text": "\n".join(_format_record(record))}
    record = evaluate_models(_model_names(args.samples), args.ref, **common)
    if args.json:
        return record
    lines = []
    for name, model_record in record["models"].items():
        lines += [f"== {name}", *_format_record(model_record)]
    lines += [f"plot {p}" for p in record.get("plots", [])]
    return {"text": "\n".join(lines)}


def _cmd_plot_prd(args: argparse.Namespace) -> dict:
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


def _percent(value: float | None) -> str:
    return "  n/a" if value is None else f"{100 * value:5.1f}"


def _cmd_cas(args: argparse.Namespace) -> dict:
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
    if args.json:
        return record
    cas, real, gap = record["cas"], record["real_baseline"], record["gap"]
    k = cas["top5_k"]
    lines = [f"CAS   top-1 {100 * cas['top1']:.2f} %  top-{k} {100 * cas['top5']:.2f} %",
             f"real  top-1 {100 * real['top1']:.2f} %  top-{k} {100 * real['top5']:.2f} %",
             f"gap   top-1 {gap['top1_points']:+.2f} points ({100 * gap['top1_relative']:+.1f} "
             f"% relative), top-{k} {gap['top5_points']:+.2f} points",
             "per class (CAS / real):"]
    for row in record["per_class"]:
        lines.append(f"  {row['class']:3d} {row['name'][:18]:18s} {_percent(row['cas'])} / "
                     f"{_percent(row['real'])} %   ({row['train_samples']} samples)")
    lines.append(f"worst classes: {', '.join(record['worst_classes'])}")
    for pct, acc in record.get("nas", {}).items():
        lines.append(f"NAS +{pct}%: top-1 {100 * acc['top1']:.2f} %, top-{k} "
                     f"{100 * acc['top5']:.2f} %")
    lines.append(f"recipe {record['recipe']['name']}, seed {record['seed']}, "
                 f"{record['seconds']:.0f} s")
    lines += [f"note {n}" for n in record["notes"]]
    return {"text": "\n".join(lines)}


def _cmd_stats(args: argparse.Namespace) -> dict:
    evaluator = Evaluator(**_evaluator_kwargs(args))
    run = evaluator.statistics(args.source, args.num_images)
    if distributed.current().is_main:
        run.statistics.save(args.output)
    record = {"output": args.output, "source": run.source, "num_images": run.num_images,
              "protocol": run.statistics.protocol, "extractor": run.statistics.extractor,
              "weights_sha256": run.statistics.weights_sha256, "skipped": run.skipped,
              "seconds": run.seconds}
    if not args.json:
        record = {"text": f"wrote {args.output}: {run.num_images} images, protocol "
                          f"{run.statistics.protocol}, {run.seconds:.1f} s"
                          + (f", skipped {len(run.skipped)}" if run.skipped else "")}
    return record


def _cmd_weights(args: argparse.Namespace) -> dict:
    from genbench.extractors.inception_weights import (
        download_pytorch_fid_weights,
        load_inception_weights,
    )
    if args.download:
        download_pytorch_fid_weights()
    w = load_inception_weights(args.weights)
    return {"text": f"{w.source_path}\n  layout {w.layout}, sha256 {w.source_sha256}, "
                    f"classifier (logits) {'yes' if w.has_logits else 'no'}"}


def _cmd_protocols(args: argparse.Namespace) -> dict:
    return {"text": "\n".join(f"{p.name:12s} {p.description}" for p in PROTOCOLS.values())}


COMMANDS = {"fid": _cmd_fid, "eval": _cmd_eval, "plot-prd": _cmd_plot_prd, "cas": _cmd_cas,
            "stats": _cmd_stats,
            "weights": _cmd_weights, "protocols": _cmd_protocols}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    warnings.simplefilter("default")
    warnings.formatwarning = lambda msg, cat, *a, **k: f"genbench: warning: {msg}\n"
    try:
        ctx = distributed.init_distributed(getattr(args, "device", "cpu"))
        record = COMMANDS[args.command](args)
    except GenbenchError as exc:
        print(f"genbench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("genbench: interrupted; finished chunks are cached and the next run resumes",
              file=sys.stderr)
        return 130
    if ctx.is_main:
        print(record["text"] if "text" in record else json.dumps(record))
    return 0
