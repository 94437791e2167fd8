"""The Gaussian method registry and the reconstruct CLI's method choice."""
from __future__ import annotations

import pytest

import splats
from motion4d.cli import reconstruct
from motion4d.registry import Registry
from splats import methods
from splats.gaussian_flow import GaussianFlow, GaussianFlowConfig
from splats.gflow import GFlow, GFlowConfig


def test_lists_and_builds_the_shipped_methods() -> None:
    assert splats.list_gaussian_methods() == ["gaussian-flow", "gflow"]
    for name, cls, config_cls in (("gaussian-flow", GaussianFlow, GaussianFlowConfig), ("gflow", GFlow, GFlowConfig)):
        entry = splats.gaussian_method(name)
        assert (entry.name, entry.cls, entry.config_cls) == (name, cls, config_cls) and entry.description
        built = entry.cls(entry.config_cls())
        assert isinstance(built, cls) and isinstance(built.config, config_cls)


def test_reconstruct_offers_registered_methods_with_a_runner(monkeypatch) -> None:
    assert reconstruct.available_methods() == reconstruct.METHODS
    fresh = Registry("Gaussian method")
    monkeypatch.setattr(methods, "GAUSSIAN_METHODS", fresh)
    methods.register_gaussian_method("gflow", GFlowConfig, "GFlow")(GFlow)
    methods.register_gaussian_method("no-runner", GFlowConfig, "registered, but the CLI cannot run it")(GFlow)
    assert reconstruct.available_methods() == {"gflow": reconstruct.METHODS["gflow"]}
    with pytest.warns(RuntimeWarning, match="'gflow' registered again"):
        methods.register_gaussian_method("gflow", GFlowConfig, "again")(GFlow)
    assert methods.gaussian_method("gflow").description == "again"
