import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from genbench.errors import GenbenchError
from genbench.protocols import PROTOCOLS, get_protocol, resize_bilinear_tf1


def test_tf1_resize_matches_hand_computed_legacy_bilinear():
    # TF1 (align_corners=False, no half-pixel centres): src = dst * in/out, edge clamped.
    x = torch.tensor([[[[0.0, 10.0]]]]).expand(1, 1, 2, 2).contiguous()
    out = resize_bilinear_tf1(x, 4)
    np.testing.assert_allclose(out[0, 0, 0].numpy(), [0.0, 5.0, 10.0, 10.0])
    y = torch.tensor([[[[0.0], [3.0], [9.0]]]]).expand(1, 1, 3, 3).contiguous()
    col = resize_bilinear_tf1(y, 5)[0, 0, :, 0].numpy()
    # src rows 0, .6, 1.2, 1.8, 2.4 -> 0, 1.8, 3+.2*6, 3+.8*6, 9 (clamped)
    np.testing.assert_allclose(col, [0.0, 1.8, 4.2, 7.8, 9.0], rtol=1e-6)


def test_tf1_resize_differs_from_half_pixel_bilinear():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    assert not torch.allclose(resize_bilinear_tf1(x, 7),
                              F.interpolate(x, size=(7, 7), mode="bilinear",
                                            align_corners=False))


def test_tf_protocol_at_299_is_exact_normalisation():
    img = torch.randint(0, 256, (2, 3, 299, 299), dtype=torch.uint8)
    out = get_protocol("tf")(img)
    assert torch.equal(out, (img.float() - 128) / 128)


def test_pytorch_fid_protocol():
    img = torch.randint(0, 256, (1, 3, 28, 28), dtype=torch.uint8)
    expected = 2 * F.interpolate(img.float() / 255, size=(299, 299), mode="bilinear",
                                 align_corners=False) - 1
    assert torch.allclose(get_protocol("pytorch-fid")(img), expected)


def test_clean_protocol_is_pil_bicubic_on_float_channels():
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (3, 20, 30), dtype=np.uint8)
    out = get_protocol("clean")(torch.from_numpy(img)[None])[0].numpy()
    ch = Image.fromarray(img[1].astype(np.float32), mode="F").resize(
        (299, 299), Image.Resampling.BICUBIC)
    np.testing.assert_allclose(out[1], (np.clip(np.asarray(ch), 0, 255) - 128) / 128,
                               rtol=0, atol=1e-6)
    assert out.min() >= -1.0 and out.max() <= 127 / 128 + 1e-6  # clipped, not re-quantised


def test_mixed_sizes_keep_order():
    a = torch.full((3, 10, 10), 10, dtype=torch.uint8)
    b = torch.full((3, 20, 12), 200, dtype=torch.uint8)
    out = get_protocol("tf")([a, b, b, a])
    assert out.shape == (4, 3, 299, 299)
    means = out.mean(dim=(1, 2, 3))
    assert means[0] == means[3] and means[1] == means[2] and means[0] < means[1]


def test_input_contract_and_unknown_name():
    with pytest.raises(GenbenchError, match="uint8"):
        get_protocol("tf")(torch.zeros(1, 3, 8, 8))
    with pytest.raises(GenbenchError, match="unknown protocol 'fast'"):
        get_protocol("fast")
    assert set(PROTOCOLS) >= {"tf", "pytorch-fid", "clean"}
