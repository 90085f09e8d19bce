"""RCG on Fashion-MNIST 28×28, from scratch to the figures, resumable.

    python bench/rcg_fashion_mnist.py --preset full  --out DIR   # ≤ 6 h on 2 CPU cores
    python bench/rcg_fashion_mnist.py --preset smoke --out DIR   # ≤ 10 min

Stages (each resumes where it stopped; a finished one is skipped), all in DIR/rcg (an RCG run
directory, see ``genbench train rcg``):

1. SSL encoder on the 60,000 training images without labels (NT-Xent, MoCo v3 head).
2. Their representations (once) and the RDM on them (x₀ DDPM, T = 1000).
3. The representation-conditioned pixel flow: the 1-RF recipe and U-Net of the rectified-flow
   baselines with the same budget (full preset: the shipped ``fmnist-1rf`` and
   ``fmnist-1rf-cond``, 1,600 steps × 128 each; the smoke preset trains its own unconditional
   baseline at its budget), representation dropout 0.1.
4. Full preset: reflow pairs of the RCG model (guided) and its 2-RF++ (config D): few-step RCG
   (after the table's many-step rows and the representation figures, the cheaper phases).
5. Figures (tf protocol, real TF-FID Inception, samples = seeds 0..n-1, reference = the first
   n test images): the paper's Table 4 / 10 pattern at equal pixel budget (unconditional,
   RCG with τ ∈ guidances, class-conditional, RCG with oracle representations, few-step RCG
   at 1 and 2 NFE) with FID, PRD F_8 / F_1/8 and precision/recall; headline rows at 10,000;
   the gap closed; the encoder's linear-probe accuracy; rep-FD of generated against real
   representations beside the train-vs-test lower bound; an RDM ablation (depth, DDIM steps)
   by rep-FD; costs.

Writes ``DIR/results.json``, ``DIR/rows/*.json`` (one per scored row, reused on resume) and,
with ``--ship``, copies the RCG checkpoint sets into genbench's shipped models.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from common import Rows, Timings, log, ship

from genbench.generators.rcg.model import (
    OracleReps,
    RCGSampler,
    load_encoder,
    load_rcg,
    load_rdm,
)
from genbench.generators.rcg.quality import linear_probe, representation_fd
from genbench.generators.rcg.rdm import MLP_CONFIGS, DDIMConfig
from genbench.generators.rcg.training import (
    EncoderStage,
    OptimConfig,
    PixelStage,
    RDMStage,
    train_encoder,
    train_pixel,
    train_rdm,
    training_reps,
)
from genbench.generators.rectified_flow.model import SamplerConfig
from genbench.generators.rectified_flow.reflow import generate_pairs
from genbench.generators.rectified_flow.training import RECIPES, FlowRun, train_flow
from genbench.generators.zoo import open_checkpoint
from genbench.training.engine import TrainConfig

REFERENCE = "fashion-mnist:test"
METRICS = "fid,prd,pr"


@dataclass(frozen=True)
class Preset:
    encoder: str
    encoder_steps: int
    encoder_batch: int
    rdm: str
    rdm_steps: int
    rdm_batch: int
    net: str
    pixel_steps: int
    pixel_batch: int
    sampler: RCGSampler
    guidances: tuple[float, ...]
    sweep_n: int
    headline_n: int
    num_pairs: int = 0             # 0: no few-step RCG
    pair_guidance: float = 1.0
    rf2_steps: int = 0
    shipped_baselines: bool = True  # else the unconditional baseline is trained here
    rdm_depths: tuple[int, ...] = ()
    ddim_steps: tuple[int, ...] = ()
    rep_n: int = 10000
    probe_n: int | None = None      # linear probe on the first n training images (None: all)
    checkpoint_every: int = 200
    borrow_rows: tuple[Path, ...] = ()  # other benches' rows of the same models (reused)
    encoder_optim: OptimConfig = field(default_factory=lambda: OptimConfig(1e-3, 1e-4,
                                                                           warmup=100))


PRESETS = {
    "full": Preset(encoder="fmnist", encoder_steps=1500, encoder_batch=256, rdm="fmnist",
                   rdm_steps=10000, rdm_batch=512, net="fmnist-xs", pixel_steps=1600,
                   pixel_batch=128, sampler=RCGSampler(SamplerConfig("heun", 11),
                                                       DDIMConfig(250, 1.0)),
                   guidances=(0.0, 1.0, 3.0), sweep_n=2000, headline_n=10000,
                   num_pairs=12000, rf2_steps=500, rdm_depths=(3, 12),
                   ddim_steps=(20, 50, 100, 250),
                   borrow_rows=(Path(__file__).parent / "results" / "rf_fashion_mnist_full"
                                / "rows",)),
    "smoke": Preset(encoder="fmnist-s", encoder_steps=120, encoder_batch=128, rdm="fmnist",
                    rdm_steps=600, rdm_batch=256, net="fmnist-tiny", pixel_steps=200,
                    pixel_batch=128, sampler=RCGSampler(SamplerConfig("heun", 7),
                                                        DDIMConfig(50, 1.0)),
                    guidances=(1.0,), sweep_n=300, headline_n=0, shipped_baselines=False,
                    rep_n=2000, probe_n=10000, checkpoint_every=50,
                    encoder_optim=OptimConfig(2e-3, 1e-4, warmup=20)),
}
SHIP = {"fmnist-rcg": ("rcg", "RCG: SSL encoder + RDM + representation-conditioned 1-RF"),
        "fmnist-rcg-2rfpp": ("rcg-2rfpp", "RCG: SSL encoder + RDM + representation-"
                                          "conditioned 2-rectified flow++ (config D)")}


def engine(steps: int, batch: int, ema: float | None, every: int) -> TrainConfig:
    return TrainConfig(seed=0, total_steps=steps, batch_size=batch, ema=ema, ema_warmup=True,
                       clip_grad_norm=1.0, checkpoint_every=every)


def finished(run_dir: Path, steps: int) -> bool:
    summary = run_dir / "summary.json"
    return (run_dir / "model.pt").is_file() and summary.is_file() \
        and json.loads(summary.read_text())["steps"] == steps


def ship_sets(out: Path, preset_name: str) -> None:
    ship({name: (out / folder / "rcg.pt", what,
                 f"python bench/rcg_fashion_mnist.py --preset {preset_name} --out DIR --ship "
                 f"({folder})") for name, (folder, what) in SHIP.items()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="smoke")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--ship", action="store_true",
                        help="copy the RCG checkpoint sets into the package (MANIFEST.json)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    p = PRESETS[args.preset]
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    wall = time.perf_counter()
    timed = Timings()

    root = out / "rcg"
    every = p.checkpoint_every
    stage_e = EncoderStage("fashion-mnist:train", engine(p.encoder_steps, p.encoder_batch,
                                                         None, every), p.encoder,
                           optim=p.encoder_optim)
    if not finished(root / "encoder", p.encoder_steps):
        log(f"training the encoder ({p.encoder_steps} steps)")
        timed("train encoder", lambda: train_encoder(stage_e, root, quiet=args.quiet))
    stage_r = RDMStage(engine(p.rdm_steps, p.rdm_batch, 0.999, every * 10), p.rdm)
    if not finished(root / "rdm", p.rdm_steps):
        log(f"training the RDM ({p.rdm_steps} steps)")
        timed("train rdm", lambda: train_rdm(stage_r, root, quiet=args.quiet))
    stage_p = PixelStage(engine(p.pixel_steps, p.pixel_batch, 0.999, every), p.net,
                         sampler=p.sampler)
    if not (root / "rcg.pt").is_file() or not finished(root / "pixel", p.pixel_steps):
        log(f"training the pixel flow ({p.pixel_steps} steps)")
        timed("train pixel", lambda: train_pixel(stage_p, root, quiet=args.quiet, half=True))
    rcg = load_rcg(root / "rcg.pt")

    # baselines at the same pixel budget
    if p.shipped_baselines:
        uncond, cond = open_checkpoint("fmnist-1rf"), open_checkpoint("fmnist-1rf-cond")
        for model in (uncond, cond):
            meta = model.meta
            if (meta.get("steps"), meta.get("batch_size")) != (p.pixel_steps, p.pixel_batch):
                raise SystemExit(f"{model.source}: trained {meta.get('steps')} × "
                                 f"{meta.get('batch_size')}, not this preset's pixel budget")
    else:
        run = FlowRun(data="fashion-mnist:train", recipe=RECIPES["1rf"],
                      train=engine(p.pixel_steps, p.pixel_batch, 0.999, every), net=p.net,
                      sampler=p.sampler.pixel)
        if not finished(out / "uncond", p.pixel_steps):
            log(f"training the unconditional baseline ({p.pixel_steps} steps)")
            timed("train baseline", lambda: train_flow(run, out / "uncond", quiet=args.quiet))
        uncond, cond = open_checkpoint(out / "uncond"), None

    if args.ship:  # the many-step set now; the few-step one when it exists
        ship_sets(out, args.preset)
    pair_meta = None

    rows = Rows(out, REFERENCE, args.quiet, borrow=p.borrow_rows)
    results: dict = {"preset": args.preset, "reference": REFERENCE, "protocol": "tf",
                     "pixel_budget": {"steps": p.pixel_steps, "batch": p.pixel_batch,
                                      "net": p.net}, "complete": False}

    def write(**parts) -> None:
        """results.json after every phase, so an interrupted run keeps what it measured."""
        results.update(parts)
        results["costs"] = costs(root, timed, pair_meta)
        results["wall_seconds_this_invocation"] = round(time.perf_counter() - wall, 1)
        (out / "results.json").write_text(json.dumps(results, indent=1))
        log(f"wrote {out / 'results.json'}" + ("" if results["complete"] else " (so far)"))

    def score(name, make, record, n=p.sweep_n):
        return timed("scoring", lambda: rows.score(f"{name}-{n}", make, n, metrics=METRICS,
                                                   record=record))

    def flow_row(name, model, n=p.sweep_n):
        sampler = p.sampler.pixel
        return score(name, lambda: model.generator(sampler),
                     lambda: {"model_sha256": model.sha256, "sampler": sampler.to_dict()}, n)

    def rcg_row(name, model, sampler, reps=None, n=p.sweep_n):
        return score(name, lambda: model.generator(sampler, reps=reps),
                     lambda: {"model_sha256": model.sha256, "sampler": sampler.to_dict(),
                              "reps": "oracle (training images)" if reps else "RDM"}, n)

    # 1. the table at equal pixel budget (sweep_n vs sweep_n): decides the criteria
    table: dict[str, dict] = {"unconditional": flow_row("uncond", uncond)}
    for tau in p.guidances:
        table[f"rcg-tau{tau:g}"] = rcg_row(f"rcg-tau{tau:g}", rcg,
                                           p.sampler.with_options(guidance=tau))
    if cond is not None:
        table["class-conditional"] = flow_row("cond", cond)
    _, train_reps, _ = training_reps(root, progress=not args.quiet)
    oracle = OracleReps(train_reps, identity=f"train-reps:{rcg.encoder.sha256}",
                        name="oracle")
    table["rcg-oracle"] = rcg_row("rcg-oracle", rcg, p.sampler, reps=oracle)
    fid = {k: v["metrics"]["fid"]["value"] for k, v in table.items()}
    best = min((k for k in fid if k.startswith("rcg-tau")), key=fid.get)
    write(table={k: _summary_row(v) for k, v in table.items()}, criteria=criteria_of(fid, best, p))

    # 2. the representations: linear probe, rep-FD, RDM ablation
    write(representations=timed("representations", lambda: representation_figures(
        p, root, rcg, train_reps, args.quiet)))

    # 3. the few-step RCG (pairs of the guided model, its 2-RF++) beside the table
    few, pair_meta = few_step(p, out, root, rcg, timed, args.quiet)
    if few is not None:
        if args.ship:
            ship_sets(out, args.preset)
        for k in (1, 2):
            table[f"rcg-2rfpp-nfe{k}"] = rcg_row(f"rcg-2rfpp-nfe{k}", few,
                                                 few.sampler.with_options(nfe=k))
        fid = {k: v["metrics"]["fid"]["value"] for k, v in table.items()}
        write(table={k: _summary_row(v) for k, v in table.items()})

    # 4. the headline rows (headline_n vs headline_n)
    if p.headline_n:
        best_tau = float(best.removeprefix("rcg-tau"))
        headline = {"unconditional": flow_row("uncond", uncond, p.headline_n),
                    best: rcg_row(best, rcg, p.sampler.with_options(guidance=best_tau),
                                  n=p.headline_n)}
        if cond is not None:
            headline["class-conditional"] = flow_row("cond", cond, p.headline_n)
        if few is not None:
            headline["rcg-2rfpp-nfe1"] = rcg_row("rcg-2rfpp-nfe1", few,
                                                 few.sampler.with_options(nfe=1),
                                                 n=p.headline_n)
        hfid = {k: v["metrics"]["fid"]["value"] for k, v in headline.items()}
        write(headline={"num_images": p.headline_n,
                        "rows": {k: _summary_row(v) for k, v in headline.items()},
                        "criteria": criteria_of(hfid, best, p)})
    write(complete=True)
    print(json.dumps({"fid": fid, "criteria": results["criteria"]}, indent=1))


def few_step(p: Preset, out: Path, root: Path, rcg, timed: Timings, quiet: bool):
    """Reflow pairs of the guided RCG model, then its 2-RF++ pixel flow (config D): the
    few-step RCG and the pairs' meta (None, None without pairs in the preset)."""
    if not p.num_pairs:
        return None, None
    every = p.checkpoint_every
    pair_sampler = p.sampler.with_options(guidance=p.pair_guidance)
    # the pairs (tens of MB, not kept in git) are needed only until the student is done:
    # their meta is kept beside them so a resumed run on another machine skips them
    kept = out / "pair_meta.json"
    if (out / "rcg-2rfpp" / "rcg.pt").is_file() and kept.is_file():
        pair_meta = json.loads(kept.read_text())
    else:
        log(f"reflow pairs: {p.num_pairs} with {pair_sampler.describe()}")
        pair_meta = timed("pairs", lambda: generate_pairs(
            rcg, out / "pairs", num_pairs=p.num_pairs, sampler=pair_sampler,
            progress=not quiet))
        kept.write_text(json.dumps(pair_meta, indent=1))
    student = PixelStage(engine(p.rf2_steps, p.pixel_batch, 0.999, every), p.net,
                         recipe=RECIPES["D"], pairs=(str(out / "pairs"),),
                         init=str(root / "rcg.pt"),
                         sampler=replace(p.sampler, pixel=SamplerConfig("euler", 1)))
    if not (out / "rcg-2rfpp" / "rcg.pt").is_file():
        log(f"training the few-step RCG ({p.rf2_steps} steps)")
        timed("train rcg-2rfpp", lambda: train_pixel(student, out / "rcg-2rfpp", quiet=quiet,
                                                     half=True))
    return load_rcg(out / "rcg-2rfpp" / "rcg.pt"), pair_meta


