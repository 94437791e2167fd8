"""Every registered method has a complete model card; cards agree with the code; ptlflow's weight
names are aliases; ``motion.list_models(details=True)`` and ``motion4d models`` show the cards."""
from __future__ import annotations

import json
import re

import pytest
import torch

import motion
from motion.models.splatflow import SplatFlowConfig
from motion.models.streamflow import StreamFlowConfig
from motion.models.videoflow import VideoFlowConfig
from motion.registry import MODELS, download_named_weights, model_entry, named_weights_url, resolve_weights
from motion4d.cli import main
from motion4d.errors import CheckpointError
from pointclouds.methods.registry import SCENE_FLOW_METHODS
from splats.methods import GAUSSIAN_METHODS

PACKAGES = ("motion.", "pointclouds.", "splats.")


def _shipped() -> list[tuple[str, str, object]]:
    """(kind, name, card) of every method registered by the packages (not by tests)."""
    found = [("flow", e.name, e.card) for e in MODELS.entries() if e.builder.__module__.startswith(PACKAGES)]
    found += [("scene flow", e.name, e.card) for e in SCENE_FLOW_METHODS.entries() if e.run.__module__.startswith(PACKAGES)]
    found += [("gaussians", e.name, e.card) for e in GAUSSIAN_METHODS.entries() if e.cls.__module__.startswith(PACKAGES)]
    return found


def test_every_shipped_method_has_a_complete_card():
    shipped = _shipped()
    names = {name for _, name, _ in shipped}
    assert {"dis", "farneback", "reynolds", "videoflow-bof", "videoflow-mof", "splatflow", "streamflow", "tiny-flow",
            "zero", "nn", "icp", "nsfp", "nsfp-fast", "scoop", "gaussian-flow", "gflow"} <= names
    problems = {name: card.problems() for _, name, card in shipped if card is not None}
    assert [name for _, name, card in shipped if card is None] == []
    assert {name: p for name, p in problems.items() if p} == {}


def test_every_licence_and_number_names_its_source():
    for _, name, card in _shipped():
        for licence in (card.code_licence, card.implementation_licence, card.weights_licence):
            assert licence.source.strip(), (name, licence)
        for owner, reported in card.all_reported():
            assert reported.source.strip(), (name, owner, reported)
            assert reported.value is not None or "unverified" in reported.note.lower(), (name, reported)
        for setting in card.settings:
            assert setting.official_source.strip() and setting.peer_source.strip(), (name, setting)


@pytest.mark.parametrize(("name", "config", "peer"), [
    ("videoflow-bof", VideoFlowConfig(), "ptlflow 0.4.2: 32"),
    ("videoflow-mof", VideoFlowConfig(), "ptlflow 0.4.2: 32"),
    ("splatflow", SplatFlowConfig(), "ptlflow 0.4.2: 32"),
    ("streamflow", StreamFlowConfig(), "ptlflow 0.4.2: 15"),
])
def test_cards_state_the_iterations_the_code_runs(name, config, peer):
    setting = model_entry(name).card.settings[0]
    assert setting.name == "iterations"
    assert int(setting.ours.split()[0]) == config.iters
    assert setting.peer == peer
    hyper = {p.name: p for p in model_entry(name).hyper_parameters}
    assert "iters" in {p.option for p in hyper.values()}


def test_splatflow_card_says_it_differs_from_ptlflow():
    setting = model_entry("splatflow").card.settings[0]
    assert (setting.ours.split()[0], setting.official, setting.peer) == ("24", "24", "ptlflow 0.4.2: 32")


def test_named_weights_come_from_the_cards():
    for name in ("videoflow-bof", "videoflow-mof", "splatflow", "streamflow"):
        entry = model_entry(name)
        assert set(entry.weights) == set(entry.card.downloadable())
        for weight in entry.card.downloadable().values():
            assert named_weights_url(name, weight.name).endswith("/weights1/" + weight.asset)
            assert entry.weights[weight.name].origin == weight.official_file
    assert set(model_entry("streamflow").weights) == {"things", "sintel", "kitti", "spring"}
    assert model_entry("dis").weights == {} and model_entry("dis").weight_aliases == {}


