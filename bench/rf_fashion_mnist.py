"""2-rectified flow++ on Fashion-MNIST 28×28, from scratch to the figures, resumable.

    python bench/rf_fashion_mnist.py --preset full  --out DIR   # ≤ 6 h on 2 CPU cores
    python bench/rf_fashion_mnist.py --preset smoke --out DIR   # ≤ 10 min

Stages (each resumes where it stopped; a finished one is skipped):

1. 1-RF teacher (x_t = (1 − t)x + tz, uniform t, squared L2) on the 60,000 training images;
   full preset also a class-conditional one. At this scale the 1-RF plays the role of the
   paper's pretrained diffusion model (EDM): it makes the pairs and initialises the student.
2. Reflow pairs (z, ODE_1RF(z)) with the teacher's full budget (Heun).
3. 2-RF students initialised from the teacher, same budget each: the paper's Table 1 rows
   A (uniform t, squared L2), C (+ U-shaped t, a = 4), D (+ pseudo-Huber, c = 0.00054·d).
   D is genbench's 2-RF++ here: rows E/F (LPIPS-Huber) need the VGG16 backbone, which these
   machines cannot download, so they are not run. Full preset: a conditional D as well.
3b. The 2-RF++ of the figures: D trained on to ``rf2pp_steps`` (full preset: 2,000) from its
   Table 1 run's last checkpoint, the model an uninterrupted run of that length gives (the
   schedule is constant after the warm-up); the Table 1 rows stay at the equal budget.
4. Figures: FID (tf protocol, real TF-FID Inception, samples = seeds 0..n-1, reference = the
   first n test images) against NFE for the 1-RF and the 2-RF++ (Euler 1, 2, 4, 8, 16 and the
   teacher's Heun budget); headline rows at 10,000 vs 10,000 with PRD and precision/recall;
   Table 1 rows at 1 and 2 NFE; straightness; costs (forward passes as the paper's Table 6,
   wall time); training and 1-NFE sampling img/s; CAS and per-class FID of the conditional
   2-RF++ at 1 NFE.

Writes ``DIR/results.json`` (``{"fid": {"1rf": {"1": ...}, "2rfpp": {"1": ...}}, ...}``, NFE
as keys), ``DIR/rows/*.json`` (one per scored row, reused on resume), ``DIR/fid_vs_nfe.png``
(with matplotlib) and, with ``--ship``, copies the trained models into genbench's shipped
models with their sha256.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from common import Rows, Timings, log, ship

from genbench.generators import solvers
from genbench.generators.rectified_flow.model import SamplerConfig, noise_for_seeds
from genbench.generators.rectified_flow.reflow import generate_pairs
from genbench.generators.rectified_flow.training import RECIPES, FlowRun, train_flow
from genbench.generators.zoo import open_model
from genbench.training.engine import TrainConfig

REFERENCE = "fashion-mnist:test"


@dataclass(frozen=True)
class Preset:
    net: str
    rf_steps: int
    rf2_steps: int  # every Table 1 row (equal budget)
    batch_size: int
    num_pairs: int
    teacher: SamplerConfig
    sweep_n: int
    headline_n: int
    nfes: tuple[int, ...]
    ablation: tuple[str, ...]
    conditional: bool
    straightness_n: int
    checkpoint_every: int = 200
    teacher_row: bool = True  # score the teacher's full budget too
    rf2pp_steps: int | None = None  # the figures' 2-RF++ (D) trained on to this (None: rf2_steps)

    @property
    def rf2pp_stage(self) -> str:
        """Run directory of the figures' 2-RF++: D's own when it is not trained on."""
        longer = self.rf2pp_steps not in (None, self.rf2_steps)
        return f"2rf-D-{self.rf2pp_steps}" if longer else "2rf-D"


PRESETS = {
    "full": Preset(net="fmnist-xs", rf_steps=1600, rf2_steps=500, batch_size=128,
                   num_pairs=12000, teacher=SamplerConfig("heun", 11), sweep_n=2000,
                   headline_n=10000, nfes=(1, 2, 4, 8, 16), ablation=("A", "C", "D"),
                   conditional=True, straightness_n=256, rf2pp_steps=2000),
    # batch 64: twice the updates of batch 128 for the same images seen (and time); at
    # 300 + 300 steps × 128 the 2-RF++ reached 0.54 of the 1-RF's 1-NFE FID, at 600 + 600 × 64
    # 0.46 (bench/results/rf_fashion_mnist_smoke)
    "smoke": Preset(net="fmnist-tiny", rf_steps=600, rf2_steps=600, batch_size=64,
                    num_pairs=5000, teacher=SamplerConfig("heun", 7), sweep_n=400,
                    headline_n=0, nfes=(1,), ablation=(), conditional=False, straightness_n=64,
                    checkpoint_every=100, teacher_row=False),
}


def done(run_dir: Path, steps: int) -> bool:
    summary = run_dir / "summary.json"
    return (run_dir / "model.pt").is_file() and summary.is_file() \
        and json.loads(summary.read_text())["steps"] == steps


def train_stage(name: str, run: FlowRun, out: Path, quiet: bool) -> Path:
    run_dir = out / name
    if not done(run_dir, run.train.steps):
        log(f"training {name} ({run.train.steps} steps)")
        train_flow(run, run_dir, quiet=quiet)
    return run_dir


def score_row(rows: Rows, name: str, model_dir: Path, sampler: SamplerConfig, n: int,
              metrics: str = "fid", per_class: bool = False) -> dict:
    model = open_model(model_dir)
    return rows.score(name, lambda: model.generator(sampler), n, metrics=metrics,
                      per_class=per_class,
                      record=lambda: {"model_sha256": model.sha256, "sampler": sampler.to_dict()})


def sweep_samplers(preset: Preset) -> dict[str, SamplerConfig]:
    out = {str(k): SamplerConfig("euler", k) for k in preset.nfes}
    if preset.teacher_row:
        out[str(preset.teacher.nfe)] = preset.teacher
    return out


def measure_straightness(model_dir: Path, n: int) -> float:
    model = open_model(model_dir)
    z = noise_for_seeds(np.arange(n), model.spec.shape)
    labels = None if not model.spec.num_classes else torch.arange(n) % model.spec.num_classes
    gen = model.generator()
    with torch.no_grad():
        return solvers.straightness(gen.velocity(labels), z, steps=64)


def sampling_speed(model_dir: Path, n: int = 1000) -> float:
    gen = open_model(model_dir).generator(SamplerConfig("euler", 1))
    labels = None if not gen.num_classes else np.arange(n) % gen.num_classes
    start = time.perf_counter()
    gen.sample(np.arange(n), labels)
    return n / (time.perf_counter() - start)


def plot(results: dict, path: Path, heun_key: str | None = None) -> str | None:
    """FID against NFE: Euler rows as lines, the Heun row (``heun_key``, the teacher's full
    budget) as separate stars."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, label in (("1rf", "1-RF (teacher)"), ("2rfpp", "2-RF++ (config D)")):
        rows = results["fid"][name]
        keys = sorted((k for k in rows if k != heun_key), key=int)
        line, = ax.plot([int(k) for k in keys], [rows[k] for k in keys], "o-",
                        label=f"{label}, Euler")
        if heun_key in rows:
            ax.plot([int(heun_key)], [rows[heun_key]], "*", markersize=12,
                    color=line.get_color(), label=f"{label}, Heun {heun_key} NFE")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("NFE")
    ax.set_ylabel("FID (tf, 2,000 vs 2,000)")
    ax.set_title("Fashion-MNIST 28×28")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return str(path)