def criteria_of(fid: dict[str, float], best: str, p: Preset) -> dict:
    """Does the best RCG row beat the unconditional one, and how much of the unconditional →
    class-conditional gap does it close?"""
    criteria = {"best_rcg": best, "rcg_beats_unconditional": fid[best] < fid["unconditional"],
                "tau_selected_on": f"the {p.sweep_n}-sample rows (the headline rows share "
                                   "their seeds and reference images)"}
    if "class-conditional" in fid:
        gap = fid["unconditional"] - fid["class-conditional"]
        criteria["gap_closed"] = (fid["unconditional"] - fid[best]) / gap if gap > 0 else None
        criteria["closes_half_the_gap"] = bool(criteria["gap_closed"]
                                               and criteria["gap_closed"] >= 0.5)
        criteria["beats_class_conditional"] = fid[best] < fid["class-conditional"]
    return criteria


def costs(root: Path, timed: Timings, pair_meta: dict | None) -> dict:
    """Each stage's training seconds, images/s and size, and this invocation's seconds."""
    summaries = {d: json.loads((root / d / "summary.json").read_text())
                 for d in ("encoder", "rdm", "pixel")}
    out = {"seconds": {k: v["seconds"] for k, v in summaries.items()},
           "images_per_second": {k: v["images_per_second"] for k, v in summaries.items()},
           "params": {k: v["num_params"] for k, v in summaries.items()},
           "this_invocation_seconds": timed.rounded()}
    if pair_meta is not None:
        out["pair_forward_passes"] = pair_meta["forward_passes"]
    return out


