"""The training-loop evaluator: a toy generator trained on the shared engine is scored with
genbench every N steps and drawn as a grid, without changing the training run."""

import json

import numpy as np
import torch
from PIL import Image
from torch import nn

from genbench import Evaluation, ExtractionConfig, FunctionGenerator
from genbench.training import TrainConfig, TrainTask, train
from genbench.training.callbacks import SampleGridEvery, ScoreEvery

TARGET = 90.0  # the "data": noise images brightened by 90


def noise(seeds):
    return np.stack([np.random.default_rng(int(s)).integers(0, 120, (3, 12, 12))
                     for s in seeds]).astype(np.float64)


class Brightness(TrainTask):
    """One parameter, the brightness shift; the loss pulls it to TARGET (each SGD step closes
    30 % of the gap); the loss draws from the global RNG, so RNG isolation matters."""

    num_examples = 16

    def build_network(self, device):
        net = nn.Module()
        net.shift = nn.Parameter(torch.zeros(()))
        return net.to(device)

    def build_optimizer(self, network):
        return torch.optim.SGD(network.parameters(), lr=0.3)

    def lr(self, step):
        return 0.3

    def make_batch(self, indices, generator, device):
        return indices

    def loss(self, model, batch, step):
        jitter = torch.rand(()) * 0.01
        return 0.5 * (model.shift - TARGET) ** 2 + jitter * model.shift


def as_generator(network):
    def sample(seeds, labels):
        # a badly behaved generator that also draws from the global RNG
        torch.rand(3)
        np.random.rand(3)
        shift = network.shift.detach().item()
        return np.clip(np.rint(noise(seeds) + shift), 0, 255).astype(np.uint8)
    # a fixed identity, as a user might give: the callback must not serve cached features
    return FunctionGenerator(sample, name="brightness", identity="brightness-model")


def test_score_and_grid_every_n_steps(fresh_cache, tmp_path):
    reference = np.clip(noise(range(1000, 1040)) + TARGET, 0, 255).astype(np.uint8)
    ev = Evaluation(reference.transpose(0, 2, 3, 1), metrics="fid",
                    config=ExtractionConfig(extractor="tiny-test", batch_size=20,
                                            progress=False))
    score = ScoreEvery(2, ev, as_generator, num_images=40, log=tmp_path / "scores.jsonl",
                       use_ema=False)
    grid = SampleGridEvery(3, as_generator, tmp_path / "grids", count=6)
    config = TrainConfig(seed=0, total_steps=6, batch_size=4)
    with_callbacks = train(Brightness(), config, callbacks=[score, grid])
    plain = train(Brightness(), config)
    assert torch.equal(with_callbacks.network.shift, plain.network.shift)  # RNG isolated
    assert [e["step"] for e in score.history] == [2, 4, 6]
    fids = [e["metrics"]["fid"]["value"] for e in score.history]
    assert fids[0] > fids[1] > fids[2]  # the shift approaches the data's
    logged = [json.loads(line) for line in (tmp_path / "scores.jsonl").read_text().splitlines()]
    assert [e["metrics"] for e in logged] == [e["metrics"] for e in score.history]
    assert [p.name for p in grid.written] == ["step-0000003.png", "step-0000006.png"]
    with Image.open(grid.written[0]) as png:
        assert png.size == (3 * 14 + 2, 2 * 14 + 2)
    assert with_callbacks.network.training is False  # train() returns eval mode
