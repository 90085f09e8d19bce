"""The shared training engine (genbench.training) on a tiny regression MLP: gradient
accumulation, exact resume mid-epoch, EMA, clipping, the per-step learning rate, callbacks,
the length in images, autocast, the sampler, and DistributedDataParallel with accumulation
under torchrun. Each test trains for a handful of steps on the CPU.

Run as a script (under torchrun) it is the worker of ``test_two_processes_accumulate``."""

from __future__ import annotations

import copy
import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from genbench.errors import GenbenchError
from genbench.training import (
    Callback,
    EpochSampler,
    StepContext,
    TrainConfig,
    TrainTask,
    load_checkpoint,
    resolve_amp,
    train,
)
from genbench.training.sampler import epoch_generator


class Regression(TrainTask):
    """y = tanh-MLP(x), mean squared error; optional dropout (global RNG) and input noise
    (the epoch generator), so that resuming must restore both streams."""

    def __init__(self, n: int = 24, *, lr: float = 0.1, momentum: float = 0.0,
                 schedule=None, dropout: float = 0.0, noise: float = 0.0) -> None:
        g = torch.Generator().manual_seed(7)
        self.x = torch.randn(n, 4, generator=g)
        self.y = torch.stack([self.x[:, 0] * self.x[:, 1], self.x[:, 2] - self.x[:, 3]], 1)
        self.base_lr, self.momentum, self.schedule = lr, momentum, schedule
        self.dropout, self.noise = dropout, noise
        self.batches: list[list[int]] = []
        self.autocast: list[tuple[bool, torch.dtype]] = []
        self.initial: dict[str, torch.Tensor] = {}

    @property
    def num_examples(self) -> int:
        return len(self.x)

    def build_network(self, device: torch.device) -> nn.Module:
        layers: list[nn.Module] = [nn.Linear(4, 16), nn.Tanh()]
        if self.dropout:
            layers.append(nn.Dropout(self.dropout))
        net = nn.Sequential(*layers, nn.Linear(16, 2)).to(device)
        self.initial = copy.deepcopy(net.state_dict())
        return net

    def build_optimizer(self, network: nn.Module) -> torch.optim.Optimizer:
        weights = [p for p in network.parameters() if p.ndim > 1]
        biases = [p for p in network.parameters() if p.ndim == 1]
        return torch.optim.SGD([{"params": weights}, {"params": biases}], lr=self.base_lr,
                               momentum=self.momentum)

    def lr(self, step: int) -> float:
        return self.schedule(step) if self.schedule is not None else self.base_lr

    def make_batch(self, indices, generator, device):
        self.batches.append(indices.tolist())
        x = self.x[indices]
        if self.noise:
            x = x + self.noise * torch.randn(x.shape, generator=generator)
        return x.to(device), self.y[indices].to(device)

    def loss(self, model, batch, step):
        x, y = batch
        out = model(x)
        self.autocast.append((torch.is_autocast_enabled("cpu"), out.dtype))
        return F.mse_loss(out.float(), y)


def every_step(record: list, what=lambda c: c.step) -> Callback:
    return Callback(1, lambda c: record.append(what(c)))


def params(net: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in net.parameters()]


def flat(net_or_tensors) -> torch.Tensor:
    tensors = params(net_or_tensors) if isinstance(net_or_tensors, nn.Module) \
        else net_or_tensors
    return torch.cat([t.flatten() for t in tensors])


