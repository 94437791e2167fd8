"""Scoring a flow model on a benchmark: resumable per subset, with the model's official protocol."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch

from motion.metrics import FlowMetricsAccumulator
from motion.models.base import FlowModel
from motion.protocols import (
    PAIRS,
    ClipProtocol,
    Protocol,
    SequenceProtocol,
    parse_protocol,
)
from motion4d.atomic import atomic_write_text
from motion4d.errors import InvalidArgumentError
from motion4d.imaging import frames_to_tensor

from .paper import paper_numbers
from .pictures import save_picture
from .reports import HEADLINES, headline, jsonable, write_reports
from .results import RESULTS_NAME, ResultStore, SubsetResult, score_pair
from .subsets import Subset, open_benchmark, subsets_for
from .units import Unit, pair_key, plan_units

CONFIG_NAME = "eval_config.json"
# configuration keys that change the numbers: a resumed subset must agree on them
_RESULT_KEYS = ("model", "weights", "model_options", "benchmark", "split", "pass_name", "root", "protocol",
                "exclude_invalid", "multiview_root", "directions", "camera")


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
    _check_subset_config(folder, jsonable(config), overwrite)
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
                    save_picture(folder / "pictures" / f"{key.replace('/', '_').replace(':', '_').replace('>', '')}.png", sample, t, pred)
                    pictures_left -= 1
    bar.close()
    acc = FlowMetricsAccumulator()
    wanted = [k for u in units for k in u.keys]
    for key in wanted:
        part = FlowMetricsAccumulator()
        part.load_state_tensor(torch.tensor(store.records[key]["state"], dtype=torch.float64))
        acc.merge(part)
    pooled, per_image = acc.compute("pooled"), acc.compute("per_image")
    return SubsetResult(subset, chosen, pooled, per_image, headline(subset.benchmark, pooled, per_image), len(wanted),
                        computed, skipped, time.perf_counter() - started)


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

    For a registered model, the numbers its model card reports for ``weights`` on these subsets are
    written next to ours (``metrics.json`` ``paper``, a section of ``metrics.md``).
    """
    import motion
    from motion4d.device import resolve_device

    device = resolve_device(device)
    subsets = subsets_for(dataset, passes)
    for subset in subsets:  # the data must be there before a model is built (and its weights downloaded)
        open_benchmark(subset, root, PAIRS, multiview_root=options.get("multiview_root"),
                       directions=options.get("directions", ("forward", "backward")), camera=options.get("camera", "left"))
    card = None
    if isinstance(model, str):
        model_name = model
        card = motion.model_entry(model).card
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
    atomic_write_text(out / CONFIG_NAME, json.dumps(jsonable(config), indent=2))
    extra = {"weights": weights, "model_options": jsonable(model_options or {})}
    results = [
        evaluate_subset(model, model_name, subset, root, out, device=device, config_extra=extra, **options)
        for subset in subsets
    ]
    paper = None
    if card is not None:
        paper = {r.subset.name: paper_numbers(card, weights, r.subset, [c for c, _, _ in HEADLINES[r.subset.benchmark]])
                 for r in results}
    return write_reports(out, results, config, paper=paper)
