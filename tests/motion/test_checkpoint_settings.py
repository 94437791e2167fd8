"""ptlflow ``hyper_parameters`` are compared with the model's configuration before loading.

Checkpoints are built here in ptlflow's layout (``{"state_dict", "hyper_parameters"}``): state
dicts either from the official key/shape dumps (``tests/data/keys_*.txt``, ``module.`` removed as
ptlflow stores them) or from our models, and hyper-parameters named as ptlflow's constructor
arguments (``ptlflow/models/{videoflow,splatflow,streamflow}``), which Lightning saves.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

import motion
from motion.models.checkpoint_settings import CheckpointSettingsWarning
from motion4d.errors import CheckpointError

DATA = Path(__file__).resolve().parents[1] / "data"

#: ptlflow's constructor defaults (ptlflow/models/*/ @ e9cf9bc): what its converted .ckpt files store.
PTLFLOW_BOF = {"corr_levels": 4, "corr_radius": 4, "cnet": "twins", "fnet": "twins", "gma": "GMA-SK2",
               "pretrain": False, "corr_fn": "default", "decoder_depth": 32, "cost_heads_num": 1, "lr": None}
PTLFLOW_MOF = {**PTLFLOW_BOF, "feat_dim": 256, "Tfusion": "stack", "down_ratio": 8, "context_3D": False}
PTLFLOW_SPLATFLOW = {"corr_levels": 4, "corr_radius": 4, "dropout": 0.0, "gamma": 0.8, "max_flow": 400, "iters": 32,
                     "alternate_corr": False, "fast_inference": True, "output_stride": 8}
PTLFLOW_STREAMFLOW = {"decoder_dim": 256, "corr_levels": 4, "corr_radius": 4, "num_heads": 1, "pcupdater_conv": [1, 7],
                      "T": 4, "k_conv": [1, 15], "use_gma": True, "iters": 15, "twins_pretrained_ckpt": None}


def state_from_manifest(name: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors with the official keys and shapes (``module.`` removed, as in ptlflow's files)."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for line in (DATA / name).read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        key, shape, dtype = line.split("\t")
        dims = tuple(int(s) for s in shape.strip("()").split(",") if s.strip())
        if "int" in dtype:
            state[key.removeprefix("module.")] = torch.zeros(dims, dtype=getattr(torch, dtype.removeprefix("torch.")))
        else:
            state[key.removeprefix("module.")] = 0.01 * torch.randn(dims, generator=g)
    return state


def ptlflow_ckpt(path: Path, state: dict[str, torch.Tensor], hyper: dict) -> Path:
    torch.save({"state_dict": state, "hyper_parameters": hyper, "pytorch-lightning_version": "2.4.0"}, path)
    return path


def assert_same_state(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    own = model.state_dict()
    for key, value in state.items():
        if key in own:
            assert torch.equal(own[key], value.to(own[key].dtype)), key


@pytest.fixture(scope="module")
def bof_basic_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return motion.create("videoflow-bof", device="cpu", encoder="basic").state_dict()


def test_ptlflow_defaults_load_silently(tmp_path):
    """The hyper-parameters ptlflow stores by default match what motion4d builds (real BOF layout)."""
    state = state_from_manifest("keys_videoflow_bof.txt")
    path = ptlflow_ckpt(tmp_path / "videoflow_bof.ckpt", state, PTLFLOW_BOF)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CheckpointSettingsWarning)
        model = motion.create("videoflow-bof", weights=str(path), device="cpu")
    assert_same_state(model, state)


def test_encoder_mismatch_is_one_line_naming_the_settings(tmp_path, bof_basic_state):
    hyper = {**PTLFLOW_BOF, "cnet": "basicencoder", "fnet": "basicencoder", "decoder_depth": 7}
    path = ptlflow_ckpt(tmp_path / "basic.ckpt", bof_basic_state, hyper)
    with pytest.raises(CheckpointError) as error:
        motion.create("videoflow-bof", weights=str(path), device="cpu")  # built with the Twins encoder
    message = str(error.value)
    assert "\n" not in message  # not the list of mismatched keys
    assert "cnet='basicencoder' (model: encoder='twins')" in message and "fnet='basicencoder'" in message
    assert "pass encoder='basic' or config_from_checkpoint=True" in message


def test_config_from_checkpoint_builds_the_checkpoint_settings(tmp_path, bof_basic_state):
    hyper = {**PTLFLOW_BOF, "cnet": "basicencoder", "fnet": "basicencoder", "decoder_depth": 7}
    path = ptlflow_ckpt(tmp_path / "basic.ckpt", bof_basic_state, hyper)
    model = motion.create("videoflow-bof", weights=str(path), device="cpu", config_from_checkpoint=True)
    assert (model.config.encoder, model.config.iters) == ("basic", 7)
    assert_same_state(model, bof_basic_state)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CheckpointSettingsWarning)  # chosen here: no warning
        explicit = motion.create("videoflow-bof", weights=str(path), device="cpu", config_from_checkpoint=True, iters=3)
    assert explicit.config.iters == 3  # options given to create() win


@pytest.mark.parametrize(("changes", "named"), [
    ({"corr_levels": 6}, ["corr_levels=6 (motion4d builds 4)"]),
    ({"corr_radius": 3, "gma": "GMA"}, ["corr_radius=3 (motion4d builds 4)", "gma='GMA' (motion4d builds 'GMA-SK2')"]),
    ({"cost_heads_num": 2}, ["cost_heads_num=2 (motion4d builds 1)"]),
    ({"cnet": "twins", "fnet": "basicencoder"}, ["cnet='twins' (motion4d cannot build it)"]),
])
def test_architectures_motion4d_does_not_build_are_refused(tmp_path, bof_basic_state, changes, named):
    hyper = {**PTLFLOW_BOF, "cnet": "basicencoder", "fnet": "basicencoder", **changes}
    path = ptlflow_ckpt(tmp_path / "other.ckpt", bof_basic_state, hyper)
    with pytest.raises(CheckpointError) as error:
        motion.create("videoflow-bof", weights=str(path), device="cpu", encoder="basic")
    assert "\n" not in str(error.value)
    for text in named:
        assert text in str(error.value)
    with pytest.raises(CheckpointError, match="cannot be built with the checkpoint's settings"):
        motion.create("videoflow-bof", weights=str(path), device="cpu", config_from_checkpoint=True)


def test_mof_context_settings(tmp_path):
    torch.manual_seed(0)
    state = motion.create("videoflow-mof", device="cpu", encoder="basic").state_dict()
    hyper = {**PTLFLOW_MOF, "cnet": "basicencoder", "fnet": "basicencoder", "down_ratio": 4, "context_3D": True,
             "Tfusion": "stackcat"}
    path = ptlflow_ckpt(tmp_path / "mof.ckpt", state, hyper)
    with pytest.raises(CheckpointError) as error:
        motion.create("videoflow-mof", weights=str(path), device="cpu", encoder="basic")
    for text in ("down_ratio=4 (motion4d builds 8)", "context_3D=True (motion4d builds False)",
                 "Tfusion='stackcat' (motion4d builds 'stack')"):
        assert text in str(error.value)


def test_splatflow_warns_that_ptlflow_runs_32_iterations(tmp_path):
    """Real SplatFlow layout with ptlflow's stored iters=32: loads, and says the outputs will differ."""
    state = state_from_manifest("keys_splatflow.txt")
    for key in [k for k in state if ".norm3." in k]:  # one module registered under two names: one tensor
        state[key] = state[key.replace(".norm3.", ".downsample.1.")]
    path = ptlflow_ckpt(tmp_path / "splatflow-kitti.ckpt", state, PTLFLOW_SPLATFLOW)
    with pytest.warns(CheckpointSettingsWarning, match=r"iters=32 \(model: iters=24\).*pass iters=32 or config_from_checkpoint"):
        model = motion.create("splatflow", weights=str(path), device="cpu")
    assert model.config.iters == 24  # the official setting stays the default
    assert_same_state(model, state)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CheckpointSettingsWarning)
        assert motion.create("splatflow", weights=str(path), device="cpu", config_from_checkpoint=True).config.iters == 32
        assert motion.create("splatflow", weights=str(path), device="cpu", iters=32).config.iters == 32


