"""The scene-flow method registry: listing, dispatch, option checking, duplicate names."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import pointclouds
from motion4d.errors import InvalidArgumentError
from motion4d.registry import Registry
from pointclouds.methods import METHODS, SceneFlowOutput, estimate_scene_flow, method_entries
from pointclouds.methods import registry as method_registry
from pointclouds.methods.baselines import icp_flow, nearest_neighbor_flow, zero_flow
from pointclouds.methods.nsfp import NSFPConfig
from pointclouds.methods.scoop import RefineConfig, scoop_flow

SHIPPED = ("icp", "nn", "nsfp", "nsfp-fast", "scoop", "zero")


@pytest.fixture
def fresh_methods(monkeypatch):
    methods = Registry("scene-flow method")
    monkeypatch.setattr(method_registry, "SCENE_FLOW_METHODS", methods)
    return methods


def test_lists_the_shipped_methods_with_their_run_functions_and_options() -> None:
    assert pointclouds.list_methods() == list(SHIPPED) and METHODS == SHIPPED
    entries = {e.name: e for e in method_entries()}
    assert entries["zero"].run is zero_flow and entries["nn"].run is nearest_neighbor_flow
    assert entries["icp"].run is icp_flow and entries["scoop"].run is scoop_flow
    assert {f.name for f in NSFPConfig.__dataclass_fields__.values()} <= set(entries["nsfp"].options)
    assert {"weights", "preset", *RefineConfig.__dataclass_fields__} <= set(entries["scoop"].options)
    assert all(e.description for e in entries.values())


def test_dispatches_to_the_registered_run_function(fresh_methods, rng) -> None:
    calls = []

    @method_registry.register_method("shift", "adds a constant", options=("offset",))
    def shift(source, target, *, offset=1.0):
        calls.append(offset)
        return SceneFlowOutput(torch.full((len(source), 3), offset), "shift")

    pts = rng.normal(size=(10, 3))
    out = estimate_scene_flow(pts, pts, method="shift", offset=2.5)
    assert calls == [2.5] and torch.equal(out.flow, torch.full((10, 3), 2.5))
    with pytest.raises(InvalidArgumentError, match="unknown options"):
        estimate_scene_flow(pts, pts, method="shift", scale=2)
    with pytest.raises(InvalidArgumentError, match="'shift'"):  # the error lists what is registered
        estimate_scene_flow(pts, pts, method="nn")
    assert calls == [2.5]  # refused before running


def test_duplicate_method_name_warns_and_keeps_the_newer(fresh_methods) -> None:
    first = method_registry.register_method("twice", "first", options=())(lambda s, t: None)
    with pytest.warns(RuntimeWarning, match="'twice' registered again"):
        method_registry.register_method("twice", "second", options=())(first)
    assert [e.description for e in method_registry.method_entries()] == ["second"]


def test_shipped_dispatch_matches_the_direct_call(rng) -> None:
    src, tgt = rng.normal(size=(30, 3)).astype(np.float32), rng.normal(size=(40, 3)).astype(np.float32)
    via_registry = estimate_scene_flow(src, tgt, method="nn", device="cpu")
    direct = nearest_neighbor_flow(src, tgt, device="cpu")
    assert torch.equal(via_registry.flow, direct.flow) and via_registry.method == "nn"