def assert_same(a, b, where: str = "") -> None:
    """Nested dicts/lists of tensors and plain values, equal bit for bit."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


class Crash(Exception):
    pass


def crash_at(step: int) -> Callback:
    def fn(c: StepContext) -> None:
        raise Crash(c.step)
    return Callback(step, fn)


def test_total_images_converts_to_steps():
    assert TrainConfig(total_images=50, batch_size=8).steps == 7
    assert TrainConfig(total_images=48, batch_size=8).steps == 6
    assert TrainConfig(total_steps=5, batch_size=8).steps == 5
    with pytest.raises(GenbenchError, match="exactly one"):
        TrainConfig(total_steps=5, total_images=40)
    with pytest.raises(GenbenchError, match="exactly one"):
        TrainConfig()
    seen: list[int] = []
    result = train(Regression(), TrainConfig(total_images=50, batch_size=8),
                   callbacks=[every_step(seen)])
    assert result.steps == 7 and seen == [1, 2, 3, 4, 5, 6, 7]


def test_sampler_follows_the_seeded_epoch_order():
    n, batch, seed, world = 10, 4, 3, 2
    for rank in range(world):
        sampler = EpochSampler(n, batch, seed, rank, world)
        assert sampler.local_batch == 2 and sampler.steps_per_epoch == 3
        for step in range(7):
            epoch, k = divmod(step, 3)
            gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
            mine = torch.randperm(n, generator=gen)[rank::world]
            assert sampler.indices(step).tolist() == mine[2 * k:2 * k + 2].tolist()
            if k == 0:  # the epoch generator continues right after the randperm
                assert torch.equal(sampler.generator.get_state(), gen.get_state())
    # a process with nothing left in the epoch's last step takes its first example again
    small = EpochSampler(5, 4, 0, rank=1, world_size=2)
    mine = torch.randperm(5, generator=epoch_generator(0, 0))[1::2]
    assert small.steps_per_epoch == 2 and len(mine) == 2
    assert small.indices(0).tolist() == mine[:2].tolist()
    assert small.indices(1).tolist() == mine[:1].tolist()
    # the state resumes mid-epoch, generator included; steps must come in order
    a = EpochSampler(n, batch, seed)
    a.indices(0)
    a.indices(1)
    torch.rand(3, generator=a.generator)
    b = EpochSampler(n, batch, seed)
    b.load_state_dict(a.state_dict())
    assert b.indices(2).tolist() == a.indices(2).tolist()
    assert torch.equal(torch.rand(5, generator=a.generator), torch.rand(5, generator=b.generator))
    with pytest.raises(ValueError, match="in order"):
        b.indices(1)
    with pytest.raises(ValueError, match="first step"):
        EpochSampler(n, batch, seed).indices(4)


@pytest.mark.parametrize("accum", [2, 4])
def test_gradient_accumulation_equals_one_batch(accum):
    results, initial = [], None
    for a in (1, accum):
        config = TrainConfig(seed=2, total_steps=6, batch_size=8, grad_accum=a, amp="off")
        task = Regression(momentum=0.9)
        results.append(flat(train(task, config).network))
        assert [len(b) for b in task.batches] == [8 // a] * (6 * a)
        initial = flat(list(task.initial.values()))
    one, many = results
    assert (one - initial).norm() > 0.1  # it trained
    torch.testing.assert_close(many, one, rtol=1e-5, atol=1e-6)


def test_resume_mid_epoch_is_bit_identical(tmp_path):
    def task() -> Regression:
        return Regression(20, momentum=0.9, dropout=0.2, noise=0.1)

    # 20 examples, batch 6: 4 steps per epoch (the last of 2); checkpoints at 3, 6, 9, 11
    config = TrainConfig(seed=5, total_steps=11, batch_size=6, ema=0.9, ema_warmup=True,
                         checkpoint_every=3, amp="auto")
    whole_task = task()
    whole = train(whole_task, config, checkpoint_path=tmp_path / "whole.pt")
    assert whole.steps_per_epoch == 4 and whole.start_step == 0

    with pytest.raises(Crash):
        train(task(), config, checkpoint_path=tmp_path / "cut.pt", callbacks=[crash_at(7)])
    saved = load_checkpoint(tmp_path / "cut.pt")
    assert saved is not None and saved.step == 6 and saved.step % 4 != 0  # mid-epoch
    resumed_task = task()
    resumed = train(resumed_task, config, checkpoint_path=tmp_path / "cut.pt")
    assert resumed.start_step == 6
    assert resumed_task.batches == whole_task.batches[6:]

    assert_same(resumed.network.state_dict(), whole.network.state_dict(), "model")
    assert resumed.ema_network is not None and whole.ema_network is not None
    assert_same(resumed.ema_network.state_dict(), whole.ema_network.state_dict(), "ema")
    a, b = load_checkpoint(tmp_path / "whole.pt"), load_checkpoint(tmp_path / "cut.pt")
    assert a is not None and b is not None and a.step == b.step == 11
    for name in ("model", "optimizer", "ema", "sampler", "rng", "meta"):
        assert_same(getattr(a, name), getattr(b, name), name)
    assert a.optimizer["state"]  # momentum buffers were compared
    # and the crash really mattered: without the checkpoint the run starts afresh
    fresh = train(task(), TrainConfig(seed=5, total_steps=5, batch_size=6))
    assert fresh.start_step == 0


def test_run_seconds_count_the_interrupted_invocation(tmp_path):
    import time

    def slow(c: StepContext) -> None:
        if c.step < 3:  # after steps 1 and 2, before the checkpoint at step 3: 0.6 s
            time.sleep(0.3)

    config = TrainConfig(seed=5, total_steps=6, batch_size=6, checkpoint_every=3)
    with pytest.raises(Crash):
        train(Regression(20), config, checkpoint_path=tmp_path / "c.pt",
              callbacks=[Callback(1, slow), crash_at(5)])
    saved = load_checkpoint(tmp_path / "c.pt")
    assert saved is not None and saved.step == 3 and 0.6 <= saved.seconds < 5
    began = time.perf_counter()
    resumed = train(Regression(20), config, checkpoint_path=tmp_path / "c.pt")
    this_call = time.perf_counter() - began
    assert resumed.start_step == 3 and this_call < 0.6
    assert saved.seconds < resumed.seconds <= saved.seconds + this_call
    # a finished run asked again trains nothing and reports the same seconds
    final = load_checkpoint(tmp_path / "c.pt")
    assert final is not None and saved.seconds < final.seconds == resumed.seconds
    again = train(Regression(20), config, checkpoint_path=tmp_path / "c.pt")
    assert again.start_step == 6 and again.seconds == final.seconds


@pytest.mark.parametrize("warmup", [False, True])
def test_ema_is_the_running_average(warmup):
    decay = 0.8
    task = Regression(lr=0.3)
    seen: list[list[torch.Tensor]] = []
    emas: list[list[torch.Tensor]] = []
    config = TrainConfig(seed=1, total_steps=3, batch_size=8, ema=decay, ema_warmup=warmup)
    result = train(task, config, callbacks=[every_step(seen, lambda c: params(c.network)),
                                            every_step(emas, lambda c: params(c.ema_network))])
    expected = [t.clone() for t in task.initial.values()]  # Linear order: weight, bias
    for t, weights in enumerate(seen):
        d = min(decay, (1 + t) / (10 + t)) if warmup else decay
        expected = [d * e + (1 - d) * w for e, w in zip(expected, weights, strict=True)]
        torch.testing.assert_close(flat(emas[t]), flat(expected), rtol=0, atol=1e-7)
    assert result.ema_network is not None
    torch.testing.assert_close(flat(result.ema_network), flat(expected), rtol=0, atol=1e-7)
    assert not torch.allclose(flat(result.ema_network), flat(result.network), atol=1e-3)
    assert not any(p.requires_grad for p in result.ema_network.parameters())


def test_gradient_clipping_bounds_the_update():
    clip = 1e-3

    def run(clip_norm):
        task = Regression(lr=1.0)
        seen: list[torch.Tensor] = []
        config = TrainConfig(seed=4, total_steps=4, batch_size=8, clip_grad_norm=clip_norm)
        train(task, config, callbacks=[every_step(seen, lambda c: flat(c.network))])
        return task, [flat(list(task.initial.values())), *seen]

    task, weights = run(clip)
    updates = [(b - a).norm().item() for a, b in itertools.pairwise(weights)]
    assert all(0.99 * clip < u <= clip * (1 + 1e-5) for u in updates), updates
    _, free = run(None)
    assert (free[1] - free[0]).norm() > 100 * clip  # the gradients are far above the bound
    # by hand: the first update is -g · clip / (|g| + 1e-6), g the first batch's gradient
    torch.manual_seed(4)
    net = task.build_network(torch.device("cpu"))
    idx = torch.tensor(task.batches[0])
    F.mse_loss(net(task.x[idx]), task.y[idx]).backward()
    g = torch.cat([p.grad.flatten() for p in net.parameters()])
    expected = -g * clip / (g.norm() + 1e-6)  # elements ~1e-4; float32 weights ~0.3
    torch.testing.assert_close(weights[1] - weights[0], expected, rtol=1e-3, atol=1e-7)
    assert F.cosine_similarity(weights[1] - weights[0], expected, dim=0) > 1 - 1e-5


def test_learning_rate_is_set_every_step():
    seen: list[list[float]] = []
    task = Regression(schedule=lambda s: 0.01 * (s + 1))
    train(task, TrainConfig(total_steps=5, batch_size=8),
          callbacks=[every_step(seen, lambda c: [g["lr"] for g in c.optimizer.param_groups])])
    assert seen == [[0.01 * t] * 2 for t in range(1, 6)]


def test_callbacks_are_called_at_their_steps(tmp_path):
    calls: dict[int, list[int]] = {2: [], 3: []}
    nets: list[tuple] = []

    def note(every: int) -> Callback:
        return Callback(every, lambda c: calls[every].append(c.step))

    callbacks = [note(2), note(3)]
    every_6 = Callback(6, lambda c: nets.append((c.network, c.ema_network, c.epoch,
                                                 c.total_steps)))
    result = train(Regression(), TrainConfig(total_steps=7, batch_size=8, ema=0.5),
                   callbacks=[*callbacks, every_6])
    assert calls == {2: [2, 4, 6], 3: [3, 6]}
    assert nets == [(result.network, result.ema_network, 6 / 3, 7)]

    # the same steps, counted over the whole run, when it is resumed
    calls[2].clear()
    calls[3].clear()
    config = TrainConfig(total_steps=7, batch_size=8, checkpoint_every=2)
    with pytest.raises(Crash):
        train(Regression(), config, checkpoint_path=tmp_path / "c.pt",
              callbacks=[*callbacks, crash_at(4)])
    assert calls == {2: [2, 4], 3: [3]}
    calls[2].clear()
    calls[3].clear()
    resumed = train(Regression(), config, checkpoint_path=tmp_path / "c.pt",
                    callbacks=callbacks)
    assert resumed.start_step == 4 and calls == {2: [6], 3: [6]}


def test_amp_auto_is_off_on_cpu():
    cpu = torch.device("cpu")
    assert resolve_amp("auto", cpu) == "off" and resolve_amp("bf16", cpu) == "bf16"
    task = Regression()
    result = train(task, TrainConfig(total_steps=2, batch_size=8, amp="auto"))
    assert result.amp == "off"
    assert task.autocast == [(False, torch.float32)] * 2
    task = Regression()
    result = train(task, TrainConfig(total_steps=2, batch_size=8, amp="bf16"))
    assert result.amp == "bf16"
    assert task.autocast == [(True, torch.bfloat16)] * 2
    assert not torch.is_autocast_enabled("cpu")


def test_foreign_checkpoints_are_refused(tmp_path):
    path = tmp_path / "c.pt"
    train(Regression(), TrainConfig(seed=0, total_steps=2, batch_size=8), checkpoint_path=path)
    with pytest.raises(GenbenchError, match="checkpoint of another run"):
        train(Regression(), TrainConfig(seed=1, total_steps=2, batch_size=8),
              checkpoint_path=path)
    torch.save({"model": {}, "optimizer": {}, "epoch": 1}, path)  # the old CAS layout
    path.with_name("c.pt.sha256").unlink()  # as an older genbench left it: no digest
    with pytest.warns(UserWarning, match="has no recorded sha256"), \
            pytest.raises(GenbenchError, match=r"not a genbench\.training"):
        train(Regression(), TrainConfig(total_steps=2, batch_size=8), checkpoint_path=path)


def test_damaged_checkpoint_is_set_aside_and_training_restarts(tmp_path):
    """A checkpoint that does not match its digest is never resumed from."""
    path = tmp_path / "c.pt"
    config = TrainConfig(seed=0, total_steps=4, batch_size=8, checkpoint_every=2)
    clean = train(Regression(), config)
    partial = TrainConfig(seed=0, total_steps=2, batch_size=8, checkpoint_every=2)
    train(Regression(), partial, checkpoint_path=path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match=r"c\.pt: does not match its recorded sha256"):
        resumed = train(Regression(), config, checkpoint_path=path)
    assert resumed.start_step == 0  # from the beginning, not from the damaged step 2
    assert (tmp_path / "c.pt.corrupt").is_file()
    for a, b in zip(clean.network.state_dict().values(), resumed.network.state_dict().values(),
                    strict=True):
        assert torch.equal(a, b)
    path.with_name("c.pt.sha256").unlink()  # whole (renamed atomically), digest not written
    with pytest.warns(UserWarning, match="has no recorded sha256"):
        assert train(Regression(), config, checkpoint_path=path).start_step == 4


def _worker(out: Path) -> None:
    """torchrun worker: 2 processes × 2 micro-batches of 2 = the global batch of 8."""
    from genbench import distributed

    ctx = distributed.init_distributed("cpu")
    config = TrainConfig(seed=2, total_steps=6, batch_size=8, grad_accum=2, checkpoint_every=3)
    task = Regression(momentum=0.9)
    result = train(task, config, checkpoint_path=out / "ddp.pt")
    assert [len(b) for b in task.batches] == [2] * 12
    if ctx.is_main:
        torch.save(result.network.state_dict(), out / "ddp_weights.pt")


def test_two_processes_accumulate(tmp_path):
    """DistributedDataParallel with no_sync accumulation gives the one-process weights."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                           "--master_port=29537", __file__, str(tmp_path)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = torch.load(tmp_path / "ddp_weights.pt", weights_only=True)
    one = train(Regression(momentum=0.9),
                TrainConfig(seed=2, total_steps=6, batch_size=8)).network.state_dict()
    for name, tensor in one.items():
        torch.testing.assert_close(two[name], tensor, rtol=1e-5, atol=1e-6)
    saved = load_checkpoint(tmp_path / "ddp.pt")
    assert saved is not None and saved.step == 6 and saved.world_size == 2
    assert len(saved.sampler) == len(saved.rng) == 2


if __name__ == "__main__":
    _worker(Path(sys.argv[1]))