def test_streamflow_group_size_and_gma(tmp_path):
    state = state_from_manifest("keys_streamflow.txt")
    good = ptlflow_ckpt(tmp_path / "streamflow.ckpt", state, PTLFLOW_STREAMFLOW)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CheckpointSettingsWarning)
        model = motion.create("streamflow", weights=str(good), device="cpu", config_from_checkpoint=True)
    assert (model.config.group_size, model.config.iters) == (4, 15)
    assert_same_state(model, state)
    no_gma = ptlflow_ckpt(tmp_path / "no_gma.ckpt", state, {**PTLFLOW_STREAMFLOW, "use_gma": False, "num_heads": 2})
    with pytest.raises(CheckpointError, match=r"num_heads=2 \(motion4d builds 1\), use_gma=False \(motion4d builds True\)"):
        motion.create("streamflow", weights=str(no_gma), device="cpu")
    three = ptlflow_ckpt(tmp_path / "t3.ckpt", state, {**PTLFLOW_STREAMFLOW, "T": 3})
    with pytest.raises(CheckpointError, match=r"T=3 \(model: group_size=4\)"):
        motion.create("streamflow", weights=str(three), device="cpu")


def test_config_from_checkpoint_needs_settings(tmp_path, bof_basic_state):
    bare = tmp_path / "bare.pth"
    torch.save(bof_basic_state, bare)
    with pytest.raises(CheckpointError, match="stores no settings"):
        motion.create("videoflow-bof", weights=str(bare), device="cpu", config_from_checkpoint=True)
    with pytest.raises(Exception, match="declares no checkpoint settings"):
        motion.create("dis", device="cpu", config_from_checkpoint=True)


def test_our_checkpoints_carry_their_settings(tmp_path, bof_basic_state):
    from motion.models.checkpoints import save_checkpoint
    from motion.models.videoflow import VideoFlowConfig

    torch.manual_seed(0)
    source = motion.create("videoflow-bof", device="cpu", encoder="basic", iters=5)
    path = save_checkpoint(source, tmp_path / "ours.pt", "videoflow-bof", source.config)
    model = motion.create("videoflow-bof", weights=str(path), device="cpu", config_from_checkpoint=True)
    assert (model.config.encoder, model.config.iters) == ("basic", 5)
    assert isinstance(model.config, VideoFlowConfig)
