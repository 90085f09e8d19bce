"""Rectified flows end to end at 8×8 (digits, the tiny U-Net): model files, seeded
generators, 1-RF and 2-RF training (deterministic, bit-identical resume), reflow pairs (1 and
2 torchrun processes), the CLI, the ckpt: scheme and bad input."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from genbench.cli import main
from genbench.config import ExtractionConfig
from genbench.errors import GenbenchError
from genbench.evaluation import Evaluation
from genbench.generators.nets.unet import UNET_CONFIGS
from genbench.generators.rectified_flow import model as flow_model
from genbench.generators.rectified_flow.model import (
    FlowSpec,
    SamplerConfig,
    load_model,
    noise_for_seeds,
    save_model,
)
from genbench.generators.rectified_flow.reflow import generate_pairs, load_pairs
from genbench.generators.rectified_flow.training import (
    LOSSES,
    RECIPES,
    FlowRun,
    FlowTask,
    LossInputs,
    load_images,
    pair_data,
    train_flow,
)
from genbench.generators.zoo import open_model
from genbench.training.callbacks import ProgressEvery
from genbench.training.engine import TrainConfig


@pytest.fixture(autouse=True)
def _no_torchrun_env(monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)


def tiny_spec(num_classes=None, kind="1-rf") -> FlowSpec:
    net = UNET_CONFIGS["tiny"].with_options(image_channels=1, num_classes=num_classes)
    return FlowSpec(net, 8, kind, SamplerConfig("heun", 5))


def random_model(tmp_path: Path, num_classes=None, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    spec = tiny_spec(num_classes)
    net = spec.build()
    with torch.no_grad():  # the zero-initialised output would make v = 0
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    path = tmp_path / f"model-{seed}-{num_classes}.pt"
    save_model(path, net, spec, {"test": True})
    return path


def one_rf_run(steps: int = 12, **kw) -> FlowRun:
    config = TrainConfig(seed=3, total_steps=steps, batch_size=32, ema=0.9, ema_warmup=True,
                         clip_grad_norm=1.0, checkpoint_every=4, device="cpu")
    return FlowRun(data="digits", recipe=RECIPES["1rf"], train=config, net="tiny",
                   progress_every=4, sampler=SamplerConfig("heun", 5), **kw)


# ---------------------------------------------------------------- sampler settings


def test_sampler_config_checks_and_grids():
    assert SamplerConfig("heun", 7).describe() == "heun, 7 NFE"
    with pytest.raises(GenbenchError, match="at least 1"):
        SamplerConfig("euler", 0)
    with pytest.raises(GenbenchError, match="odd"):
        SamplerConfig("heun", 4)
    with pytest.raises(GenbenchError, match="unknown solver"):
        SamplerConfig("rk4", 3)
    grid = SamplerConfig("heun", 1, grid=(0.99999, 0.5, 0.2, 0.0))
    assert grid.nfe == 5  # 3 Heun steps, the last one Euler
    assert SamplerConfig("euler", 3, grid=(1.0, 0.4, 0.0)).nfe == 2
    again = SamplerConfig.from_dict(json.loads(json.dumps(grid.to_dict())))
    assert again == grid
    assert grid.with_options(nfe=2, solver="euler").grid is None
    with pytest.raises(GenbenchError, match="descend"):
        SamplerConfig("euler", 1, grid=(0.0, 1.0))


# ---------------------------------------------------------------- seeded images


def test_noise_depends_on_the_seed_alone():
    a = noise_for_seeds([7, 8, 9], (1, 8, 8))
    b = noise_for_seeds([9], (1, 8, 8))
    torch.testing.assert_close(a[2], b[0], rtol=0, atol=0)
    assert not torch.equal(a[0], a[1])
    g = torch.Generator().manual_seed(8)
    torch.testing.assert_close(a[1], torch.randn((1, 8, 8), generator=g), rtol=0, atol=0)
    with pytest.raises(GenbenchError, match=r"0\.\.2\*\*32"):
        noise_for_seeds([-1], (1, 2, 2))
    with pytest.raises(GenbenchError, match="keeps 32 bits"):  # it would alias seed 5
        noise_for_seeds([5 + 2 ** 32], (1, 2, 2))


def test_generator_images_do_not_depend_on_the_batch(tmp_path):
    model = load_model(random_model(tmp_path, num_classes=3))
    seeds, labels = np.arange(10, 17), np.arange(7) % 3
    big = model.generator(batch_size=64).sample(seeds, labels)
    small = model.generator(batch_size=3).sample(seeds, labels)
    assert big.dtype == torch.uint8 and tuple(big.shape) == (7, 1, 8, 8)
    assert torch.equal(big, small)
    # image i is the Heun solution from seed i, rounded to uint8
    z = noise_for_seeds(seeds[2:3], (1, 8, 8))
    y = torch.tensor(labels[2:3])
    x = model.spec.sampler.run(lambda x, t: model.network(x, t, y), z)
    expected = ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    assert torch.equal(big[2:3], expected)
    other_label = model.generator().sample(seeds[2:3], np.array([(labels[2] + 1) % 3]))
    assert not torch.equal(other_label, big[2:3])
    with pytest.raises(GenbenchError, match="give one label"):
        model.generator().sample(seeds)


def test_uint8_conversion_rounds():
    x = torch.tensor([-1.0, -0.99, 0.0, 0.999, 1.5])
    # (x + 1)·127.5 = 0, 1.275, 127.5, 254.87, 318.75 -> rounded and clipped
    assert flow_model.to_uint8(x).tolist() == [0, 1, 128, 255, 255]


def test_identity_names_the_file_and_the_sampler(tmp_path):
    model = load_model(random_model(tmp_path))
    one = model.generator(SamplerConfig("euler", 1)).identity()
    two = model.generator(SamplerConfig("euler", 2)).identity()
    assert model.sha256 in one and one != two


# ---------------------------------------------------------------- model files


def test_model_file_round_trip_and_refusals(tmp_path):
    path = random_model(tmp_path)
    model = load_model(path)
    assert model.spec == tiny_spec()
    again = load_model(path, sha256=model.sha256)
    for a, b in zip(model.network.parameters(), again.network.parameters(), strict=True):
        assert torch.equal(a, b)
    with pytest.raises(GenbenchError, match="does not match the recorded"):
        load_model(path, sha256="0" * 64)
    ckpt = tmp_path / "checkpoint.pt"
    torch.save({"model": {}, "optimizer": {}}, ckpt)
    with pytest.raises(GenbenchError, match="training checkpoint"):
        load_model(ckpt)
    (tmp_path / "junk.pt").write_bytes(b"not a pickle")
    with pytest.raises(GenbenchError, match="not a genbench model file"):
        load_model(tmp_path / "junk.pt")
    payload = torch.load(path, weights_only=True)
    payload["spec"]["net"]["base_channels"] = 32  # the weights are of a 16-channel net
    torch.save(payload, tmp_path / "other.pt")
    with pytest.raises(GenbenchError, match="weights of another network"):
        load_model(tmp_path / "other.pt")
    with pytest.raises(GenbenchError, match="no such model file, run directory or shipped"):
        open_model(tmp_path / "missing.pt")
    (tmp_path / "run").mkdir()
    with pytest.raises(GenbenchError, match="without model"):
        open_model(tmp_path / "run")


# ---------------------------------------------------------------- losses


def test_lpips_huber_by_hand():
    class HalfSum(torch.nn.Module):  # a stand-in perceptual distance with a known value
        def forward(self, a, b):
            return 0.5 * (a - b).abs().flatten(1).sum(1)

    v = torch.tensor([[[[1.0, 0.0]]], [[[0.0, 2.0]]]])
    target = torch.zeros_like(v)
    x = torch.zeros_like(v)
    x_t = torch.ones_like(v)
    t = torch.tensor([0.25, 0.5])
    inputs = LossInputs(v, target, t, x_t, x, HalfSum())
    # x̂ = x_t − t·v: [0.75, 1] and [1, 0]; |x̂ − x| summed and halved: 0.875 and 0.5
    d, c = 2, 0.00054 * 2
    huber = torch.tensor([(math.sqrt(1 + c * c) - c) / d, (math.sqrt(4 + c * c) - c) / d])
    perceptual = torch.tensor([0.875, 0.5])
    torch.testing.assert_close(LOSSES["lpips-huber"](inputs), (1 - t) * huber + perceptual)
    torch.testing.assert_close(LOSSES["lpips-huber-1/t"](inputs),
                               (1 - t) * huber + perceptual / t)
    with pytest.raises(GenbenchError, match="LPIPS"):
        LOSSES["lpips-huber"](LossInputs(v, target, t, x_t, x, None))


def test_recipes_are_the_papers_rows():
    assert (RECIPES["A"].time, RECIPES["A"].loss) == ("uniform", "l2")
    assert (RECIPES["C"].time, RECIPES["C"].loss, RECIPES["C"].a) == ("u-shaped", "l2", 4.0)
    assert (RECIPES["D"].time, RECIPES["D"].loss) == ("u-shaped", "pseudo-huber")
    assert RECIPES["F"].loss == "lpips-huber-1/t"
    with pytest.raises(GenbenchError, match="needs the LPIPS"):
        FlowTask(load_images("digits", conditional=False), tiny_spec(), RECIPES["E"])


# ---------------------------------------------------------------- training


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "model.pt", weights_only=True)["weights"]


def test_training_is_deterministic_and_resumes_bit_identically(tmp_path, monkeypatch):
    whole = tmp_path / "whole"
    summary = train_flow(one_rf_run(), whole, quiet=True)
    assert summary["steps"] == 12 and summary["kind"] == "1-rf"
    assert summary["training_forward_passes"] == 12 * 32
    lines = (whole / "log.jsonl").read_text().splitlines()
    losses = [json.loads(line)["loss"] for line in lines]
    assert len(losses) == 3 and all(np.isfinite(losses))

    again = tmp_path / "again"
    train_flow(one_rf_run(), again, quiet=True)
    for k, v in _weights(whole).items():
        assert torch.equal(v, _weights(again)[k]), k

    calls = {"n": 0}
    original = ProgressEvery.__call__

    def stop_at_step_8(self, context):
        original(self, context)
        if context.step == 8 and calls["n"] == 0:
            calls["n"] += 1
            raise KeyboardInterrupt

    monkeypatch.setattr(ProgressEvery, "__call__", stop_at_step_8)
    resumed = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        train_flow(one_rf_run(), resumed, quiet=True)
    assert not (resumed / "model.pt").exists()  # nothing pretends to be finished
    train_flow(one_rf_run(), resumed, quiet=True)
    for k, v in _weights(whole).items():
        assert torch.equal(v, _weights(resumed)[k]), k
    # a run directory of other settings is refused, and a foreign folder too
    with pytest.raises(GenbenchError, match="another training"):
        train_flow(one_rf_run(conditional=True), resumed, quiet=True)
    # asked for more steps, a finished run goes on from its last checkpoint and ends where an
    # uninterrupted run of the new length does (the schedule is constant after the warm-up)
    extended = tmp_path / "extended"
    assert train_flow(one_rf_run(steps=8), extended, quiet=True)["steps"] == 8
    before = _weights(extended)
    assert not all(torch.equal(v, before[k]) for k, v in _weights(whole).items())
    assert train_flow(one_rf_run(), extended, quiet=True)["steps"] == 12
    for k, v in _weights(whole).items():
        assert torch.equal(v, _weights(extended)[k]), k
    assert json.loads((extended / "config.json").read_text())["train"]["total_steps"] == 12
    with pytest.raises(GenbenchError, match="cannot be shortened to 8"):
        train_flow(one_rf_run(steps=8), extended, quiet=True)
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "x.txt").write_text("x")
    with pytest.raises(GenbenchError, match="not a training run directory"):
        train_flow(one_rf_run(), tmp_path / "foreign", quiet=True)


def test_training_lowers_the_loss_and_records_its_default_sampler(tmp_path):
    from dataclasses import replace
    config = TrainConfig(seed=0, total_steps=40, batch_size=64, ema=0.9, checkpoint_every=20,
                         device="cpu")
    run = FlowRun(data="digits", recipe=replace(RECIPES["1rf"], warmup=5), train=config,
                  net="tiny", progress_every=10)
    out = tmp_path / "run"
    train_flow(run, out, quiet=True)
    lines = (out / "log.jsonl").read_text().splitlines()
    losses = [json.loads(line)["loss"] for line in lines]
    assert losses[-1] < 0.8 * losses[0]
    model = open_model(out)
    assert model.spec.kind == "1-rf" and model.spec.sampler == SamplerConfig("heun", 15)


def test_two_rf_trains_on_its_pairs_from_the_teacher(tmp_path):
    teacher_dir = tmp_path / "teacher"
    train_flow(one_rf_run(steps=8), teacher_dir, quiet=True)
    teacher = open_model(teacher_dir)
    meta = generate_pairs(teacher, tmp_path / "pairs", num_pairs=50,
                          sampler=SamplerConfig("heun", 3), chunk_size=20, progress=False)
    assert meta["forward_passes"] == 150
    pairs = load_pairs(tmp_path / "pairs")
    # a pair is (seed, the teacher's image of that seed)
    images = teacher.generator(SamplerConfig("heun", 3)).sample(pairs.seeds[:5].numpy())
    assert torch.equal(images, pairs.images[:5])
    assert int(pairs.seeds[0]) == 1_000_000_000

    data = pair_data([str(tmp_path / "pairs")])
    task = FlowTask(data, teacher.spec, RECIPES["D"], init=teacher)
    batch = task.make_batch(torch.tensor([3, 1]), torch.Generator().manual_seed(0),
                            torch.device("cpu"))
    torch.testing.assert_close(batch["z"], noise_for_seeds(pairs.seeds[[3, 1]].numpy(),
                                                           (1, 8, 8)), rtol=0, atol=0)
    net = task.build_network(torch.device("cpu"))
    for a, b in zip(net.state_dict().values(), teacher.network.state_dict().values(),
                    strict=True):
        assert torch.equal(a, b)  # initialised from the teacher

    config = TrainConfig(seed=1, total_steps=6, batch_size=16, ema=0.9, device="cpu")
    student = FlowRun(data=None, recipe=RECIPES["D"], train=config,
                      pairs=(str(tmp_path / "pairs"),), init=str(teacher_dir),
                      sampler=SamplerConfig("euler", 1), progress_every=3)
    summary = train_flow(student, tmp_path / "student", quiet=True)
    assert summary["pair_forward_passes"] == 150 and summary["kind"] == "2-rf"
    assert open_model(tmp_path / "student").spec.sampler == SamplerConfig("euler", 1)
    with pytest.raises(GenbenchError, match="--init"):
        train_flow(FlowRun(data=None, recipe=RECIPES["D"], train=config,
                           pairs=(str(tmp_path / "pairs"),)), tmp_path / "s2", quiet=True)


def test_pairs_resume_and_refuse_another_plan(tmp_path):
    teacher = load_model(random_model(tmp_path))
    out = tmp_path / "pairs"
    sampler = SamplerConfig("euler", 2)
    generate_pairs(teacher, out, num_pairs=30, sampler=sampler, chunk_size=10, progress=False)
    first = load_pairs(out)
    (out / "chunk-000001.npz").unlink()
    (out / "meta.json").unlink()
    with pytest.raises(GenbenchError, match="not complete"):
        load_pairs(out)
    generate_pairs(teacher, out, num_pairs=30, sampler=sampler, chunk_size=10, progress=False)
    again = load_pairs(out)
    assert torch.equal(first.images, again.images) and torch.equal(first.seeds, again.seeds)
    with pytest.raises(GenbenchError, match="another plan"):
        generate_pairs(teacher, out, num_pairs=30, sampler=SamplerConfig("euler", 3),
                       chunk_size=10, progress=False)
    with pytest.raises(GenbenchError, match="no such pair folder"):
        load_pairs(tmp_path / "nowhere")


def test_inverted_real_pairs_round_trip(tmp_path):
    from genbench.generators.rectified_flow.reflow import PairSet, invert_real
    teacher = load_model(random_model(tmp_path))
    data = load_images("digits", conditional=False)
    invert_real(teacher, tmp_path / "inv", images=data.images[:12].numpy(), labels=None,
                source="digits", nfe=20, chunk_size=5, progress=False)
    inv = load_pairs(tmp_path / "inv")
    assert inv.noise is not None and inv.noise.shape == (12, 1, 8, 8)
    assert torch.equal(inv.seeds, -torch.arange(12) - 1)
    generate_pairs(teacher, tmp_path / "seeded", num_pairs=4, sampler=SamplerConfig("euler", 1),
                   progress=False)
    both = PairSet.concat([load_pairs(tmp_path / "seeded"), inv])
    task = FlowTask(pair_data([str(tmp_path / "seeded"), str(tmp_path / "inv")]), teacher.spec,
                    RECIPES["D"])
    z = task._noise(torch.tensor([0, 4, 15]), torch.Generator())
    torch.testing.assert_close(z[0], noise_for_seeds(both.seeds[:1].numpy(), (1, 8, 8))[0])
    torch.testing.assert_close(z[1], inv.noise[0])
    torch.testing.assert_close(z[2], inv.noise[11])


# ---------------------------------------------------------------- torchrun


def test_pairs_with_two_processes_equal_one(tmp_path):
    model = random_model(tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GENBENCH_CACHE": str(tmp_path / "c")}
    common = ["reflow", str(model), "-n", "25", "--chunk-size", "4", "--solver", "euler",
              "--nfe", "2", "--quiet", "--device", "cpu"]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                          "--master_port=29541", "-m", "genbench", *common,
                          "--out", str(tmp_path / "two")], env=env, capture_output=True,
                         text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-2000:]
    assert two.stdout.count("pairs in") == 1  # only rank 0 prints
    assert main([*common, "--out", str(tmp_path / "one")]) == 0
    a, b = load_pairs(tmp_path / "two"), load_pairs(tmp_path / "one")
    assert torch.equal(a.images, b.images) and torch.equal(a.seeds, b.seeds)
    assert len(a) == 25


# ---------------------------------------------------------------- the command line


def test_cli_end_to_end(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "rf", "--data", "digits", "--out", str(run), "--net", "tiny",
                 "--steps", "6", "--batch-size", "32", "--conditional", "--quiet",
                 "--device", "cpu", "--grid-every", "6", "--score-every", "6",
                 "--score-ref", "digits", "--score-images", "20"]) == 0
    assert (run / "grids" / "step-0000006.png").is_file()
    score = json.loads((run / "scores.jsonl").read_text().splitlines()[0])
    assert score["step"] == 6 and score["metrics"]["fid"]["value"] > 0
    assert main(["reflow", str(run), "--out", str(tmp_path / "pairs"), "-n", "40",
                 "--nfe", "3", "--quiet", "--device", "cpu"]) == 0
    assert main(["train", "rf", "--pairs", str(tmp_path / "pairs"), "--init", str(run),
                 "--out", str(tmp_path / "student"), "--steps", "4", "--batch-size", "16",
                 "--quiet", "--device", "cpu", "--json"]) == 0
    capsys.readouterr()
    out = tmp_path / "s.npz"
    assert main(["sample", str(tmp_path / "student"), "-n", "11", "-o", str(out), "--json",
                 "--quiet", "--device", "cpu"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["sampler"]["nfe"] == 1
    with np.load(out) as data:
        images, labels = data["arr_0"], data["arr_1"]
    assert images.shape == (11, 8, 8, 3) and images.dtype == np.uint8
    assert labels.tolist() == [i % 10 for i in range(11)]
    assert not (tmp_path / "s.npz.parts").exists()
    student = open_model(tmp_path / "student")
    direct = student.generator().sample(np.arange(11), labels)
    assert np.array_equal(images[..., 0], direct[:, 0].numpy())
    # --class, and the ckpt: scheme scores it without writing images
    assert main(["sample", str(tmp_path / "student"), "-n", "3", "-o", str(tmp_path / "c.npz"),
                 "--class", "4", "--nfe", "2", "--quiet", "--device", "cpu"]) == 0
    with np.load(tmp_path / "c.npz") as data:
        assert data["arr_1"].tolist() == [4, 4, 4]
    evaluation = Evaluation("digits", metrics="fid", num_images=20,
                            config=ExtractionConfig(extractor="tiny-test", progress=False,
                                                    device="cpu"))
    by_spec = evaluation.score(f"ckpt:{tmp_path / 'student'},nfe=1", num_images=20)
    by_object = evaluation.score(student.generator(), num_images=20)
    assert by_spec.metrics["fid"]["value"] == by_object.metrics["fid"]["value"]
    by_npz = evaluation.score(str(out), num_images=11)
    assert by_npz.metrics["fid"]["value"] > 0


@pytest.mark.parametrize("argv, message", [
    (["sample", "no-such-model", "-n", "3", "-o", "x.npz"], "no such model file"),
    (["sample", "{model}", "-n", "3", "-o", "x.npz", "--nfe", "0"], "at least 1"),
    (["sample", "{model}", "-n", "3", "-o", "x.npz", "--solver", "heun", "--nfe", "4"], "odd"),
    (["sample", "{model}", "-n", "3", "-o", "x.png"], "name the output *.npz"),
    (["sample", "{model}", "-n", "3", "-o", "x.npz", "--class", "2"], "class-conditional"),
    (["sample", "{model}", "-n", "0", "-o", "x.npz"], "at least 1"),
    (["train", "rf", "--pairs", "missing-dir", "--init", "{model}", "--out", "r",
      "--steps", "2"], "no such pair folder"),
    (["train", "rf", "--out", "r", "--steps", "2"], "--data"),
    (["train", "rf", "--data", "digits", "--out", "r", "--steps", "2", "--init",
      "{other}"], "--init makes (3, 8, 8) images"),
    (["reflow", "{model}", "--out", "p"], "--num-pairs"),
    (["eval", "ckpt:{model},nfe=x", "--ref", "digits", "--num-images", "4"], "cannot read"),
    (["eval", "ckpt:missing-run", "--ref", "digits", "--num-images", "4"], "no such model"),
])
def test_bad_input_gets_one_line(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    model = random_model(tmp_path)
    payload = torch.load(model, weights_only=True)  # a 3-channel model: not digits' 1
    spec = FlowSpec.from_dict(payload["spec"])
    other_spec = FlowSpec(spec.net.with_options(image_channels=3), 8)
    save_model(tmp_path / "other.pt", other_spec.build(), other_spec, {})
    argv = [a.format(model=model, other=tmp_path / "other.pt") for a in argv]
    assert main([*argv, "--device", "cpu"] if argv[0] != "eval" else argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "x.npz").exists()


def test_cas_scores_a_checkpoint_by_spec(tmp_path):
    from genbench.cas import classification_accuracy_score
    model = random_model(tmp_path, num_classes=10)
    record = classification_accuracy_score(
        f"ckpt:{model},nfe=1", real_train="digits", real_test="digits",
        recipe="small-resnet", recipe_options={"epochs": 1, "width": 8, "batch_size": 64,
                                               "flip": False},
        per_class=3, progress=False, use_cache=False)
    assert record["num_samples"] == 30
    assert 0.0 <= record["cas"]["top1"] <= 1.0


def test_shipped_models_are_what_the_manifest_says(tmp_path):
    from genbench.generators.zoo import SHIPPED, open_checkpoint
    assert {"fmnist-1rf", "fmnist-2rfpp", "fmnist-rcg"} <= set(SHIPPED)
    for name, entry in SHIPPED.items():
        assert entry.path.stat().st_size <= 8 * 2**20, name
        if name.startswith("fmnist-rcg"):  # an RCG checkpoint set: encoder + RDM + flow
            rcg = open_checkpoint(name)  # checked against the recorded sha256
            assert rcg.sha256 == entry.sha256 and rcg.shape == (1, 28, 28)
            assert rcg.rep_dim == 64 and not rcg.num_classes
            continue
        model = open_model(name)  # checked against the recorded sha256
        assert model.sha256 == entry.sha256
        assert model.spec.shape == (1, 28, 28)
        assert (model.spec.kind == "2-rf") == ("2rfpp" in name)
        assert bool(model.spec.num_classes) == name.endswith("-cond")
    out = tmp_path / "s.npz"
    assert main(["sample", "fmnist-2rfpp", "-n", "4", "-o", str(out), "--quiet",
                 "--device", "cpu"]) == 0
    with np.load(out) as data:
        images = data["arr_0"]
    assert images.shape == (4, 28, 28, 3) and images.std() > 10  # not a blank image
    direct = open_model("fmnist-2rfpp").generator().sample(np.arange(4))
    assert np.array_equal(images[..., 0], direct[:, 0].numpy())
