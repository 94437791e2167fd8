"""motion.training.run (behind `motion4d train`) on motion.training's loop: 2-process gloo DDP equals one process on the global batch;
exact resume; stage presets; seeded, sparse-aware training clips."""
from __future__ import annotations

import csv
import json

import pytest
import torch
import torch.multiprocessing as mp

import motion
from motion.distributed import seed_everything
from motion.training import RunConfig, TrainClips, run_training, stage_config
from motion4d.cli import subcommand_parser
from motion4d.cli import train as train_cli
from motion4d.errors import CheckpointError, InvalidArgumentError
from tests.motion.fake_datasets import write_sintel


def _config(data, out, **overrides) -> RunConfig:
    settings = dict(model="tiny-flow", out_dir=str(out), mixture="sintel_clean+sintel_final", roots={"sintel": str(data)},
                    steps=3, batch_size=4, lr=1e-2, crop=(12, 16), gamma=0.8, log_every=1, checkpoint_every=2,
                    device="cpu", progress=False, seed=7)
    settings.update(overrides)
    return RunConfig(**settings)


def _worker(rank: int, world: int, init_file: str, data: str, out: str, result_dir: str) -> None:
    from motion.distributed import setup_distributed, teardown_distributed

    torch.set_num_threads(1)
    ctx = setup_distributed("gloo", "cpu", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        result = run_training(_config(data, out), ctx)
        torch.save({k: v.clone() for k, v in result.model.state_dict().items()}, f"{result_dir}/rank{rank}.pt")
    finally:
        teardown_distributed(ctx)


@pytest.fixture(scope="module")
def sintel(tmp_path_factory):
    root = tmp_path_factory.mktemp("data") / "Sintel"
    write_sintel(root, scenes={"alley_1": 5, "cave_2": 4}, size=(16, 20))
    return root


def test_two_process_gloo_matches_single_process(sintel, tmp_path):
    import torch._dynamo  # noqa: F401  (imported lazily by torch.optim on first use; once here, inherited by the forked ranks)

    world = 2
    # fork (where available) reuses this process's imports: much faster than spawning fresh interpreters
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    mp.start_processes(_worker, args=(world, str(tmp_path / "rendezvous"), str(sintel), str(tmp_path / "ddp"),
                                      str(tmp_path)), nprocs=world, join=True, start_method=method)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(world)]
    for key in ranks[0]:
        assert torch.equal(ranks[0][key], ranks[1][key]), key  # replicas stay identical
    single = run_training(_config(sintel, tmp_path / "single"))
    seed_everything(7)  # what train() does before building the model: the initial weights
    initial = motion.create("tiny-flow", device="cpu").state_dict()
    moved = 0.0
    for key, value in single.model.state_dict().items():
        torch.testing.assert_close(ranks[0][key], value, rtol=1e-4, atol=1e-5)
        moved = max(moved, float((value - initial[key]).abs().max()))
    assert moved > 1e-3  # the comparison is not between untrained weights
    # only rank 0 wrote: one log with one row per step, checkpoints and the final model
    rows = list(csv.DictReader(open(tmp_path / "ddp" / "train_log.csv")))
    assert [int(r["step"]) for r in rows] == [1, 2, 3]
    resolved = json.loads((tmp_path / "ddp" / "train_config.json").read_text())
    assert resolved["world_size"] == 2 and resolved["per_rank_batch"] == 2
    assert (tmp_path / "ddp" / "checkpoints" / "step_0000002.pt").is_file()
    assert (tmp_path / "ddp" / "model_final.pth").is_file() and (tmp_path / "ddp" / "preview.png").is_file()


def test_resume_continues_bit_exactly(sintel, tmp_path):
    # 5 steps with a global batch of 4 over 14 samples: the resume point lies inside the second epoch
    straight = run_training(_config(sintel, tmp_path / "a", steps=5, checkpoint_every=4))
    resumed = run_training(_config(sintel, tmp_path / "b", steps=5, checkpoint_every=4,
                               resume=str(tmp_path / "a" / "checkpoints" / "step_0000004.pt")))
    assert resumed.step == 5 and len(resumed.losses) == 1
    assert resumed.losses[0] == straight.losses[-1]
    for key, value in straight.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    # an interrupted run resumes from its own last checkpoint; the log keeps one row per step
    run_training(_config(sintel, tmp_path / "c", steps=5, checkpoint_every=2))
    again = run_training(_config(sintel, tmp_path / "c", steps=5, checkpoint_every=2, resume="auto"))
    assert again.step == 5 and again.losses == []
    with pytest.raises(CheckpointError, match="other settings"):
        run_training(_config(sintel, tmp_path / "c", steps=5, lr=5e-4, resume="auto"))


def test_the_tool_runs_the_library_loop(sintel, tmp_path, monkeypatch):
    import motion.training

    calls = []
    loop = motion.training.train

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return loop(*args, **kwargs)

    monkeypatch.setattr(motion.training, "train", spy)
    result = run_training(_config(sintel, tmp_path / "spy", steps=2))
    assert len(calls) == 1 and result.step == 2 and isinstance(result, motion.training.TrainResult)
    assert calls[0]["model_name"] == "tiny-flow" and calls[0]["run_info"]["mixture"] == "sintel_clean+sintel_final"


