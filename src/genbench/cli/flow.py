"""Commands of the rectified-flow generators: ``train rf``, ``reflow`` and ``sample``.

``train rf`` trains a 1-rectified flow on images, or a 2-rectified flow(++) on reflow pairs
from its teacher; ``reflow`` and ``sample`` take any generator checkpoint (a flow, an RCG
checkpoint set)."""

from __future__ import annotations

import argparse

from genbench.cli.commands import register_command
from genbench.cli.options import add_device_option, add_output_options
from genbench.cli.train import TRAINERS
from genbench.errors import GenbenchError


def add_sampler_options(parser: argparse.ArgumentParser, *, what: str = "the model's "
                        "recorded default") -> None:
    group = parser.add_argument_group("sampler")
    group.add_argument("--solver", default=None, choices=("euler", "heun"),
                       help=f"ODE solver (default: {what})")
    group.add_argument("--nfe", type=int, default=None,
                       help="network evaluations (Heun: odd); 1 is one Euler step")
    group.add_argument("--rule", default=None, choices=("standard", "new"),
                       help="update rule: standard, or the paper's new x̂-based rule")
    group.add_argument("--grid", default=None, metavar="T0,T1,...,0",
                       help="explicit descending time grid, e.g. 0.99999,0.6,0")
    group.add_argument("--guidance", type=float, default=None, metavar="TAU",
                       help="RCG: classifier-free guidance scale τ (linear schedule)")
    group.add_argument("--rdm-steps", type=int, default=None,
                       help="RCG: DDIM steps of the representation generator")
    group.add_argument("--eta", type=float, default=None, help="RCG: DDIM eta")


def sampler_from_args(args: argparse.Namespace, base):
    """``base`` (a model's sampler) with the sampler options given on the command line."""
    from genbench.generators.settings import apply_settings, parse_setting

    changes = {key: getattr(args, key) for key in ("solver", "nfe", "rule", "guidance",
                                                    "rdm_steps", "eta")}
    if args.grid:
        changes["grid"] = parse_setting("grid", args.grid, "--grid")
    return apply_settings(base, changes, "sampler options")


# ---------------------------------------------------------------- train rf