def ship_models(out: Path, preset_name: str) -> dict:
    stages = {"fmnist-1rf": ("1rf", "1-rectified flow, unconditional"),
              "fmnist-1rf-cond": ("1rf-cond", "1-rectified flow, class-conditional"),
              "fmnist-2rfpp": (PRESETS[preset_name].rf2pp_stage,
                               "2-rectified flow++ (config D), unconditional"),
              "fmnist-2rfpp-cond": ("2rf-D-cond",
                                    "2-rectified flow++ (config D), class-conditional")}
    return ship({name: (out / stage / "model.pt", what,
                        f"python bench/rf_fashion_mnist.py --preset {preset_name} --out DIR "
                        f"--ship (stage {stage})") for name, (stage, what) in stages.items()})


def train_on(out: Path, source: str, stage: str, run: FlowRun, quiet: bool) -> Path:
    """``run`` in ``out/stage``, started from the finished run directory ``out/source``'s
    last checkpoint (its config, checkpoint and log are copied the first time)."""
    import shutil

    if not (out / stage).exists():
        tmp = out / f"{stage}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        for name in ("config.json", "checkpoint.pt", "checkpoint.pt.sha256", "log.jsonl"):
            if (out / source / name).is_file():
                shutil.copy2(out / source / name, tmp / name)
        tmp.rename(out / stage)
    return train_stage(stage, run, out, quiet)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="smoke")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--ship", action="store_true",
                        help="copy the trained models into the package (MANIFEST.json)")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--stop-after", default=None, choices=("train", "pairs", "students"),
                        help="stop after this stage (resume later)")
    args = parser.parse_args()
    p = PRESETS[args.preset]
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    wall = time.perf_counter()
    timed = Timings()

    def engine(steps: int, seed: int = 0) -> TrainConfig:
        return TrainConfig(seed=seed, total_steps=steps, batch_size=p.batch_size, ema=0.999,
                           ema_warmup=True, clip_grad_norm=1.0,
                           checkpoint_every=p.checkpoint_every)

    # the unconditional teacher → pairs → 2-RF++ (D) first, so the headline models exist
    # early; then the conditional chain, then the other Table 1 rows
    variants = [("", False)] + ([("-cond", True)] if p.conditional else [])
    teachers: dict[str, Path] = {}
    pair_meta: dict[str, dict] = {}
    students: dict[str, Path] = {}

    def student_run(row: str, suffix: str, steps: int) -> FlowRun:
        return FlowRun(data=None, recipe=RECIPES[row], train=engine(steps),
                       pairs=(str(out / f"pairs{suffix}"),), init=str(teachers[suffix]),
                       sampler=SamplerConfig("euler", 1))

    def student(row: str, suffix: str) -> None:
        run = student_run(row, suffix, p.rf2_steps)
        students[row + suffix] = timed(f"train 2rf-{row}{suffix}", lambda: train_stage(
            f"2rf-{row}{suffix}", run, out, args.quiet))

    for suffix, cond in variants:
        run = FlowRun(data="fashion-mnist:train", recipe=RECIPES["1rf"],
                      train=engine(p.rf_steps), net=p.net, conditional=cond,
                      sampler=p.teacher)
        teachers[suffix] = timed(f"train 1rf{suffix}",
                                 lambda run=run, s=suffix: train_stage(f"1rf{s}", run, out,
                                                                       args.quiet))
        if args.stop_after == "train":
            continue
        log(f"reflow pairs{suffix}: {p.num_pairs} with {p.teacher.describe()}")
        pair_meta[suffix] = timed(f"pairs{suffix}", lambda s=suffix: generate_pairs(
            open_model(teachers[s]), out / f"pairs{s}", num_pairs=p.num_pairs,
            sampler=p.teacher, progress=not args.quiet))
        if args.stop_after != "pairs":
            student("D", suffix)
    if args.stop_after in ("train", "pairs"):
        return
    students["2rfpp"] = students["D"]
    if p.rf2pp_stage != "2rf-D":
        assert p.rf2pp_steps is not None
        run = student_run("D", "", p.rf2pp_steps)
        students["2rfpp"] = timed(f"train {p.rf2pp_stage}", lambda: train_on(
            out, "2rf-D", p.rf2pp_stage, run, args.quiet))
    for row in p.ablation:
        if row != "D":
            student(row, "")
    if args.ship:
        ship_models(out, args.preset)
    if args.stop_after == "students":
        return

    rows = Rows(out, REFERENCE, args.quiet)
    results: dict = {"preset": args.preset, "preset_settings": {
        **{k: v for k, v in p.__dict__.items() if k != "teacher"},
        "teacher": p.teacher.to_dict()}, "reference": REFERENCE, "protocol": "tf"}
    samplers = sweep_samplers(p)
    results["samplers"] = {k: s.to_dict() for k, s in samplers.items()}
    fid: dict[str, dict[str, float]] = {"1rf": {}, "2rfpp": {}}

    def student_row(row: str, k: int) -> dict:
        # D trained no longer is the 2-RF++: its Table 1 rows are the sweep's, scored once
        same = row == "D" and p.rf2pp_stage == "2rf-D"
        name = f"2rfpp-nfe{k}" if same else f"2rf-{row}-nfe{k}"
        return timed("scoring", lambda: score_row(rows, f"{name}-{p.sweep_n}", students[row],
                                                  SamplerConfig("euler", k), p.sweep_n))

    # cheapest decisive figures first, so an interrupted run has committed the most
    results["table1"] = {}
    for row in p.ablation:
        results["table1"][row] = {str(k): student_row(row, k)["metrics"]["fid"]["value"]
                                  for k in (1, 2)}
        results["table1"][row]["recipe"] = RECIPES[row].to_dict()

    def sweep_row(key: str) -> None:
        for name, model_dir in (("1rf", teachers[""]), ("2rfpp", students["2rfpp"])):
            row = timed("scoring", lambda n=name, d=model_dir: score_row(
                rows, f"{n}-nfe{key}-{p.sweep_n}", d, samplers[key], p.sweep_n))
            fid[name][key] = row["metrics"]["fid"]["value"]

    # the decisive rows first (1 NFE at 2,000, then the 10,000-sample headline), the rest after
    if "1" in samplers:
        sweep_row("1")
    if p.headline_n:
        headline = {}
        for name, model_dir, sampler in (
                ("1rf", teachers[""], p.teacher),
                ("2rfpp-1nfe", students["2rfpp"], SamplerConfig("euler", 1)),
                ("2rfpp-2nfe", students["2rfpp"], SamplerConfig("euler", 2))):
            r = timed("scoring", lambda n=name, d=model_dir, s=sampler: score_row(
                rows, f"{n}-{p.headline_n}", d, s, p.headline_n, metrics="fid,prd,pr"))
            headline[name] = {"sampler": sampler.to_dict(), "metrics": r["metrics"]}
        results["headline"] = {"num_images": p.headline_n, "rows": headline}
    for key in [k for k in samplers if k != "1"]:
        sweep_row(key)
    results["fid"] = {name: {k: by_nfe[k] for k in samplers} for name, by_nfe in fid.items()}
    if p.conditional:
        cas_path = out / "rows" / "cas.json"
        if not cas_path.is_file():
            from genbench.cas import classification_accuracy_score
            log("CAS of the conditional 2-RF++ at 1 NFE")
            record = timed("cas", lambda: classification_accuracy_score(
                open_model(students["D-cond"]).generator(SamplerConfig("euler", 1)),
                real_train="fashion-mnist:train", real_test=REFERENCE,
                progress=not args.quiet))
            cas_path.write_text(json.dumps(record, indent=1, default=str))
        cas = json.loads(cas_path.read_text())
        n_cond = p.headline_n or p.sweep_n
        r = timed("scoring", lambda: score_row(
            rows, f"2rfpp-cond-nfe1-{n_cond}", students["D-cond"], SamplerConfig("euler", 1),
            n_cond, per_class=True))
        per_class = r.get("per_class") or {}
        results["conditional"] = {
            "num_images": n_cond, "fid": r["metrics"]["fid"]["value"],
            "per_class_fid": {c: v.get("fid") for c, v in per_class.items()},
            "cas": {"top1": cas["cas"]["top1"], "top5": cas["cas"]["top5"],
                    "real_top1": cas["real_baseline"]["top1"], "gap": cas["gap"],
                    "per_class": cas["per_class"], "worst_classes": cas.get("worst_classes")}}
    results["straightness"] = {
        "1rf": timed("straightness", lambda: measure_straightness(teachers[""],
                                                                 p.straightness_n)),
        "2rfpp": timed("straightness", lambda: measure_straightness(students["2rfpp"],
                                                                   p.straightness_n)),
        "noises": p.straightness_n, "steps": 64}
    summaries = {d.name: json.loads((d / "summary.json").read_text())
                 for d in [*teachers.values(), *students.values()]}
    results["costs"] = {
        "forward_passes": {
            "pairs": pair_meta[""]["forward_passes"],
            "training_1rf": summaries["1rf"]["training_forward_passes"],
            "training_2rfpp": summaries[p.rf2pp_stage]["training_forward_passes"],
            "note": "as the paper's Table 6: pair generation (pairs × teacher NFE) plus "
                    "training (steps × batch); the 1-RF's own training is the teacher's cost"},
        "seconds": {name: s["seconds"] for name, s in summaries.items()},
        "pair_seconds": {s or "uncond": m.get("seconds_this_run")
                         for s, m in pair_meta.items()},
        "this_invocation_seconds": timed.rounded(),
    }
    results["throughput"] = {
        "training_images_per_second": {n: s["images_per_second"] for n, s in summaries.items()},
        "sampling_1nfe_images_per_second": round(sampling_speed(students["2rfpp"]), 1),
        "threads": torch.get_num_threads(), "device": "cpu"}
    results["criteria"] = {
        "2rfpp_1nfe_over_1rf_1nfe": fid["2rfpp"]["1"] / fid["1rf"]["1"],
        "2rfpp_1nfe_at_most_half_1rf_1nfe": fid["2rfpp"]["1"] <= 0.5 * fid["1rf"]["1"]}
    if p.teacher_row:
        teacher_fid = fid["1rf"][str(p.teacher.nfe)]
        results["criteria"]["2rfpp_1nfe_over_teacher_full"] = fid["2rfpp"]["1"] / teacher_fid
        results["criteria"]["2rfpp_1nfe_within_2x_teacher"] = fid["2rfpp"]["1"] <= 2 * teacher_fid
    if "2" in fid["2rfpp"] and p.teacher_row:
        results["criteria"]["2rfpp_2nfe_over_teacher_full"] = fid["2rfpp"]["2"] / teacher_fid
    if p.conditional:
        results["criteria"]["cas_top1_at_least_80"] = \
            results["conditional"]["cas"]["top1"] >= 0.8
    results["plot"] = plot(results, out / "fid_vs_nfe.png",
                           str(p.teacher.nfe) if p.teacher_row else None)
    results["wall_seconds_this_invocation"] = round(time.perf_counter() - wall, 1)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    log(f"wrote {out / 'results.json'}")
    print(json.dumps({"fid": fid, "criteria": results["criteria"]}, indent=1))


if __name__ == "__main__":
    main()
