"""The flow U-Net: shapes at odd and even sizes, zero-initialised output, conditioning,
time dependence, determinism, channels-last."""

import pytest
import torch

from genbench.errors import GenbenchError
from genbench.generators.nets.unet import UNET_CONFIGS, UNet


def _perturbed(net: UNet, seed: int = 0) -> UNet:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return net.eval()


@pytest.mark.parametrize("size, config", [(8, "tiny"), (28, "fmnist-s")])
def test_shapes_and_zero_output_at_init(size, config):
    torch.manual_seed(0)
    net = UNet(UNET_CONFIGS[config].with_options(image_channels=1), size).eval()
    x = torch.randn(3, 1, size, size)
    out = net(x, torch.rand(3))
    assert out.shape == x.shape
    assert float(out.detach().abs().max()) == 0.0  # zero-initialised output: v = 0
    assert any(isinstance(m, torch.nn.Module) and m.__class__.__name__ == "Attention"
               for m in net.modules())


def test_time_and_label_change_the_output_and_runs_repeat():
    torch.manual_seed(0)
    cfg = UNET_CONFIGS["tiny"].with_options(num_classes=10, dropout=0.0)
    net = _perturbed(UNet(cfg, 8))
    x, labels = torch.randn(2, 3, 8, 8), torch.tensor([1, 7])
    t = torch.tensor([0.2, 0.2])
    a = net(x, t, labels)
    assert not torch.allclose(a, net(x, torch.tensor([0.9, 0.9]), labels))
    assert not torch.allclose(a, net(x, t, torch.tensor([2, 3])))
    torch.testing.assert_close(net(x, t, labels), a)  # eval mode: deterministic
    cl = net(x.contiguous(memory_format=torch.channels_last), t, labels)
    torch.testing.assert_close(cl, a, atol=1e-5, rtol=1e-5)
    with pytest.raises(GenbenchError, match="class-conditional: give labels"):
        net(x, t)
    torch.manual_seed(0)
    again = _perturbed(UNet(cfg, 8))
    for p, q in zip(net.parameters(), again.parameters(), strict=True):
        assert torch.equal(p, q)
    with pytest.raises(GenbenchError, match="unknown U-Net option"):
        UNET_CONFIGS["tiny"].with_options(width=3)


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    net = _perturbed(UNet(UNET_CONFIGS["tiny"].with_options(num_classes=3), 8)).train()
    out = net(torch.randn(4, 3, 8, 8), torch.rand(4), torch.tensor([0, 1, 2, 0]))
    out.pow(2).mean().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert missing == []