def _train_rf_arguments(parser: argparse.ArgumentParser) -> None:
    from genbench.generators.nets.unet import UNET_CONFIGS
    from genbench.generators.rectified_flow.training import RECIPES

    parser.add_argument("--out", required=True, metavar="RUN_DIR",
                        help="run directory (created; an existing one of the same settings "
                             "is resumed)")
    parser.add_argument("--data", default=None, help="training images (1-RF): a data set, "
                                                     "folder, zip or array file")
    parser.add_argument("--conditional", action="store_true",
                        help="class-conditional (labels from the data or the pairs)")
    parser.add_argument("--pairs", action="append", default=[], metavar="DIR",
                        help="reflow pair folder(s) from `genbench reflow` (2-RF); repeat "
                             "to add inverted real pairs (config G)")
    parser.add_argument("--init", default=None, metavar="MODEL",
                        help="start from this model (2-RF: its 1-RF teacher)")
    parser.add_argument("--recipe", default=None, choices=sorted(RECIPES),
                        help="1rf (default without pairs), or the paper's Table 1 rows A, C, "
                             "D (default with pairs: U-shaped t + pseudo-Huber), E, F (LPIPS)")
    parser.add_argument("--net", default="fmnist-xs", choices=sorted(UNET_CONFIGS),
                        help="U-Net configuration (a 2-RF takes its teacher's)")
    length = parser.add_mutually_exclusive_group(required=True)
    length.add_argument("--steps", type=int, default=None,
                        help="training length in optimizer steps (more than a finished run "
                             "directory's: it trains on from its last checkpoint)")
    length.add_argument("--images", type=int, default=None,
                        help="training length in images seen")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--grad-accum", type=int, default=1)
    parser.add_argument("--lr", type=float, default=None, help="override the recipe's")
    parser.add_argument("--warmup", type=int, default=None, help="override the recipe's")
    parser.add_argument("--ema", type=float, default=0.999)
    parser.add_argument("--clip", type=float, default=1.0, help="max gradient norm (0: off)")
    parser.add_argument("--amp", default="auto", choices=("auto", "bf16", "off"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint-every", type=int, default=500)
    parser.add_argument("--progress-every", type=int, default=50)
    group = parser.add_argument_group("training-loop evaluator")
    group.add_argument("--score-every", type=int, default=0, metavar="STEPS",
                       help="FID of a small sample every STEPS steps (needs --score-ref)")
    group.add_argument("--score-ref", default=None, help="reference for --score-every")
    group.add_argument("--score-images", type=int, default=500)
    group.add_argument("--score-nfe", type=int, default=1)
    group.add_argument("--score-solver", default="euler", choices=("euler", "heun"))
    group.add_argument("--grid-every", type=int, default=0, metavar="STEPS",
                       help="a PNG grid of 64 samples every STEPS steps")
    add_device_option(parser)
    add_output_options(parser)


def _train_rf(args: argparse.Namespace) -> dict:
    from dataclasses import replace

    from genbench.generators.rectified_flow.model import SamplerConfig
    from genbench.generators.rectified_flow.training import (
        NEEDS_LPIPS,
        RECIPES,
        FlowRun,
        ScoreConfig,
        train_flow,
    )
    from genbench.training.engine import TrainConfig

    recipe = RECIPES[args.recipe or ("D" if args.pairs else "1rf")]
    if args.lr is not None or args.warmup is not None:
        recipe = replace(recipe, lr=args.lr if args.lr is not None else recipe.lr,
                         warmup=args.warmup if args.warmup is not None else recipe.warmup)
    if args.score_every and not args.score_ref:
        raise GenbenchError("--score-every needs --score-ref (the reference images)")
    config = TrainConfig(seed=args.seed, total_steps=args.steps, total_images=args.images,
                         batch_size=args.batch_size, grad_accum=args.grad_accum, ema=args.ema,
                         ema_warmup=True, clip_grad_norm=args.clip or None, amp=args.amp,
                         checkpoint_every=args.checkpoint_every, device=args.device)
    score = ScoreConfig(every=args.score_every, reference=args.score_ref,
                        num_images=args.score_images,
                        sampler=SamplerConfig(args.score_solver, args.score_nfe),
                        grid_every=args.grid_every)
    run = FlowRun(data=args.data, recipe=recipe, train=config, net=args.net,
                  conditional=args.conditional, pairs=tuple(args.pairs), init=args.init,
                  score=score, progress_every=args.progress_every)
    lpips = None
    if recipe.loss in NEEDS_LPIPS:
        from genbench.perceptual.lpips import load_lpips
        lpips = load_lpips()
    summary = train_flow(run, args.out, quiet=args.quiet, lpips=lpips)
    if args.json:
        return summary
    return {"text": f"{run.kind} trained: {summary['steps']} steps in {args.out} "
                    f"(model.pt sha256 {summary.get('sha256', '?')[:16]}..., "
                    f"{summary['images_per_second']} img/s)"}


TRAINERS.register("rf", (_train_rf_arguments, _train_rf))


# ---------------------------------------------------------------- reflow


def _reflow_arguments(parser: argparse.ArgumentParser) -> None:
    from genbench.generators.rectified_flow.reflow import PAIR_SEED_BASE

    parser.add_argument("teacher", help="the 1-RF (or an RCG checkpoint set): a shipped name, "
                                        "model file or run directory")
    parser.add_argument("--out", required=True, metavar="DIR", help="pair folder (resumed)")
    parser.add_argument("-n", "--num-pairs", type=int, default=None,
                        help="pairs from seeds (not with --invert)")
    parser.add_argument("--invert", default=None, metavar="DATA",
                        help="instead: pairs of these real images and their inverted noise "
                             "(config G)")
    parser.add_argument("--invert-nfe", type=int, default=100)
    parser.add_argument("--first-seed", type=int, default=PAIR_SEED_BASE)
    parser.add_argument("--chunk-size", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=250)
    add_sampler_options(parser, what="the teacher's recorded full budget")
    add_device_option(parser)
    add_output_options(parser)


def _reflow(args: argparse.Namespace) -> dict:
    from genbench.generators.rectified_flow.model import FlowModel
    from genbench.generators.rectified_flow.reflow import generate_pairs, invert_real
    from genbench.generators.rectified_flow.training import load_images
    from genbench.generators.zoo import open_checkpoint
    from genbench.training.engine import run_device

    teacher = open_checkpoint(args.teacher)
    device = run_device(args.device)
    if args.invert:
        if args.num_pairs is not None:
            raise GenbenchError("give -n (pairs from seeds) or --invert DATA, not both")
        if not isinstance(teacher, FlowModel):
            raise GenbenchError(f"{args.teacher}: --invert needs a rectified flow teacher")
        data = load_images(args.invert, conditional=bool(teacher.spec.num_classes))
        meta = invert_real(teacher, args.out, images=data.images.numpy(),
                           labels=None if data.labels is None else data.labels.numpy(),
                           source=args.invert, nfe=args.invert_nfe,
                           chunk_size=args.chunk_size, batch_size=args.batch_size,
                           device=device, progress=not args.quiet)
    else:
        if args.num_pairs is None:
            raise GenbenchError("give -n/--num-pairs (or --invert DATA)")
        meta = generate_pairs(teacher, args.out, num_pairs=args.num_pairs,
                              sampler=sampler_from_args(args, teacher.default_sampler),
                              first_seed=args.first_seed, chunk_size=args.chunk_size,
                              batch_size=args.batch_size, device=device,
                              progress=not args.quiet)
    if args.json:
        return meta
    return {"text": f"{meta['num_pairs']} pairs in {args.out} ({meta['forward_passes']} "
                    "teacher forward passes)"}


register_command("reflow", "make reflow pairs (z, ODE(z)) of a 1-rectified flow",
                 _reflow_arguments, _reflow,
                 "Pairs are stored as seeds + uint8 images, chunk by chunk (resumable, split "
                 "across torchrun processes).")

# ---------------------------------------------------------------- sample


def _sample_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="a shipped name (fmnist-2rfpp, ...), model file or run "
                                      "directory")
    parser.add_argument("-n", "--num-images", type=int, required=True)
    parser.add_argument("-o", "--out", required=True, help="output .npz (ADM layout)")
    parser.add_argument("--first-seed", type=int, default=0, help="image i from seed "
                                                                  "first_seed + i")
    parser.add_argument("--class", dest="label", type=int, default=None,
                        help="every image of this class (default: class i mod C)")
    parser.add_argument("--batch-size", type=int, default=256)
    add_sampler_options(parser)
    add_device_option(parser)
    add_output_options(parser)


def _sample(args: argparse.Namespace) -> dict:
    import numpy as np

    from genbench.generators.export import write_samples
    from genbench.generators.zoo import open_checkpoint
    from genbench.training.engine import run_device

    model = open_checkpoint(args.model)
    sampler = sampler_from_args(args, model.default_sampler)
    labels = None
    if args.label is not None:
        classes = model.num_classes
        if not classes:
            raise GenbenchError(f"{args.model}: --class needs a class-conditional model")
        if not 0 <= args.label < classes:
            raise GenbenchError(f"--class must be in 0..{classes - 1}, got {args.label}")
        labels = np.full(args.num_images, args.label, dtype=np.int64)
    generator = model.generator(sampler, device=run_device(args.device),
                                batch_size=args.batch_size)
    record = write_samples(generator, args.out, num_images=args.num_images,
                           first_seed=args.first_seed, labels=labels, progress=not args.quiet)
    record["sampler"] = sampler.to_dict()
    if args.json:
        return record
    return {"text": f"{args.num_images} images of {generator.describe()} in {args.out}"}


register_command("sample", "sample a trained or shipped generator to an .npz",
                 _sample_arguments, _sample,
                 "Image i is drawn from seed first_seed + i, so any number of processes or "
                 "a rerun gives the same file.")