def test_ptlflow_names_are_aliases():
    bof_noise = "videoflow_bof-things_288960noise-d581490a.ckpt"
    assert named_weights_url("videoflow-bof", "things_288960").endswith(bof_noise)
    assert named_weights_url("videoflow-bof", "things").endswith(bof_noise)  # explicit in the card
    assert named_weights_url("videoflow-bof", "things_288960noise").endswith(bof_noise)
    assert named_weights_url("videoflow-mof", "things_288960").endswith("videoflow_mof-things_288960noise-0615a42e.ckpt")
    assert named_weights_url("videoflow-mof", "things").endswith("videoflow_mof-things-e24551af.ckpt")
    card = model_entry("videoflow-bof").card
    assert card.weight("things").official_file == "BOF_things_288960noise.pth"
    assert "not BOF_things.pth" in card.weight("things").note
    with pytest.raises(CheckpointError, match=r"things_288960 \(= things\)"):
        named_weights_url("videoflow-bof", "things_2889")


def test_aliases_load_the_cached_asset_without_network(tmp_path, monkeypatch):
    """An alias resolves to the asset file of its weight set; a cached copy is used as is."""
    torch.manual_seed(0)
    source = motion.create("videoflow-bof", device="cpu", encoder="basic")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    asset = cache / "videoflow_bof-things_288960noise-d581490a.ckpt"
    torch.save({"state_dict": source.state_dict(), "hyper_parameters": {"cnet": "basicencoder", "fnet": "basicencoder"}},
               asset)
    assert resolve_weights("videoflow-bof", "things_288960") == asset
    assert download_named_weights("videoflow-bof", "things_288960noise", progress=False) == asset
    loaded = motion.create("videoflow-bof", weights="things_288960", device="cpu", encoder="basic")
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_list_models_details_and_licence_filter():
    table = motion.list_models(details=True)
    text = str(table)
    assert text.splitlines()[0].split()[:2] == ["name", "kind"]
    for name in motion.list_models():
        assert re.search(rf"^{re.escape(name)}\s", text, re.M), name
    assert "things (=things_288960/things_288960noise), sintel, kitti" in table.markdown()
    commercial = motion.list_models(licence="commercial-ok")
    assert {"dis", "farneback", "reynolds"} <= set(commercial)
    assert not {"videoflow-bof", "videoflow-mof", "splatflow", "streamflow"} & set(commercial)  # weights: none stated
    assert set(commercial) == {e.name for e in MODELS.entries() if e.card and e.card.commercial_use == "yes"}
    assert set(motion.list_models(licence="MIT")) >= {"splatflow", "streamflow"}
    data = json.loads(table.json())
    assert {row["name"] for row in data} == set(motion.list_models())


def test_models_subcommand(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in ("videoflow-bof", "nsfp", "scoop", "gflow", "gaussian-flow"):
        assert re.search(rf"^{re.escape(name)}\s", out, re.M), name
    assert main(["models", "--json", "--kind", "scene-flow"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["kind"] for r in rows} == {"scene flow"} and all(r["card"] for r in rows)
    assert main(["models", "--licence", "commercial-ok", "--markdown"]) == 0
    markdown = capsys.readouterr().out
    assert markdown.startswith("| name |") and "| videoflow-bof |" not in markdown and "| dis |" in markdown
    assert main(["models", "splatflow"]) == 0
    described = capsys.readouterr().out
    assert "iterations: ours 24 (iters=); official 24" in described and "ptlflow 0.4.2: 32" in described
    assert main(["models", "no-such-method"]) == 2
    assert "no method 'no-such-method'" in capsys.readouterr().err
    assert main(["models", "--licence", "free"]) == 2
