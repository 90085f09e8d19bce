"""Plain-text rendering of result records for the terminal (the JSON records are the
results; this is how the CLI prints them)."""

from __future__ import annotations


def _value(key: str, value, digits: str = ".6g") -> str:
    return f"{key} {value:{digits}}" if isinstance(value, float) else f"{key} {value}"


def fid_text(record: dict) -> str:
    """The ``genbench fid`` report of a ``FIDResult.to_dict()`` record."""
    lines = [f"FID {record['value']:.4f}",
             f"  protocol   {record['protocol']}: {record['protocol_description']}",
             f"  extractor  {record['extractor']}",
             f"  weights    sha256 {record['weights_sha256'] or 'unknown'}",
             f"  device     {record['device']}"]
    for name, side in zip("AB", record["inputs"], strict=True):
        if side["from_statistics_file"]:
            how = "statistics file" if side["kind"] == "statistics" else \
                "stored statistics of an ADM batch"
        elif side["kind"] == "features":
            how = "feature array"
        else:
            how = f"{side['extracted']} extracted, {side['num_images'] - side['extracted']} " \
                  "from cache"
        count = side["num_images"] if side["num_images"] is not None else "an unrecorded number of"
        lines.append(f"  {name}          {side['source']}: {count} images ({how})")
    lines.append(f"  time       {record['seconds']:.1f} s")
    lines += [f"  note       {note}" for note in record["notes"]]
    return "\n".join(lines)


def eval_lines(record: dict) -> list[str]:
    """The ``genbench eval`` report of one model's record."""
    lines = [f"{name:4s} " + ", ".join(_value(k, v) for k, v in values.items()
                                      if isinstance(v, float | int | str))
             for name, values in record["metrics"].items()]
    for cls, values in record.get("per_class", {}).items():
        lines.append(f"  class {cls}: " + ", ".join(_value(k, v, ".4g")
                                                   for k, v in values.items()))
    lines.append(f"protocol {record['protocol']}, seed {record['seed']}, images "
                 f"{record['inputs']['samples']['num_images']} vs "
                 f"{record['inputs']['reference']['num_images']}, device {record['device']}, "
                 f"{record['seconds']:.1f} s")
    return lines + [f"note {n}" for n in record["notes"]]


def models_text(record: dict) -> str:
    lines = []
    for name, model_record in record["models"].items():
        lines += [f"== {name}", *eval_lines(model_record)]
    lines += [f"plot {p}" for p in record.get("plots", [])]
    lines += [f"note {n}" for n in record.get("notes", [])]
    return "\n".join(lines)


def _percent(value: float | None) -> str:
    return "  n/a" if value is None else f"{100 * value:5.1f}"


def cas_text(record: dict) -> str:
    """The ``genbench cas`` report."""
    cas, real, gap = record["cas"], record["real_baseline"], record["gap"]
    k = cas["top5_k"]
    lines = [f"CAS   top-1 {100 * cas['top1']:.2f} %  top-{k} {100 * cas['top5']:.2f} %",
             f"real  top-1 {100 * real['top1']:.2f} %  top-{k} {100 * real['top5']:.2f} %",
             f"gap   top-1 {gap['top1_points']:+.2f} points ({100 * gap['top1_relative']:+.1f} "
             f"% relative), top-{k} {gap['top5_points']:+.2f} points",
             "per class (CAS / real):"]
    for row in record["per_class"]:
        lines.append(f"  {row['class']:3d} {row['name'][:18]:18s} {_percent(row['cas'])} / "
                     f"{_percent(row['real'])} %   ({row['train_samples']} samples)")
    lines.append(f"worst classes: {', '.join(record['worst_classes'])}")
    for pct, acc in record.get("nas", {}).items():
        lines.append(f"NAS +{pct}%: top-1 {100 * acc['top1']:.2f} %, top-{k} "
                     f"{100 * acc['top5']:.2f} %")
    lines.append(f"recipe {record['recipe']['name']}, seed {record['seed']}, device "
                 f"{record['device']}, {record['seconds']:.0f} s")
    lines += [f"note {n}" for n in record["notes"]]
    return "\n".join(lines)