def test_cli_stage_presets_and_errors(sintel, tmp_path):
    from motion4d.cli import main

    cfg = stage_config("videoflow-mof", "sintel", out_dir="x")
    assert cfg.mixture == "100*sintel_clean+100*sintel_final+50*kitti+5*hd1k+things" and cfg.steps == 40_000
    assert stage_config("videoflow-bof", "sintel", out_dir="x").mixture.startswith("100*sintel_clean+100*sintel_final+200*kitti")
    code = main(["train", "--model", "tiny-flow", "--mixture", "sintel_final", "--root", f"sintel={sintel}",
                 "--out", str(tmp_path / "cli"), "--steps", "2", "--batch-size", "2", "--crop", "8x8",
                 "--device", "cpu", "--no-progress"])
    assert code == 0 and (tmp_path / "cli" / "model_final.pth").is_file()
    reloaded = motion.create("tiny-flow", weights=tmp_path / "cli" / "model_final.pth", device="cpu")
    assert reloaded(torch.rand(1, 2, 3, 8, 8)).forward.shape == (1, 1, 2, 8, 8)
    with pytest.raises(InvalidArgumentError, match="no learnable parameters"):
        run_training(_config(sintel, tmp_path / "dis", model="dis"))
    with pytest.raises(InvalidArgumentError, match="divisible"):
        from motion.distributed import DistributedContext

        run_training(_config(sintel, tmp_path / "odd", batch_size=3), DistributedContext(0, 2))


def test_training_clips_are_seeded_per_sample_and_sparse_aware(tmp_path):
    from motion.data.mixing import build_mixture
    from tests.motion.fake_datasets import write_kitti

    write_kitti(tmp_path / "KITTI", scenes=3, size=(20, 30))
    write_sintel(tmp_path / "Sintel", scenes={"alley_1": 3}, size=(16, 20))
    roots = {"kitti": tmp_path / "KITTI", "sintel": tmp_path / "Sintel"}
    config = _config(tmp_path / "Sintel", tmp_path / "x", crop=(12, 16), reverse_prob=0.0)
    clips = TrainClips(build_mixture("kitti+sintel_clean", roots), config)
    first = [clips[i] for i in range(len(clips))]
    torch.rand(10)  # the global generator must not matter
    again = [clips[i] for i in reversed(range(len(clips)))][::-1]
    for a, b in zip(first, again):
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), key
    for clip in first:
        assert clip["frames"].shape == (2, 3, 12, 16) and clip["flow_forward"].shape == (1, 2, 12, 16)
        assert clip["valid_backward"].sum() == 0  # no backward ground truth in KITTI / Sintel
    kitti_valid = torch.stack([c["valid_forward"].mean() for c in first[:3]])
    sintel_valid = torch.stack([c["valid_forward"].mean() for c in first[3:]])
    assert (kitti_valid > 0.3).all() and (kitti_valid < 0.95).all()  # ~70 % valid pixels survive the zoom
    assert (sintel_valid > 0.9).all()
    clips.set_epoch(1)
    assert not torch.equal(clips[0]["frames"], first[0]["frames"])


def test_eraser_follows_each_models_recipe(tmp_path):
    from motion.data.mixing import build_mixture
    from tests.motion.fake_datasets import write_kitti

    write_kitti(tmp_path / "KITTI", scenes=2, size=(20, 30))
    roots = {"kitti": tmp_path / "KITTI"}
    bof = stage_config("videoflow-bof", "sintel", out_dir="x")
    assert bof.resolved_eraser_prob() == 0.5  # VideoFlow-BOF's 3-frame augmentor erases
    assert stage_config("videoflow-mof", "sintel", out_dir="x").resolved_eraser_prob() == 0.0
    assert RunConfig(model="videoflow-bof", out_dir="x", mixture="kitti", eraser_prob=0.0).resolved_eraser_prob() == 0.0
    clips = TrainClips(build_mixture("kitti", roots), _config(None, tmp_path / "x", model="videoflow-bof", crop=(12, 16)))
    assert clips.augment_config(0, sparse=True).eraser_prob == 0.5
    assert clips.augment_config(0, sparse=False).eraser_prob == 0.5
    with pytest.raises(InvalidArgumentError, match="eraser_prob"):
        RunConfig(model="videoflow-bof", out_dir="x", mixture="kitti", eraser_prob=2.0).validate()


def test_run_config_is_the_library_config_plus_the_run(sintel, tmp_path):
    import dataclasses

    from motion.training import TrainConfig

    parser = subcommand_parser("train")  # the subcommand's options plus --no-progress / --quiet
    # a mixture without a stage: a short run with its own loop defaults, the rest TrainConfig's
    custom = train_cli.config_from_args(parser.parse_args(["--model", "tiny-flow", "--mixture", "sintel_final", "--out", "x"]))
    assert isinstance(custom, TrainConfig)
    assert (custom.steps, custom.lr, custom.gamma) == (1000, 1.25e-4, 0.85)
    assert (custom.clip, custom.batch_size, custom.iters, custom.reverse_prob) == (1.0, 8, 12, 0.3)
    staged = train_cli.config_from_args(parser.parse_args(["--model", "videoflow-mof", "--stage", "things", "--out", "x", "--lr", "1e-4"]))
    assert (staged.steps, staged.lr, staged.gamma, staged.iters, staged.amp) == (125_000, 1e-4, 0.8, 6, "auto")
    # what the loop sees (and compares on resume) is the TrainConfig part alone
    recipe = staged.recipe()
    assert type(recipe) is TrainConfig
    assert dataclasses.asdict(recipe) == {f.name: getattr(staged, f.name) for f in dataclasses.fields(TrainConfig)}
    with pytest.raises(InvalidArgumentError, match="gamma"):
        _config(sintel, tmp_path, gamma=1.5).validate()