def _summary_row(row: dict) -> dict:
    m = row["metrics"]
    out = {"fid": m["fid"]["value"], "sampler": row.get("sampler"),
           "num_images": row["num_images"]}
    if "prd" in m:
        out["prd_f8"], out["prd_f1_8"] = m["prd"].get("f_beta"), m["prd"].get("f_beta_inv")
    if "pr" in m:
        out["precision"], out["recall"] = m["pr"].get("precision"), m["pr"].get("recall")
    return out


def representation_figures(p: Preset, root: Path, rcg, train_reps: torch.Tensor,
                           quiet: bool) -> dict:
    """Linear probe, rep-FD against the lower bound, and the RDM ablation."""
    from genbench.generators.rectified_flow.training import load_images

    cache = root.parent / "rows" / "representations.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    train = load_images("fashion-mnist:train", conditional=True)
    test = load_images("fashion-mnist:test", conditional=True)
    # the float32 encoder that made ROOT/reps (the checkpoint set keeps a float16 copy)
    enc = load_encoder(root / "encoder" / "model.pt")
    test_reps = enc.represent(test.images)
    m = p.probe_n or len(train.images)
    probe = {
        "train_images": m,
        "backbone_features": linear_probe(enc.represent(train.images[:m], features=True),
                                          train.labels[:m], enc.represent(test.images,
                                                                          features=True),
                                          test.labels),
        "representation": linear_probe(train_reps[:m], train.labels[:m], test_reps,
                                       test.labels)}
    n = p.rep_n
    generated = rcg.rdm.sample(np.arange(n), p.sampler.rdm)
    out = {"linear_probe_top1": probe, "num_reps": n,
           "rep_fd_generated_vs_train": representation_fd(generated, train_reps[:n]),
           "rep_fd_train_vs_test_lower_bound": representation_fd(train_reps[:n],
                                                                 test_reps[:n])}
    ablation: dict[str, dict] = {}
    for steps in p.ddim_steps:
        reps = rcg.rdm.sample(np.arange(n), DDIMConfig(steps, p.sampler.rdm.eta))
        ablation.setdefault(f"depth {rcg.rdm.network.config.num_blocks}", {})[
            f"ddim {steps}"] = representation_fd(reps, train_reps[:n])
    for depth in p.rdm_depths:
        config = MLP_CONFIGS[p.rdm].with_options(num_blocks=depth)
        ablation[f"depth {depth}"] = _ablation_rdm(p, root, root.parent / f"rdm-depth{depth}",
                                                   config, train_reps, n, quiet)
    out["rdm_ablation_rep_fd"] = ablation
    cache.write_text(json.dumps(out, indent=1))
    return out


def _ablation_rdm(p, root, folder, config, train_reps, n, quiet) -> dict:
    """An RDM of another depth on the same representations, same budget: its rep-FD."""
    # a named configuration of that depth, registered for this run only
    name = f"{p.rdm}-depth{config.num_blocks}"
    if name not in MLP_CONFIGS:
        MLP_CONFIGS.register(name, replace(config, name=name))
    twin = folder / "run"
    twin.mkdir(parents=True, exist_ok=True)
    for part in ("encoder", "reps"):  # the same encoder and representations
        link = twin / part
        if not link.exists():
            link.symlink_to(os.path.relpath(root / part, twin), target_is_directory=True)
    stage = RDMStage(engine(p.rdm_steps, p.rdm_batch, 0.999, p.checkpoint_every * 10), name)
    if not finished(twin / "rdm", p.rdm_steps):
        log(f"training the ablation RDM {name} ({p.rdm_steps} steps)")
        train_rdm(stage, twin, quiet=quiet)
    model = load_rdm(twin / "rdm" / "model.pt")
    return {f"ddim {p.sampler.rdm.steps}": representation_fd(
        model.sample(np.arange(n), p.sampler.rdm), train_reps[:n])}


if __name__ == "__main__":
    main()
