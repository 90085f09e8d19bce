"""RCG at 8×8 (digits, tiny configurations): the RDM's schedule and DDIM against hand
computation, DDIM inversion, the encoder's objective and standardisation, representation
dropout, guidance, the stages' determinism and exact resume, the checkpoint set as a seeded
source, the CLI end to end and bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from genbench.cli import main
from genbench.errors import GenbenchError
from genbench.generators.nets.unet import UNET_CONFIGS
from genbench.generators.rcg import rdm as rdm_mod
from genbench.generators.rcg.encoder import (
    EncoderConfig,
    SSLEncoder,
    augment,
    nt_xent,
    standardize,
)
from genbench.generators.rcg.model import (
    RCGSampler,
    guided_velocity,
    load_rcg,
    read_payload,
    save_rcg,
)
from genbench.generators.rcg.rdm import (
    DDIMConfig,
    DDPMSchedule,
    MLPConfig,
    SimpleMLP,
    ddim_coefficients,
    ddim_invert,
    ddim_sample,
    ddim_step,
    ddim_timesteps,
    seeded_noise,
)
from genbench.generators.rcg.training import (
    EncoderStage,
    PixelStage,
    RDMStage,
    train_encoder,
    train_pixel,
    train_rdm,
)
from genbench.generators.rectified_flow.model import FlowSpec, SamplerConfig
from genbench.generators.rectified_flow.reflow import generate_pairs
from genbench.generators.rectified_flow.training import RECIPES, FlowData, FlowTask
from genbench.training.callbacks import ProgressEvery
from genbench.training.engine import TrainConfig


@pytest.fixture(autouse=True)
def _no_torchrun_env(monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)


def config(steps: int, ema: float | None = None) -> TrainConfig:
    return TrainConfig(seed=2, total_steps=steps, batch_size=32, ema=ema, ema_warmup=True,
                       clip_grad_norm=1.0, checkpoint_every=4, device="cpu")


FAST = RCGSampler(SamplerConfig("euler", 2), DDIMConfig(10, 1.0), 0.0)


def stages(root: Path, steps: int = 8):
    """The three stages of a tiny RCG run directory on digits (progress every step)."""
    return [lambda: train_encoder(EncoderStage("digits", config(steps), "tiny"), root,
                                  quiet=True, progress_every=1),
            lambda: train_rdm(RDMStage(config(steps, 0.9), "tiny"), root, quiet=True,
                              progress_every=1),
            lambda: train_pixel(PixelStage(config(steps, 0.9), "tiny", sampler=FAST), root,
                                quiet=True, progress_every=1)]


def build(root: Path, steps: int = 8) -> Path:
    for run in stages(root, steps):
        run()
    return root


@pytest.fixture(scope="module")
def rcg_root(tmp_path_factory) -> Path:
    return build(tmp_path_factory.mktemp("rcg") / "run")


# ---------------------------------------------------------------- the RDM


def test_schedule_and_ddim_grid_by_hand():
    s = DDPMSchedule()
    betas = s.betas
    assert betas.dtype == torch.float64 and len(betas) == 1000
    assert math.isclose(float(betas[0]), 0.0015, rel_tol=1e-12)
    assert math.isclose(float(betas[-1]), 0.0195, rel_tol=1e-12)
    mid = (math.sqrt(0.0015) + 500 * (math.sqrt(0.0195) - math.sqrt(0.0015)) / 999) ** 2
    assert math.isclose(float(betas[500]), mid, rel_tol=1e-12)
    assert math.isclose(float(s.alphas_cumprod[2]), (1 - betas[0]) * (1 - betas[1])
                        * (1 - betas[2]), rel_tol=1e-12)
    grid = ddim_timesteps(s, 250)
    assert grid[:3] == [1, 5, 9] and grid[-1] == 997 and len(grid) == 250
    ts, _, a_prev, sigma = ddim_coefficients(s, DDIMConfig(4, 1.0))
    assert ts == [1, 251, 501, 751]
    ac = s.alphas_cumprod
    assert float(a_prev[0]) == float(ac[0]) and float(a_prev[2]) == float(ac[251])
    want = math.sqrt((1 - ac[501]) / (1 - ac[751]) * (1 - ac[751] / ac[501]))
    assert math.isclose(float(sigma[3]), want, rel_tol=1e-12)
    with pytest.raises(GenbenchError, match="eta"):
        DDIMConfig(10, 1.5)
    with pytest.raises(GenbenchError, match="must divide"):
        ddim_timesteps(s, 1000)
    with pytest.raises(GenbenchError, match=r"e\.g\. 200 or 250"):
        ddim_timesteps(s, 300)  # LDM would silently take 334 steps


def test_ddim_step_by_hand():
    x, x0, noise = torch.tensor([[0.5, -1.0]]), torch.tensor([[0.2, 0.1]]), torch.ones(1, 2)
    a, a_prev, sigma = 0.3, 0.6, 0.1
    eps = (x - math.sqrt(a) * x0) / math.sqrt(1 - a)
    want = math.sqrt(a_prev) * x0 + math.sqrt(1 - a_prev - sigma ** 2) * eps + sigma * noise
    torch.testing.assert_close(ddim_step(x, x0, a, a_prev, sigma, noise), want)


def test_noise_training_loss_is_the_x0_error():
    s = DDPMSchedule()
    x0, noise, t = torch.randn(4, 3), torch.randn(4, 3), torch.tensor([0, 10, 500, 999])
    a = s.alphas_cumprod[t].float()[:, None]
    torch.testing.assert_close(s.noised(x0, t, noise), a.sqrt() * x0 + (1 - a).sqrt() * noise)

    class Echo(nn.Module):  # predicts x0 = x_t: the loss is then ‖x_t − x0‖² per example
        def forward(self, x, t):
            return x
    loss = rdm_mod.rdm_loss(Echo(), s, x0, t, noise)
    torch.testing.assert_close(loss, (s.noised(x0, t, noise) - x0).pow(2).mean(dim=1))


class GaussianDenoiser(nn.Module):
    """The exact x₀ predictor for data ~ N(0, s²I): E[x₀ | x_t] = √ᾱ s² / (ᾱ s² + 1 − ᾱ) x_t."""

    def __init__(self, dim: int, scale: float) -> None:
        super().__init__()
        self.config = MLPConfig("exact", rep_dim=dim)
        self.scale, self.ac = scale, DDPMSchedule().alphas_cumprod

    def forward(self, x, t):
        a = self.ac[t].to(x.dtype)[:, None]
        return a.sqrt() * self.scale ** 2 / (a * self.scale ** 2 + 1 - a) * x


def test_ddim_eta0_is_deterministic_and_inverts():
    net, s = GaussianDenoiser(6, 0.5), DDPMSchedule()
    seeds = np.arange(5, 13)
    errors = []
    for steps in (100, 500):
        det = DDIMConfig(steps, 0.0)
        x = ddim_sample(net, s, det, seeds)
        assert torch.equal(x, ddim_sample(net, s, det, seeds[::-1].copy()).flip(0))
        z = ddim_invert(net, s, steps, x)
        start = seeded_noise(seeds, steps + 1, 6)[:, 0]
        errors.append(float((z - start).abs().max()))
    # a first-order method: the round trip's error falls as 1/steps
    assert errors[1] < 0.04 and errors[1] < errors[0] / 3.5, errors
    # the exact denoiser's ODE maps N(0, I) to N(0, s²): the samples' spread shows it
    many = ddim_sample(net, s, DDIMConfig(500, 0.0), np.arange(4000))
    assert abs(float(many.std()) - 0.5) < 0.02


def test_stochastic_ddim_depends_on_the_seed_alone():
    torch.manual_seed(0)
    net = SimpleMLP(MLPConfig("t", rep_dim=4, width=16, bottleneck=16, time_dim=8, num_blocks=2))
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    s, cfg = DDPMSchedule(), DDIMConfig(20, 1.0)
    a = ddim_sample(net, s, cfg, np.array([3, 4, 5]))
    b = ddim_sample(net, s, cfg, np.array([5]))
    torch.testing.assert_close(a[2], b[0], rtol=0, atol=1e-6)
    assert not torch.allclose(a[0], a[1])
    # the representation stream is not the pixel noise of the same seed
    g = torch.Generator().manual_seed(3)
    assert not torch.allclose(seeded_noise(np.array([3]), 1, 4)[0, 0],
                              torch.randn(4, generator=g), atol=1e-3)
    noise = seeded_noise(np.arange(2000), 1, 50).flatten()
    assert abs(float(noise.mean())) < 0.01 and abs(float(noise.std()) - 1) < 0.01


def test_simple_mlp_is_zero_at_start_and_the_papers_size():
    net = SimpleMLP(MLPConfig("t", rep_dim=8, width=32, bottleneck=32, time_dim=16))
    assert torch.equal(net(torch.randn(3, 8), torch.tensor([1, 2, 3])), torch.zeros(3, 8))
    paper = sum(p.numel() for p in SimpleMLP(rdm_mod.MLP_CONFIGS["paper"]).parameters())
    assert 60e6 < paper < 66e6  # "~63M params"


# ---------------------------------------------------------------- the encoder


def test_standardize_by_hand():
    r = torch.tensor([[1.0, 2.0, 3.0, 6.0], [0.0, 0.0, 1.0, -1.0]])
    out = standardize(r).numpy()
    raw = r.numpy()
    want = (raw - raw.mean(1, keepdims=True)) / raw.std(1, ddof=1, keepdims=True)
    np.testing.assert_allclose(out, want, rtol=1e-6)


def test_nt_xent_by_hand():
    torch.manual_seed(1)
    a, b, tau = torch.randn(3, 4), torch.randn(3, 4), 0.5
    z = torch.nn.functional.normalize(torch.cat([a, b]), dim=1).numpy().astype(np.float64)
    sim = z @ z.T / tau
    total = 0.0
    for i in range(6):
        pos = (i + 3) % 6
        others = [j for j in range(6) if j != i]
        total += -sim[i, pos] + math.log(sum(math.exp(sim[i, j]) for j in others))
    assert math.isclose(float(nt_xent(a, b, tau)), total / 6, rel_tol=1e-5)


def test_augment_is_seeded_and_stays_in_range():
    x = torch.rand(5, 1, 8, 8) * 2 - 1
    one = augment(x, torch.Generator().manual_seed(4))
    two = augment(x, torch.Generator().manual_seed(4))
    assert torch.equal(one, two) and one.shape == x.shape
    assert float(one.min()) >= -1 and float(one.max()) <= 1
    assert not torch.equal(one, augment(x, torch.Generator().manual_seed(5)))


def test_encoder_loss_on_two_views_decreases(tmp_path):
    from genbench.generators.rcg.model import load_encoder
    from genbench.generators.rcg.training import OptimConfig

    train = TrainConfig(seed=2, total_steps=160, batch_size=64, clip_grad_norm=1.0,
                        device="cpu")
    stage = EncoderStage("digits", train, "tiny", optim=OptimConfig(3e-3, 1e-4, warmup=10))
    summary = train_encoder(stage, tmp_path, quiet=True, progress_every=20)
    losses = [json.loads(line)["loss"] for line in
              (tmp_path / "encoder" / "log.jsonl").read_text().splitlines()]
    # below the loss of uniform similarities, log(2·64 − 1), and falling
    assert summary["steps"] == 160 and len(losses) == 8
    late = sum(losses[-3:]) / 3
    assert late < math.log(127) - 0.5 and late < losses[0] - 1.0, losses
    # fixed views of fixed images: the trained encoder's loss is below the initial one's
    from genbench.generators.rectified_flow.training import load_images
    images = load_images("digits", conditional=False).images[:128]
    x = images.float() / 127.5 - 1
    views = augment(x, torch.Generator().manual_seed(0)), augment(x, torch.Generator()
                                                                   .manual_seed(1))
    trained = load_encoder(tmp_path / "encoder" / "model.pt").network
    torch.manual_seed(2)
    fresh = SSLEncoder(trained.config).eval()
    with torch.no_grad():
        before = float(nt_xent(fresh(views[0]), fresh(views[1]), 0.2))
        after = float(nt_xent(trained(views[0]), trained(views[1]), 0.2))
    assert after < before - 0.3, (before, after)
    reps = load_encoder(tmp_path / "encoder" / "model.pt").represent(images[:10])
    torch.testing.assert_close(reps.mean(1), torch.zeros(10), atol=1e-5, rtol=0)
    torch.testing.assert_close(reps.std(1), torch.ones(10), atol=1e-5, rtol=0)


# ---------------------------------------------------------------- the pixel generator


def test_representation_dropout_rate_and_null():
    net = UNET_CONFIGS["tiny"].with_options(image_channels=1, rep_dim=4)
    spec = FlowSpec(net, 8)
    images = torch.zeros((20000, 1, 8, 8), dtype=torch.uint8)
    data = FlowData(images, None, None, "zeros", reps=torch.randn(20000, 4))
    task = FlowTask(data, spec, RECIPES["1rf"], rep_dropout=0.1)
    batch = task.make_batch(torch.arange(20000), torch.Generator().manual_seed(0),
                            torch.device("cpu"))
    rate = float(batch["drop"].float().mean())
    assert abs(rate - 0.1) < 4 * math.sqrt(0.1 * 0.9 / 20000)
    torch.testing.assert_close(batch["rep"], data.reps)
    # the network takes the null representation where dropped (and for rep=None)
    torch.manual_seed(0)
    unet = spec.build().eval()  # no dropout
    with torch.no_grad():
        for p in unet.parameters():
            p.add_(0.05 * torch.randn_like(p))
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([0.3, 0.7])
    rep = torch.randn(2, 4)
    dropped = unet(x, t, rep=rep, drop=torch.tensor([True, False]))
    torch.testing.assert_close(dropped[0], unet(x, t)[0])
    torch.testing.assert_close(dropped[1], unet(x, t, rep=rep)[1])
    assert not torch.allclose(dropped[0], unet(x, t, rep=rep)[0])
    with pytest.raises(GenbenchError, match="dropout"):
        FlowTask(data, spec, RECIPES["1rf"], rep_dropout=1.0)
    with pytest.raises(GenbenchError, match="representations"):
        FlowTask(FlowData(images, None, None, "x"), spec, RECIPES["1rf"])


def test_guidance_zero_is_the_conditional_model_and_scales_linearly():
    torch.manual_seed(0)
    unet = FlowSpec(UNET_CONFIGS["tiny"].with_options(image_channels=1, rep_dim=4), 8).build()
    unet.eval()
    with torch.no_grad():
        for p in unet.parameters():
            p.add_(0.05 * torch.randn_like(p))
    x, rep = torch.randn(3, 1, 8, 8), torch.randn(3, 4)
    t = torch.full((3,), 0.75)
    v_c, v_u = unet(x, t, rep=rep), unet(x, t)
    torch.testing.assert_close(guided_velocity(unet, rep, 0.0, "linear", 4)(x, t), v_c)
    const = guided_velocity(unet, rep, 2.0, "constant", 4)(x, t)
    torch.testing.assert_close(const, v_c + 2.0 * (v_c - v_u), rtol=1e-5, atol=1e-5)
    # linear: τ·(k + 1)/K at the start of step k of the uniform grid (t = 0.75 is k = 1 of 4)
    lin = guided_velocity(unet, rep, 2.0, "linear", 4)(x, t)
    torch.testing.assert_close(lin, v_c + 1.0 * (v_c - v_u), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- stages and the set


def test_checkpoint_set_is_a_seeded_source(rcg_root):
    model = load_rcg(rcg_root / "rcg.pt")
    assert model.rep_dim == 8 and model.shape == (1, 8, 8)
    seeds = np.arange(3, 10)
    big = model.generator(batch_size=64).sample(seeds)
    small = model.generator(batch_size=2).sample(seeds)
    assert big.dtype == torch.uint8 and torch.equal(big, small)
    images, reps = model.generator().sample_with_reps(seeds[2:4])
    assert torch.equal(images, big[2:4])
    torch.testing.assert_close(reps, model.rdm.sample(seeds[2:4], FAST.rdm))
    guided = model.generator(FAST.with_options(guidance=1.0))
    assert guided.identity() != model.generator().identity()
    assert "guidance 1" in guided.describe()


def test_stages_are_deterministic_and_resume_bit_identically(tmp_path, rcg_root,
                                                              monkeypatch):
    again = build(tmp_path / "again")
    for part in ("encoder", "rdm", "pixel"):
        a = read_payload(rcg_root / part / "model.pt")[0]["weights"]
        b = read_payload(again / part / "model.pt")[0]["weights"]
        for k, v in a.items():
            assert torch.equal(v, b[k]), (part, k)
    state = {"armed": False, "stops": 0}
    original = ProgressEvery.__call__

    def stop_once(self, context):  # interrupt a stage once, after step 4's checkpoint
        original(self, context)
        if context.step == 5 and state["armed"]:
            state["armed"], state["stops"] = False, state["stops"] + 1
            raise KeyboardInterrupt

    monkeypatch.setattr(ProgressEvery, "__call__", stop_once)
    resumed = tmp_path / "resumed"
    for run in stages(resumed):
        state["armed"] = True
        with pytest.raises(KeyboardInterrupt):
            run()
        run()
    assert state["stops"] == 3
    for part in ("encoder", "rdm", "pixel"):
        a = read_payload(rcg_root / part / "model.pt")[0]["weights"]
        b = read_payload(resumed / part / "model.pt")[0]["weights"]
        for k, v in a.items():
            assert torch.equal(v, b[k]), (part, k)
    assert torch.equal(load_rcg(resumed / "rcg.pt").generator().sample(np.arange(4)),
                       load_rcg(rcg_root / "rcg.pt").generator().sample(np.arange(4)))


def test_few_step_rcg_from_pairs(tmp_path, rcg_root):
    teacher = load_rcg(rcg_root / "rcg.pt")
    meta = generate_pairs(teacher, tmp_path / "pairs", num_pairs=40, sampler=FAST,
                          chunk_size=16, progress=False)
    assert meta["rep_dim"] == 8 and meta["forward_passes"] == 40 * 2
    student = PixelStage(config(4, 0.9), "tiny", recipe=RECIPES["D"],
                         pairs=(str(tmp_path / "pairs"),), init=str(rcg_root / "rcg.pt"),
                         sampler=RCGSampler(SamplerConfig("euler", 1), FAST.rdm))
    summary = train_pixel(student, tmp_path / "student", quiet=True)
    assert summary["kind"] == "2-rf"
    model = load_rcg(tmp_path / "student" / "rcg.pt")
    assert model.pixel.spec.kind == "2-rf" and model.sampler.pixel.nfe == 1
    assert model.encoder.rep_dim == 8
    assert model.generator().sample(np.arange(3)).shape == (3, 1, 8, 8)


def test_parts_that_do_not_fit_are_refused(tmp_path, rcg_root):
    parts = read_payload(rcg_root / "rcg.pt")[0]
    encoder = dict(parts["encoder"])
    config_16 = EncoderConfig(**{**encoder["config"], "rep_dim": 16})
    net = SSLEncoder(config_16)
    encoder["config"] = config_16.to_dict()
    encoder["weights"] = net.state_dict()
    save_rcg(tmp_path / "bad.pt", encoder=encoder, encoder_sha256=None, rdm=parts["rdm"],
             pixel=parts["pixel"], sampler=FAST)
    with pytest.raises(GenbenchError, match="disagree on the representation dimension"):
        load_rcg(tmp_path / "bad.pt")
    # an encoder of the right size but not the one whose representations the RDM learned
    save_rcg(tmp_path / "other.pt", encoder=parts["encoder"], encoder_sha256="0" * 64,
             rdm=parts["rdm"], pixel=parts["pixel"], sampler=FAST)
    with pytest.raises(GenbenchError, match="learned another encoder"):
        load_rcg(tmp_path / "other.pt")
    assert main(["sample", str(tmp_path / "other.pt"), "-n", "2", "-o",
                 str(tmp_path / "o.npz")]) == 2
    assert not (tmp_path / "o.npz").exists()


# ---------------------------------------------------------------- the CLI


def test_cli_end_to_end_and_bad_input(tmp_path, capsys):
    root = tmp_path / "cli"
    common = ["--out", str(root), "--steps", "4", "--batch-size", "32", "--quiet"]
    assert main(["train", "rcg", "--stage", "encoder", "--data", "digits", "--encoder", "tiny",
                 *common]) == 0
    assert main(["train", "rcg", "--stage", "rdm", "--rdm", "tiny", *common]) == 0
    assert main(["train", "rcg", "--stage", "pixel", "--net", "tiny", "--solver", "euler",
                 "--nfe", "2", "--rdm-steps", "10", "--guidance", "1", *common]) == 0
    out = tmp_path / "s.npz"
    assert main(["sample", str(root), "-n", "12", "-o", str(out), "--quiet"]) == 0
    with np.load(out) as f:
        assert f["arr_0"].shape == (12, 8, 8, 3) and "arr_1" not in f.files
    direct = load_rcg(root / "rcg.pt")
    assert direct.sampler.guidance == 1.0 and direct.sampler.rdm.steps == 10
    want = direct.generator().sample(np.arange(12))
    with np.load(out) as f:
        np.testing.assert_array_equal(f["arr_0"][..., 0], want[:, 0].numpy())
    capsys.readouterr()
    assert main(["eval", f"ckpt:{root},nfe=1,guidance=0", "--ref", "digits",
                 "--num-images", "30", "--metrics", "fid", "--json", "--quiet"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert math.isfinite(record["metrics"]["fid"]["value"])
    bad = [
        (["train", "rcg", "--stage", "rdm", "--out", str(tmp_path / "none"), "--steps", "2"],
         "no encoder stage"),
        (["train", "rcg", "--stage", "encoder", "--out", str(tmp_path / "e"), "--steps", "2"],
         "needs --data"),
        (["sample", str(root), "-n", "2", "-o", str(tmp_path / "x.npz"), "--class", "1"],
         "class-conditional"),
        (["sample", "fmnist-1rf", "-n", "2", "-o", str(tmp_path / "y.npz"), "--guidance", "1"],
         "guidance do"),
        (["eval", f"ckpt:{root},guidance=-1", "--ref", "digits", "--num-images", "4"],
         "guidance must be"),
    ]
    for argv, message in bad:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (argv, err)
    assert not (tmp_path / "x.npz").exists() and not (tmp_path / "y.npz").exists()


# ---------------------------------------------------------------- MoCo v3 and extractors


def test_mocov3_vit_sizes_are_the_official_ones():
    from genbench.generators.rcg.mocov3 import VIT_CONFIGS, MoCoViT

    # timm's vit_base/large_patch16_224 count 86,567,656 / 304,326,632 parameters with a
    # learned position embedding (197 × width) and a 1000-class head; MoCo v3's positions are
    # fixed and its head is the projection MLP
    for name, timm_total in (("vit-b", 86_567_656), ("vit-l", 304_326_632)):
        with torch.device("meta"):
            net = MoCoViT(VIT_CONFIGS[name])
        width = VIT_CONFIGS[name].width
        body = sum(p.numel() for n, p in net.named_parameters() if not n.startswith("head."))
        assert body + 197 * width + width * 1000 + 1000 == timm_total, name
        head = sum(p.numel() for n, p in net.named_parameters() if n.startswith("head."))
        assert head == width * 4096 + 2 * 4096 + 4096 * 4096 + 2 * 4096 + 4096 * 256


def test_sincos_position_embedding_by_hand():
    from genbench.generators.rcg.mocov3 import sincos_position_embedding

    emb = sincos_position_embedding(2, 8)  # 2×2 grid, width 8: quarters of 2 channels
    assert emb.shape == (1, 5, 8) and torch.equal(emb[0, 0], torch.zeros(8))
    # token 1 + (row 1)·2 + (column 0): sin/cos of row·ω, then of column·ω, ω = (1, 1/100),
    # as MoCo v3's meshgrid(grid_w, grid_h) orders them (its "w" is the row)
    omega = torch.tensor([1.0, 0.01])
    want = torch.cat([(1 * omega).sin(), (1 * omega).cos(), (0 * omega).sin(),
                      (0 * omega).cos()])
    torch.testing.assert_close(emb[0, 3], want)
    # MoCo v3's own construction, written as its vits.py does it
    gw, gh = torch.meshgrid(torch.arange(2.0), torch.arange(2.0), indexing="ij")
    om = 1.0 / 10000 ** (torch.arange(2.0) / 2)
    out_w, out_h = gw.flatten()[:, None] * om, gh.flatten()[:, None] * om
    theirs = torch.cat([out_w.sin(), out_w.cos(), out_h.sin(), out_h.cos()], dim=1)
    torch.testing.assert_close(emb[0, 1:], theirs)


def test_mocov3_loader_reads_the_official_layout(tmp_path):
    from genbench.generators.rcg import mocov3

    small = mocov3.ViTConfig("vit-test", width=16, depth=2, heads=2, patch=8, image_size=16,
                             head_hidden=32, rep_dim=8)
    entry = mocov3.MoCoCheckpoint(small, "https://example.invalid/vit-test.pth.tar")
    mocov3.MOCOV3_CHECKPOINTS.register("mocov3-test", entry)
    try:
        torch.manual_seed(0)
        source = mocov3.MoCoViT(small).eval()
        state = {f"module.base_encoder.{k}": v for k, v in source.state_dict().items()}
        state.update({f"module.momentum_encoder.{k}": v.clone()
                      for k, v in source.state_dict().items()})
        state["module.predictor.0.weight"] = torch.randn(4, 8)
        path = tmp_path / "vit-test.pth.tar"
        torch.save({"epoch": 300, "arch": "vit_test", "state_dict": state}, path)
        loaded = mocov3.load_mocov3("mocov3-test", path=path)
        images = torch.randint(0, 256, (3, 3, 20, 20), dtype=torch.uint8)
        torch.testing.assert_close(loaded.representation(images),
                                   source.representation(images))
        # the representation: ImageNet mean/std, bicubic to 16, class token, head, standardised
        x = (images.float() / 255 - torch.tensor(mocov3.IMAGENET_MEAN)[None, :, None, None]) \
            / torch.tensor(mocov3.IMAGENET_STD)[None, :, None, None]
        x = torch.nn.functional.interpolate(x, size=(16, 16), mode="bicubic",
                                            align_corners=False)
        torch.testing.assert_close(loaded.representation(images),
                                   standardize(source.head(source.features(x))))
        with pytest.raises(GenbenchError, match="is not the expected"):
            mocov3.load_mocov3("mocov3-test", path=path, sha256="0" * 64)
        torch.save({"state_dict": {"module.base_encoder.cls_token": torch.zeros(1, 1, 4)}},
                   tmp_path / "wrong.pth.tar")
        with pytest.raises(GenbenchError, match="not a vit-test MoCo v3 encoder"):
            mocov3.load_mocov3("mocov3-test", path=tmp_path / "wrong.pth.tar")
        torch.save({"model": {}}, tmp_path / "other.pth")
        with pytest.raises(GenbenchError, match="no state_dict"):
            mocov3.load_mocov3("mocov3-test", path=tmp_path / "other.pth")
        with pytest.raises(GenbenchError, match="not cached"):
            mocov3.load_mocov3("mocov3-test", download=False)
    finally:
        mocov3.MOCOV3_CHECKPOINTS._entries.pop("mocov3-test", None)


def test_rcg_encoder_is_an_extractor(rcg_root, capsys):
    from genbench.extractors import create_extractor

    extractor = create_extractor("rcg-encoder", weights=str(rcg_root))
    model = load_rcg(rcg_root / "rcg.pt")
    images = torch.randint(0, 256, (4, 1, 8, 8), dtype=torch.uint8)
    protocol_out = images.repeat(1, 3, 1, 1).float() * 2 / 255 - 1
    torch.testing.assert_close(extractor(protocol_out), model.encoder.represent(images),
                               rtol=1e-5, atol=1e-5)
    assert extractor.feature_dim == 8 and extractor.identity.startswith("rcg-encoder:")
    assert main(["eval", f"ckpt:{rcg_root}", "--ref", "digits", "--num-images", "40",
                 "--extractor", "rcg-encoder", "--weights", str(rcg_root), "--metrics",
                 "fid,pr", "--json", "--quiet"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["extractor"].startswith("rcg-encoder") or "rcg-encoder" in json.dumps(record)
    assert main(["eval", "digits", "--ref", "digits", "--num-images", "8", "--extractor",
                 "rcg-encoder"]) == 2
    assert "needs --weights" in capsys.readouterr().err


def test_representation_quality_measures():
    from genbench.generators.rcg.quality import linear_probe, representation_fd

    g = torch.Generator().manual_seed(0)
    a = torch.randn(4000, 3, generator=g, dtype=torch.float64)
    b = torch.randn(4000, 3, generator=g, dtype=torch.float64) + torch.tensor([1.0, 0, 0])
    # N(0, I) against N(e1, I): FD = ‖e1‖² = 1 (sampling error ~ a few hundredths)
    assert abs(representation_fd(a, b) - 1.0) < 0.1
    assert representation_fd(a, a) < 1e-9
    labels = torch.arange(600) % 3
    feats = torch.randn(600, 5, generator=g) + 3 * torch.nn.functional.one_hot(labels, 5)
    assert linear_probe(feats[:400], labels[:400], feats[400:], labels[400:]) > 0.95
    noise = torch.randn(600, 5, generator=g)
    assert linear_probe(noise[:400], labels[:400], noise[400:], labels[400:]) < 0.5


def test_representations_with_two_processes_equal_one(tmp_path):
    import os
    import shutil
    import subprocess
    import sys

    from genbench.generators.rcg.training import training_reps

    root = tmp_path / "one"
    train_encoder(EncoderStage("digits", config(4), "tiny"), root, quiet=True)
    two = tmp_path / "two"
    shutil.copytree(root / "encoder", two / "encoder")
    script = tmp_path / "reps.py"
    script.write_text(
        "import sys\n"
        "from genbench import distributed\n"
        "from genbench.generators.rcg.training import training_reps\n"
        "distributed.init_distributed('cpu')\n"
        "training_reps(sys.argv[1], chunk_size=300, progress=False)\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GENBENCH_CACHE": str(tmp_path / "c")}
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                          "--master_port=29547", str(script), str(two)], env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    images, reps_one, _ = training_reps(root, chunk_size=300, progress=False)
    _, reps_two, _ = training_reps(two, chunk_size=300, progress=False)
    assert reps_one.shape == (len(images), 8) and torch.equal(reps_one, reps_two)
    assert len(list((two / "reps").glob("chunk-*.npz"))) == 6  # 1797 images, 300 a chunk


def test_open_model_refuses_an_rcg_set(rcg_root):
    from genbench.generators.zoo import open_checkpoint, open_model

    assert type(open_checkpoint(rcg_root)).__name__ == "RCGModel"
    with pytest.raises(GenbenchError, match="not a rectified flow"):
        open_model(rcg_root)
