"""Loading throughput: decode + protocol (no network) of the same PNG files by genbench's
loader and by pytorch-fid's and clean-fid's, at the same worker counts, side by side in one
run. Each loader produces the float batch its network would take (N×3×299×299):

* pytorch-fid 0.3.0: ``ImagePathDataset`` (PIL, ``ToTensor``) in a DataLoader, then the
  bilinear resize and 2x − 1 that its ``InceptionV3.forward`` applies (in this process);
* clean-fid 0.1.35: ``ResizeDataset`` in mode ``clean`` (PIL bicubic per channel, in the
  workers), as its ``get_files_features`` loads, then the (x − 128)/128 of its network;
* genbench: ``features.load_stream`` with the matching protocol (``pytorch-fid``, ``clean``)
  and with ``tf``, the workers decoding and preprocessing.

    python bench/load_throughput.py --make 10000 --folder /tmp/png256   # the PNGs, once
    python bench/load_throughput.py --folder /tmp/png256 --workers 1,2 \\
        --json bench/results/load_throughput.json

Needs torchvision, pytorch-fid and clean-fid (the peers' venv); genbench is imported from
src/. The PNGs: Fashion-MNIST test images, bicubic to 256×256, coloured (R, G, B = the image,
its mirror, its transpose) so that they decode as RGB.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def make_pngs(folder: Path, n: int) -> None:
    from PIL import Image

    from genbench.sources import open_source

    folder.mkdir(parents=True, exist_ok=True)
    source = open_source("fashion-mnist:test")
    for i in range(n):
        grey = Image.fromarray(source.load(i % len(source))[:, :, 0]).resize(
            (256, 256), Image.Resampling.BICUBIC)
        g = np.asarray(grey)
        Image.fromarray(np.stack([g, g[:, ::-1], g.T], axis=2)).save(folder / f"{i:05d}.png")


def _consume(batches) -> tuple[int, float]:
    count, check = 0, 0.0
    for batch in batches:
        count += len(batch)
        check += float(batch[:, :, ::37, ::37].sum())
    return count, check


def genbench_loader(folder: Path, protocol: str, workers: int, batch: int):
    from genbench.features import _groups, _to_uint8_batch, load_stream
    from genbench.protocols import get_protocol
    from genbench.sources import ImageFolderSource

    source = ImageFolderSource(folder)
    proto = get_protocol(protocol)
    groups = _groups(list(range(len(source))), batch)
    for _, images, _ in load_stream(source, groups, False, workers, proto):
        yield images if isinstance(images, torch.Tensor) else proto(
            _to_uint8_batch(images, torch.device("cpu")))


def pytorch_fid_loader(folder: Path, workers: int, batch: int):
    import torch.nn.functional as F
    import torchvision.transforms as TF
    from pytorch_fid.fid_score import ImagePathDataset

    files = sorted(folder.glob("*.png"))
    loader = torch.utils.data.DataLoader(ImagePathDataset(files, transforms=TF.ToTensor()),
                                         batch_size=batch, shuffle=False, drop_last=False,
                                         num_workers=workers)
    for x in loader:  # what InceptionV3.forward does first (resize_input, normalize_input)
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        yield 2 * x - 1


def clean_fid_loader(folder: Path, workers: int, batch: int):
    from cleanfid.utils import ResizeDataset

    files = sorted(str(f) for f in folder.glob("*.png"))
    dataset = ResizeDataset(files, mode="clean")
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=False,
                                         drop_last=False, num_workers=workers)
    for x in loader:  # its InceptionV3W.forward then normalises: (x − 128)/128
        yield (x - 128) / 128


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, required=True)
    parser.add_argument("--make", type=int, default=0, help="write this many PNGs and stop")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.make:
        make_pngs(args.folder, args.make)
        return
    n = len(list(args.folder.glob("*.png")))
    cases = []
    for w in (int(v) for v in args.workers.split(",")):
        cases += [("pytorch-fid 0.3.0", "pytorch-fid", w,
                   lambda w=w: pytorch_fid_loader(args.folder, w, args.batch_size)),
                  ("genbench", "pytorch-fid", w,
                   lambda w=w: genbench_loader(args.folder, "pytorch-fid", w, args.batch_size)),
                  ("clean-fid 0.1.35", "clean", w,
                   lambda w=w: clean_fid_loader(args.folder, w, args.batch_size)),
                  ("genbench", "clean", w,
                   lambda w=w: genbench_loader(args.folder, "clean", w, args.batch_size)),
                  ("genbench", "tf", w,
                   lambda w=w: genbench_loader(args.folder, "tf", w, args.batch_size))]
    rows = []
    for loader, protocol, workers, make in cases:
        start = time.perf_counter()
        count, check = _consume(make())
        seconds = time.perf_counter() - start
        rows.append({"loader": loader, "protocol": protocol, "workers": workers,
                     "images": count, "seconds": round(seconds, 2),
                     "images_per_second": round(count / seconds, 1), "checksum": check})
        print(json.dumps(rows[-1]), flush=True)
    record = {"images": n, "folder": str(args.folder), "batch_size": args.batch_size,
              "threads": torch.get_num_threads(), "rows": rows}
    if args.json:
        Path(args.json).write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
