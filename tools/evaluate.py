"""``motion4d evaluate --model NAME --dataset sintel|kitti|things --root DIR --out DIR``.

Scores any registered flow model on the training split of MPI-Sintel (clean and final: EPE all,
matched, unmatched, s0-10 / s10-40 / s40+), KITTI 2015 (EPE and Fl-all on ``flow_occ`` and
``flow_noc``) or the FlyingThings3D test split, with each model's official multi-frame protocol
(:mod:`motion.protocols`). Every metric is reported twice: pooled over all valid pixels of the set
(KITTI's official Fl, the Sintel leaderboard) and as the mean over images (what the papers'
scripts print for KITTI EPE); ``headline`` holds the numbers the papers report.

Outputs in ``--out``: ``metrics.json``, ``metrics.csv``, ``metrics.md`` (a table), the resolved
``eval_config.json``, and per subset (``sintel-clean``, ``kitti``, ...) ``results.jsonl`` with one
line of sufficient statistics per scored pair plus a few ``pictures/`` (frame, ground truth,
prediction, error). A rerun skips the pairs already in ``results.jsonl``, so an interrupted
evaluation resumes; ``--max-samples`` scores only the first N pairs of each subset.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from motion.metrics import FlowMetricsAccumulator
from motion.models.base import FlowModel
from motion.protocols import BENCHMARKS, ClipProtocol, Protocol, SequenceProtocol, parse_protocol
from motion4d.atomic import atomic_write_text
from motion4d.checks import check_choice
from motion4d.errors import InvalidArgumentError
from motion4d.imaging import frames_to_tensor

RESULTS_NAME = "results.jsonl"
CONFIG_NAME = "eval_config.json"
# configuration keys that change the numbers: a resumed subset must agree on them
_RESULT_KEYS = ("model", "weights", "model_options", "benchmark", "split", "pass_name", "root", "protocol",
                "exclude_invalid", "multiview_root", "directions", "camera")

HEADLINES: dict[str, list[tuple[str, str, str]]] = {
    # benchmark -> (column, reduction, metric key)
    "sintel": [("EPE", "pooled", "epe"), ("matched", "pooled", "epe_noc"), ("unmatched", "pooled", "epe_occ"),
               ("s0-10", "pooled", "epe_s0_10"), ("s10-40", "pooled", "epe_s10_40"), ("s40+", "pooled", "epe_s40plus"),
               ("1px", "pooled", "px1")],
    "kitti": [("EPE", "per_image", "epe"), ("Fl-all", "pooled", "fl_all"), ("EPE-noc", "per_image", "epe_noc"),
              ("Fl-noc", "pooled", "fl_noc"), ("EPE pooled", "pooled", "epe")],
    "things": [("EPE", "pooled", "epe"), ("1px", "pooled", "px1"), ("3px", "pooled", "px3"), ("5px", "pooled", "px5")],
}


# --------------------------------------------------------------------------------------------------
# Data sets and work units


@dataclass(frozen=True)
class Subset:
    """One scored set: a benchmark split and pass (``sintel-final``, ``kitti``, ``things-clean``)."""

    benchmark: str
    split: str
    pass_name: str | None

    @property
    def name(self) -> str:
        return self.benchmark if self.pass_name is None else f"{self.benchmark}-{self.pass_name}"


def open_benchmark(subset: Subset, root: str | os.PathLike, protocol: Protocol, *, multiview_root: str | None = None,
                   directions: Sequence[str] = ("forward", "backward"), camera: str = "left"):
    """The data-set reader of ``subset`` set up for ``protocol`` (clip length, target, boundary)."""
    from motion.data import FlyingThings3D, Kitti2015, MpiSintel

    if isinstance(protocol, ClipProtocol):
        clip = {"clip_length": protocol.clip_length, "target": protocol.target, "boundary": protocol.boundary}
    else:
        clip = {"clip_length": 2, "target": 0}
    if subset.benchmark == "sintel":
        return MpiSintel(root, subset.split, subset.pass_name, **clip)
    if subset.benchmark == "kitti":
        return Kitti2015(root, subset.split, multiview_root=multiview_root, **clip)
    return FlyingThings3D(root, subset.split, subset.pass_name, cameras=(camera,), directions=tuple(directions), **clip)


@dataclass
class Unit:
    """One piece of work: a clip (one pair) or a whole sequence in one direction (many pairs)."""

    keys: list[str]
    index: int | None = None  # clip: data-set sample index
    sequence: str | None = None  # sequence protocol
    positions: list[int] = field(default_factory=list)
    reverse: bool = False

    @property
    def context(self) -> str | None:
        """The frames a sequence unit's predictions saw: a multi-frame model's flow of a pair
        depends on them, so results computed on a shorter cut (``--max-samples``) are not reused
        for the full sequence."""
        return None if self.sequence is None else f"{self.positions[0]}-{self.positions[-1]}"


def pair_key(sequence: str, source: int, target: int) -> str:
    return f"{sequence}:{source}->{target}"


def plan_units(dataset, protocol: Protocol, max_samples: int | None) -> list[Unit]:
    """Work units in data-set order, at most ``max_samples`` pairs in total."""
    limit = math.inf if max_samples is None else max_samples
    units: list[Unit] = []
    count = 0
    if isinstance(protocol, ClipProtocol):
        for index in range(len(dataset)):
            if count >= limit:
                break
            units.append(Unit([_clip_key(dataset, index)], index=index))
            count += 1
        return units
    directions = getattr(dataset, "directions", ("forward",))
    for direction in directions:
        for name in dataset.sequences:
            if count >= limit:
                return units
            record = dataset.sequence_record(name)
            reverse = direction == "backward"
            has = [(p.flow_backward if reverse else p.flow) is not None for p in record.pairs]
            budget = int(min(limit - count, len(has)))
            if not any(has):
                continue
            ids = record.frame_ids
            if reverse:  # reversed clips start at the sequence end: pairs n-2, n-3, ... backward
                order = [i for i in range(len(has) - 1, -1, -1) if has[i]][:budget]
                keys = [pair_key(name, ids[i + 1], ids[i]) for i in order]
                positions = list(range(min(order), len(ids)))
            else:
                order = [i for i in range(len(has)) if has[i]][:budget]
                keys = [pair_key(name, ids[i], ids[i + 1]) for i in order]
                positions = list(range(0, max(order) + 2))
            units.append(Unit(keys, sequence=name, positions=positions, reverse=reverse))
            count += len(keys)
    return units


def _clip_key(dataset, index: int) -> str:
    """Key of the evaluated pair of sample ``index`` (from the reader's index, without reading images)."""
    if hasattr(dataset, "evaluated_pair"):
        return pair_key(*dataset.evaluated_pair(index))
    sample = dataset[index]  # a reader without the base-class index
    return pair_key(sample.sequence, sample.frame_ids[sample.target], sample.frame_ids[sample.target + 1])


# --------------------------------------------------------------------------------------------------
# Resumable per-pair results


class ResultStore:
    """``results.jsonl``: one JSON line per scored pair, appended and synced as pairs finish."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records: dict[str, dict[str, Any]] = {}
        if path.is_file():
            torn = False
            for line in path.read_text().splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    torn = True  # a line torn by an interrupted write: that pair is recomputed
                    continue
                self.records[record["key"]] = record
            if torn:  # rewrite without it, so that appended lines start on a line of their own
                atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in self.records.values()))

    def done(self, unit: Unit) -> bool:
        return all(k in self.records and self.records[k].get("context") == unit.context for k in unit.keys)

    def add(self, records: Sequence[dict[str, Any]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            for record in records:
                f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())
        for record in records:
            self.records[record["key"]] = record


def score_pair(key: str, pred: torch.Tensor, sample, t: int, exclude_invalid: bool) -> tuple[dict[str, Any], FlowMetricsAccumulator]:
    """Metrics of pair ``t`` of ``sample`` for ``pred [2, H, W]``: the JSON record and its accumulator."""
    gt = torch.from_numpy(np.ascontiguousarray(sample.flow[t])).permute(2, 0, 1)
    valid = torch.from_numpy(sample.valid[t].copy())
    if exclude_invalid and "invalid" in sample.extras:
        valid &= ~torch.from_numpy(sample.extras["invalid"][t])
    occlusion = None if sample.occlusion is None else torch.from_numpy(sample.occlusion[t].copy())
    acc = FlowMetricsAccumulator()
    acc.update(pred.detach().float().cpu(), gt, valid=valid, occlusion=occlusion)
    single = acc.compute("pooled")
    record = {
        "key": key,
        "sequence": sample.sequence,
        "epe": single["epe"],
        "fl_all": single["fl_all"],
        "num_pixels": int(single["num_pixels"]),
        "state": acc.state_tensor().tolist(),
    }
    return record, acc


# --------------------------------------------------------------------------------------------------
# Evaluation


@dataclass
class SubsetResult:
    subset: Subset
    protocol: Protocol
    pooled: dict[str, float]
    per_image: dict[str, float]
    headline: dict[str, float]
    num_pairs: int
    computed: int
    skipped: int
    seconds: float


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def _check_subset_config(folder: Path, config: dict[str, Any], overwrite: bool) -> None:
    path = folder / CONFIG_NAME
    results = folder / RESULTS_NAME
    if path.is_file() and results.is_file() and not overwrite:
        old = json.loads(path.read_text())
        diff = [k for k in _RESULT_KEYS if old.get(k) != config.get(k)]
        if diff:
            raise InvalidArgumentError(
                f"{folder} holds results of another configuration (differs in {diff}: "
                f"{ {k: old.get(k) for k in diff} } vs { {k: config.get(k) for k in diff} }); "
                f"use another --out or --overwrite"
            )
    if overwrite:
        results.unlink(missing_ok=True)
    atomic_write_text(path, json.dumps(config, indent=2))


def _save_picture(path: Path, sample, t: int, pred: torch.Tensor) -> None:
    import cv2

    from motion.image_io import write_image
    from motion.visualize import flow_to_color, side_by_side

    gt = sample.flow[t]
    valid = sample.valid[t]
    radius = float(np.linalg.norm(gt[valid], axis=-1).max()) if valid.any() else None
    pred_np = pred.detach().float().cpu().permute(1, 2, 0).numpy()
    gt_shown = np.where(valid[..., None], gt, np.float32(np.nan))
    err = np.linalg.norm(pred_np - gt, axis=-1)
    err_img = cv2.applyColorMap(np.clip(err / 10.0 * 255, 0, 255).astype(np.uint8), cv2.COLORMAP_INFERNO)[..., ::-1]
    err_img = np.where(valid[..., None], err_img, 0).astype(np.uint8)
    panel = side_by_side(
        [sample.frames[t], flow_to_color(gt_shown, radius, channels_last=True),
         flow_to_color(pred_np, radius, channels_last=True), err_img],
        labels=["frame", "ground truth", "prediction", "EPE (0-10 px)"],
        columns=2,
    )
    write_image(path, panel)


def evaluate_subset(
    model: FlowModel,
    model_name: str,
    subset: Subset,
    root: str | os.PathLike,
    out_dir: Path,
    *,
    protocol: str = "auto",
    device: torch.device,
    max_samples: int | None = None,
    exclude_invalid: bool = False,
    multiview_root: str | None = None,
    directions: Sequence[str] = ("forward", "backward"),
    camera: str = "left",
    pictures: int = 4,
    overwrite: bool = False,
    progress: bool = True,
    config_extra: dict[str, Any] | None = None,
) -> SubsetResult:
    """Score ``model`` on one subset, resuming from ``out_dir/<subset>/results.jsonl``."""
    from tqdm.auto import tqdm

    chosen = parse_protocol(protocol, model_name, model, subset.benchmark)
    dataset = open_benchmark(subset, root, chosen, multiview_root=multiview_root, directions=directions, camera=camera)
    folder = out_dir / subset.name
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        **(config_extra or {}),
        "model": model_name,
        "benchmark": subset.benchmark,
        "split": subset.split,
        "pass_name": subset.pass_name,
        "root": os.fspath(Path(root).resolve()),
        "protocol": chosen.as_dict(),
        "protocol_description": chosen.describe(),
        "exclude_invalid": exclude_invalid,
        "multiview_root": multiview_root,
        "directions": list(directions) if subset.benchmark == "things" else None,
        "camera": camera if subset.benchmark == "things" else None,
        "dataset": dataset.summary(),
    }
    _check_subset_config(folder, _jsonable(config), overwrite)
    store = ResultStore(folder / RESULTS_NAME)
    units = plan_units(dataset, chosen, max_samples)
    total_pairs = sum(len(u.keys) for u in units)
    skipped = sum(len(u.keys) for u in units if store.done(u))
    computed = 0
    pictures_left = pictures
    started = time.perf_counter()
    bar = tqdm(total=total_pairs, initial=skipped, unit="pair", desc=f"{subset.name} ({model_name})", disable=not progress)
    with torch.no_grad():
        for unit in units:
            if store.done(unit):
                continue
            for key, sample, t, pred in _predict_unit(model, dataset, chosen, unit, device):
                record, _ = score_pair(key, pred, sample, t, exclude_invalid)
                record["context"] = unit.context
                store.add([record])
                computed += 1
                bar.update(1)
                if pictures_left > 0:
                    _save_picture(folder / "pictures" / f"{key.replace('/', '_').replace(':', '_').replace('>', '')}.png", sample, t, pred)
                    pictures_left -= 1
    bar.close()
    acc = FlowMetricsAccumulator()
    wanted = [k for u in units for k in u.keys]
    for key in wanted:
        part = FlowMetricsAccumulator()
        part.load_state_tensor(torch.tensor(store.records[key]["state"], dtype=torch.float64))
        acc.merge(part)
    pooled, per_image = acc.compute("pooled"), acc.compute("per_image")
    tables = {"pooled": pooled, "per_image": per_image}
    headline = {column: tables[reduction].get(key, math.nan) for column, reduction, key in HEADLINES[subset.benchmark]}
    return SubsetResult(subset, chosen, pooled, per_image, headline, len(wanted), computed, skipped,
                        time.perf_counter() - started)


def _predict_unit(model: FlowModel, dataset, protocol: Protocol, unit: Unit,
                  device: torch.device) -> Iterator[tuple[str, Any, int, torch.Tensor]]:
    """Yield ``(key, sample, pair index, prediction [2, H, W])`` for the pairs of ``unit``."""
    if isinstance(protocol, ClipProtocol):
        sample = dataset[unit.index]
        pred = protocol.predict(model, frames_to_tensor(sample.frames, device=device)[None])[0]
        yield unit.keys[0], sample, sample.target, pred
        return
    assert isinstance(protocol, SequenceProtocol)
    sample = dataset.read_clip(unit.sequence, unit.positions)
    if unit.reverse:
        sample = sample.reversed()
    flows = protocol.predict_sequence(model, sample.frames, device)
    by_key = {pair_key(sample.sequence, sample.frame_ids[t], sample.frame_ids[t + 1]): t
              for t in range(sample.num_frames - 1) if sample.has_flow[t]}
    for key in unit.keys:
        t = by_key[key]
        yield key, sample, t, flows[t]


# --------------------------------------------------------------------------------------------------
# Reports


def write_reports(out_dir: Path, results: Sequence[SubsetResult], config: dict[str, Any]) -> dict[str, Any]:
    """``metrics.json``, ``metrics.csv`` (every metric, both reductions) and ``metrics.md``."""
    summary = {
        "config": _jsonable(config),
        "subsets": {
            r.subset.name: {
                "benchmark": r.subset.benchmark,
                "split": r.subset.split,
                "pass": r.subset.pass_name,
                "protocol": r.protocol.describe(),
                "pairs": r.num_pairs,
                "computed": r.computed,
                "skipped": r.skipped,
                "seconds": r.seconds,
                "headline": r.headline,
                "pooled": r.pooled,
                "per_image": r.per_image,
            }
            for r in results
        },
    }
    atomic_write_text(out_dir / "metrics.json", json.dumps(_jsonable(summary), indent=2, allow_nan=True))
    buffer = io.StringIO()
    keys = sorted({k for r in results for d in (r.pooled, r.per_image) for k in d})
    writer = csv.writer(buffer)
    writer.writerow(["subset", "reduction", *keys])
    for r in results:
        for reduction, values in (("pooled", r.pooled), ("per_image", r.per_image)):
            writer.writerow([r.subset.name, reduction, *[_fmt(values.get(k, math.nan)) for k in keys]])
    atomic_write_text(out_dir / "metrics.csv", buffer.getvalue())
    atomic_write_text(out_dir / "metrics.md", markdown_table(results, config.get("model", "")))
    return summary


def _fmt(value: float) -> str:
    return "nan" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.6g}"


def markdown_table(results: Sequence[SubsetResult], model_name: str) -> str:
    """One table per benchmark: rows = subsets, columns = the papers' headline numbers."""
    lines = [f"# Flow evaluation: {model_name}", ""]
    for benchmark in BENCHMARKS:
        rows = [r for r in results if r.subset.benchmark == benchmark]
        if not rows:
            continue
        columns = [c for c, _, _ in HEADLINES[benchmark]]
        lines += [f"## {benchmark}", "", "| subset | pairs | " + " | ".join(columns) + " |",
                  "|---|---:|" + "---:|" * len(columns)]
        for r in rows:
            cells = []
            for column in columns:
                value = r.headline[column]
                cells.append("-" if math.isnan(value) else (f"{value:.2f}%" if column.startswith("Fl") else f"{value:.3f}"))
            lines.append(f"| {r.subset.name} | {r.num_pairs} | " + " | ".join(cells) + " |")
        lines += ["", f"Protocol: {rows[0].protocol.describe()}.", ""]
    lines += ["KITTI EPE is the mean of per-image EPEs and Fl is pooled over all valid pixels (as the papers' "
              "scripts); Sintel and Things numbers are pooled over pixels. Full tables: metrics.csv.", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# API and command line


def subsets_for(benchmark: str, passes: Sequence[str]) -> list[Subset]:
    check_choice(benchmark, "dataset", BENCHMARKS)
    if benchmark == "kitti":
        return [Subset("kitti", "training", None)]
    for p in passes:
        check_choice(p, "passes", ("clean", "final"))
    split = "training" if benchmark == "sintel" else "test"
    return [Subset(benchmark, split, p) for p in passes]


def evaluate(
    model: str | FlowModel,
    dataset: str,
    root: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    weights: str | None = None,
    model_options: dict[str, Any] | None = None,
    passes: Sequence[str] = ("clean", "final"),
    device: str | torch.device = "auto",
    **options: Any,
) -> dict[str, Any]:
    """Evaluate ``model`` (a registered name or a :class:`FlowModel`) on ``dataset``; returns ``metrics.json``.

    ``options`` go to :func:`evaluate_subset` (``protocol``, ``max_samples``, ``exclude_invalid``,
    ``multiview_root``, ``directions``, ``camera``, ``pictures``, ``overwrite``, ``progress``).
    """
    import motion
    from motion4d.device import resolve_device

    device = resolve_device(device)
    if isinstance(model, str):
        model_name = model
        model = motion.create(model, weights=weights, device=device, **(model_options or {}))
    elif isinstance(model, FlowModel):
        model_name = type(model).__name__
        model = model.to(device).eval()
    else:
        raise InvalidArgumentError(f"model must be a registered name or a FlowModel, got {type(model).__name__}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = {"model": model_name, "weights": weights, "model_options": model_options or {}, "dataset": dataset,
              "root": os.fspath(root), "passes": list(passes), "device": str(device), **options}
    atomic_write_text(out / CONFIG_NAME, json.dumps(_jsonable(config), indent=2))
    extra = {"weights": weights, "model_options": _jsonable(model_options or {})}
    results = [
        evaluate_subset(model, model_name, subset, root, out, device=device, config_extra=extra, **options)
        for subset in subsets_for(dataset, passes)
    ]
    return write_reports(out, results, config)


def build_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="registered flow model (motion.list_models())")
    parser.add_argument("--weights", default=None, help="checkpoint file or named weight set")
    parser.add_argument("--option", action="append", metavar="KEY=VALUE", help="model option, repeatable")
    parser.add_argument("--dataset", required=True, choices=BENCHMARKS, help="sintel | kitti | things")
    parser.add_argument("--root", required=True, help="data-set root (MPI-Sintel-complete, KITTI 2015, FlyingThings3D)")
    parser.add_argument("--out", required=True, help="output folder (metrics.json/.csv/.md, per-pair results)")
    parser.add_argument("--passes", default="clean,final", help="Sintel / Things passes (default clean,final)")
    parser.add_argument("--protocol", default="auto",
                        help="auto (the model's official protocol) | pairs | sequence | clip:T:TARGET[:INDEX[:CALL]]")
    parser.add_argument("--multiview-root", default=None, help="KITTI multi-view extension when not unpacked into --root")
    parser.add_argument("--directions", default="forward,backward", help="Things: forward and/or backward flow")
    parser.add_argument("--camera", default="left", choices=("left", "right"), help="Things camera (default left)")
    parser.add_argument("--exclude-invalid", action="store_true", help="Sintel: leave out the invalid/ pixels")
    parser.add_argument("--max-samples", type=int, default=None, help="score only the first N pairs per subset")
    parser.add_argument("--pictures", type=int, default=4, help="visualisations to write per subset (default 4)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--overwrite", action="store_true", help="discard earlier results in --out")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    from tools._common import parse_list, parse_options

    if args.max_samples is not None and args.max_samples < 1:
        raise InvalidArgumentError(f"--max-samples must be >= 1, got {args.max_samples}")
    summary = evaluate(
        args.model, args.dataset, args.root, args.out,
        weights=args.weights,
        model_options=parse_options(args.option),
        passes=parse_list(args.passes, "--passes", ("clean", "final")),
        device=args.device,
        protocol=args.protocol,
        max_samples=args.max_samples,
        exclude_invalid=args.exclude_invalid,
        multiview_root=args.multiview_root,
        directions=parse_list(args.directions, "--directions", ("forward", "backward")),
        camera=args.camera,
        pictures=args.pictures,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    print((Path(args.out) / "metrics.md").read_text())
    for name, info in summary["subsets"].items():
        print(f"{name}: {info['pairs']} pairs ({info['computed']} computed, {info['skipped']} resumed) in {info['seconds']:.1f} s")
    return 0
