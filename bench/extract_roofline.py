"""How close float32 feature extraction runs to this CPU's arithmetic limit, layer by layer.

The TF-FID Inception costs a fixed number of float32 multiply-adds per image (counted here
with torch's FLOP counter). The fastest any direct-convolution implementation can run is
that count divided by the machine's float32 peak, which this bench measures as the best rate
reached by any of the network's own convolutions (oneDNN, channels-last, the eager batch
genbench uses) or by a large float32 GEMM. From that it reports:

* the network's rate (genbench's eager forward, BN folded, channels-last) as a fraction of
  the peak;
* the ceiling in images/s, and, given pytorch-fid's measured images/s on the same machine
  (``--pytorch-fid-json``: a ``bench/extract_throughput.py`` record), the largest speed-up
  over pytorch-fid any float32 direct-convolution extractor could reach;
* for every stride-1 3×3 / 5×5 convolution, the Winograd alternative PyTorch ships on CPU
  (NNPACK): its time and its relative difference from the direct result, and what the whole
  network would gain if every such layer used it where it is faster.

    .venv/bin/python bench/extract_roofline.py --json bench/results/extract_roofline.json \\
        --pytorch-fid-json bench/results/extract_throughput_bf16cpu.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from genbench.extractors import CPU_SLICE, InceptionExtractor


def _seconds(fn, repeats: int) -> float:
    """Best of ``repeats`` timed calls after one warm-up (the best is the machine's rate
    without interference from other work)."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def conv_layers(net: torch.nn.Module, batch: int) -> list[dict]:
    """Every convolution of one forward pass on ``batch`` images: its module and input shape."""
    layers: list[dict] = []

    def hook(module, inputs, _output):
        layers.append({"module": module, "shape": tuple(inputs[0].shape)})

    handles = [m.register_forward_hook(hook) for m in net.modules()
               if isinstance(m, torch.nn.Conv2d)]
    with torch.inference_mode():
        net(torch.zeros(batch, 3, 299, 299).contiguous(memory_format=torch.channels_last))
    for handle in handles:
        handle.remove()
    return layers


def layer_record(layer: dict, repeats: int) -> dict:
    conv, shape = layer["module"], layer["shape"]
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=generator)
    x_last = x.contiguous(memory_format=torch.channels_last)
    weight, bias = conv.weight.detach(), conv.bias.detach()
    with torch.inference_mode():
        direct = F.conv2d(x_last, weight, bias, conv.stride, conv.padding)
        seconds = _seconds(lambda: F.conv2d(x_last, weight, bias, conv.stride, conv.padding),
                           repeats)
        n, _, h, w = direct.shape
        flops = 2 * n * h * w * weight.numel()
        record = {"input": list(shape), "weight": list(weight.shape),
                  "stride": list(conv.stride), "padding": list(conv.padding),
                  "flops": flops, "seconds": seconds, "gflop_per_s": flops / seconds / 1e9}
        square = weight.shape[2] == weight.shape[3] and weight.shape[2] in (3, 5)
        if square and tuple(conv.stride) == (1, 1) and torch.backends.nnpack.is_available():
            def winograd():
                return torch._nnpack_spatial_convolution(x, weight, bias, list(conv.padding),
                                                         [1, 1])
            out = winograd()
            record["nnpack_seconds"] = _seconds(winograd, repeats)
            record["nnpack_max_rel_diff"] = float((out - direct).abs().max()
                                                  / direct.abs().max())
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=CPU_SLICE,
                        help="images per forward (genbench's eager CPU slice)")
    parser.add_argument("--images", type=int, default=48, help="images for the network rate")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--pytorch-fid-json",
                        help="a bench/extract_throughput.py record of this machine")
    parser.add_argument("--json")
    args = parser.parse_args()

    extractor = InceptionExtractor(compile=False)
    extractor._build()
    net = extractor.net
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        net(torch.zeros(1, 3, 299, 299).contiguous(memory_format=torch.channels_last))
    flops_per_image = counter.get_total_flops()

    layers = [layer_record(layer, args.repeats) for layer in conv_layers(net, args.batch)]
    conv_seconds = sum(layer["seconds"] for layer in layers)
    size = 4096
    a, b = torch.randn(size, size), torch.randn(size, size)
    gemm_rate = 2 * size ** 3 / _seconds(lambda: a @ b, args.repeats) / 1e9
    peak = max(gemm_rate, *(layer["gflop_per_s"] for layer in layers))

    x = torch.rand(args.images, 3, 299, 299).mul(2).sub(1)
    x = x.contiguous(memory_format=torch.channels_last)
    network_seconds = _seconds(lambda: extractor(x), max(1, args.repeats // 2))
    images_per_s = args.images / network_seconds
    winograd_saving = sum(max(0.0, layer["seconds"] - layer.get("nnpack_seconds", float("inf")))
                          for layer in layers)
    record = {
        "machine": {"cpu": platform.processor() or "unknown", "cpus": os.cpu_count(),
                    "torch": torch.__version__, "threads": torch.get_num_threads()},
        "batch": args.batch,
        "flops_per_image": flops_per_image,
        "peak_gflop_per_s": peak,
        "peak_source": "float32 GEMM" if peak == gemm_rate else "fastest convolution layer",
        "gemm_4096_gflop_per_s": gemm_rate,
        "network_images_per_s": images_per_s,
        "network_gflop_per_s": images_per_s * flops_per_image / 1e9,
        "network_fraction_of_peak": images_per_s * flops_per_image / 1e9 / peak,
        "ceiling_images_per_s": peak * 1e9 / flops_per_image,
        "convolutions_fraction_of_network": conv_seconds / (network_seconds / args.images
                                                            * args.batch),
        "winograd_nnpack_layers_faster": sum(1 for layer in layers if "nnpack_seconds" in layer
                                             and layer["nnpack_seconds"] < layer["seconds"]),
        "winograd_nnpack_max_network_gain": conv_seconds / (conv_seconds - winograd_saving),
        "layers": layers,
    }
    if args.pytorch_fid_json:
        peer = json.loads(Path(args.pytorch_fid_json).read_text())
        peer_rate = peer["results"]["pytorch-fid"]["images_per_s"]
        record["pytorch_fid_images_per_s"] = peer_rate
        record["ceiling_speedup_vs_pytorch_fid"] = record["ceiling_images_per_s"] / peer_rate
    summary = {key: value for key, value in record.items() if key != "layers"}
    print(json.dumps(summary, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
