"""``genbench train rcg --stage encoder|rdm|pixel``: RCG's three stages, each resumable, in
one RCG run directory (see ``genbench.generators.rcg.training``). The pixel stage writes the
checkpoint set ``ROOT/rcg.pt``, which ``genbench sample``, ``eval`` (``ckpt:ROOT``) and
``reflow`` take like any generator."""

from __future__ import annotations

import argparse

from genbench.cli.flow import add_sampler_options, sampler_from_args
from genbench.cli.options import add_device_option, add_output_options
from genbench.cli.train import TRAINERS
from genbench.errors import GenbenchError


def _arguments(parser: argparse.ArgumentParser) -> None:
    from genbench.generators.nets.unet import UNET_CONFIGS
    from genbench.generators.rcg.encoder import ENCODER_CONFIGS
    from genbench.generators.rcg.rdm import MLP_CONFIGS
    from genbench.generators.rcg.training import STAGES
    from genbench.generators.rectified_flow.training import RECIPES

    parser.add_argument("--stage", required=True, choices=STAGES,
                        help="encoder (SSL, no labels), rdm (representation generator), "
                             "pixel (representation-conditioned flow; writes ROOT/rcg.pt)")
    parser.add_argument("--out", required=True, metavar="ROOT",
                        help="the RCG run directory (one sub-directory per stage; resumed)")
    parser.add_argument("--data", default=None,
                        help="encoder stage: training images (a data set, folder, zip or "
                             "array file); later stages use the encoder's")
    parser.add_argument("--encoder", default="fmnist", choices=sorted(ENCODER_CONFIGS),
                        help="encoder configuration")
    parser.add_argument("--rep-dim", type=int, default=None,
                        help="representation dimension (default: the configuration's)")
    parser.add_argument("--rdm", default="fmnist", choices=sorted(MLP_CONFIGS),
                        help="RDM configuration (SimpleMLP size)")
    parser.add_argument("--net", default="fmnist-xs", choices=sorted(UNET_CONFIGS),
                        help="pixel U-Net configuration")
    parser.add_argument("--pairs", action="append", default=[], metavar="DIR",
                        help="pixel stage: reflow pairs of an RCG teacher (a 2-RF++)")
    parser.add_argument("--init", default=None, metavar="RCG",
                        help="pixel stage with --pairs: the RCG teacher")
    parser.add_argument("--recipe", default=None, choices=sorted(RECIPES),
                        help="pixel stage: 1rf (default), or D with --pairs")
    parser.add_argument("--rep-dropout", type=float, default=0.1,
                        help="pixel stage: probability of the null representation")
    length = parser.add_mutually_exclusive_group(required=True)
    length.add_argument("--steps", type=int, default=None)
    length.add_argument("--images", type=int, default=None,
                        help="training length in images seen")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=None, help="override the stage's default")
    parser.add_argument("--ema", type=float, default=None,
                        help="EMA decay (default: none for the encoder, 0.999 otherwise)")
    parser.add_argument("--clip", type=float, default=1.0, help="max gradient norm (0: off)")
    parser.add_argument("--amp", default="auto", choices=("auto", "bf16", "off"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint-every", type=int, default=500)
    parser.add_argument("--progress-every", type=int, default=50)
    parser.add_argument("--half", action="store_true",
                        help="pixel stage: write rcg.pt with float16 weights")
    add_sampler_options(parser, what="Heun 11 NFE (Euler 1 with --pairs), DDIM 250 steps "
                                     "eta 1, guidance 0")
    add_device_option(parser)
    add_output_options(parser)


def _run(args: argparse.Namespace) -> dict:
    from dataclasses import replace

    from genbench.generators.rcg.model import RCGSampler
    from genbench.generators.rcg.training import (
        EncoderStage,
        PixelStage,
        RDMStage,
        train_encoder,
        train_pixel,
        train_rdm,
    )
    from genbench.generators.rectified_flow.model import SamplerConfig
    from genbench.generators.rectified_flow.training import RECIPES
    from genbench.training.engine import TrainConfig

    ema = args.ema if args.ema is not None else (None if args.stage == "encoder" else 0.999)
    config = TrainConfig(seed=args.seed, total_steps=args.steps, total_images=args.images,
                         batch_size=args.batch_size, ema=ema, ema_warmup=True,
                         clip_grad_norm=args.clip or None, amp=args.amp,
                         checkpoint_every=args.checkpoint_every, device=args.device)
    if args.stage != "pixel" and (args.pairs or args.init):
        raise GenbenchError("--pairs and --init belong to the pixel stage")
    if args.stage != "encoder" and args.data:
        raise GenbenchError("--data belongs to the encoder stage; later stages train on its "
                            "data")
    if args.stage == "encoder":
        if not args.data:
            raise GenbenchError("the encoder stage needs --data (the training images)")
        stage = EncoderStage(args.data, config, args.encoder, args.rep_dim)
        if args.lr is not None:
            stage = replace(stage, optim=replace(stage.optim, lr=args.lr))
        summary = train_encoder(stage, args.out, quiet=args.quiet,
                                progress_every=args.progress_every)
    elif args.stage == "rdm":
        stage = RDMStage(config, args.rdm)
        if args.lr is not None:
            stage = replace(stage, optim=replace(stage.optim, lr=args.lr))
        summary = train_rdm(stage, args.out, quiet=args.quiet,
                            progress_every=args.progress_every)
    else:
        recipe = RECIPES[args.recipe or ("D" if args.pairs else "1rf")]
        if args.lr is not None:
            recipe = replace(recipe, lr=args.lr)
        # a 2-RF++ student samples in one step by default (its pairs carry any guidance)
        base = RCGSampler(SamplerConfig("euler", 1)) if args.pairs else RCGSampler()
        sampler = sampler_from_args(args, base)
        stage = PixelStage(config, args.net, recipe, args.rep_dropout, tuple(args.pairs),
                           args.init, sampler)
        summary = train_pixel(stage, args.out, quiet=args.quiet, half=args.half,
                              progress_every=args.progress_every)
    if args.json:
        return summary
    return {"text": f"rcg {args.stage} trained: {summary['steps']} steps in {args.out} "
                    f"(sha256 {summary.get('sha256', '?')[:16]}...)"}


TRAINERS.register("rcg", (_arguments, _run))
