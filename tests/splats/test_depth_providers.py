"""Depth providers: names and folders, the constant plane, and Depth Anything through ``transformers``
(a tiny model built from its configuration and saved locally: nothing is downloaded)."""
from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from motion4d.errors import MissingDependencyError, MissingFileError, ShapeError
from splats.depth_prior import DepthEstimate
from splats.depth_providers import (
    ConstantDepth,
    DepthProvider,
    FolderDepth,
    TwoViewDepth,
    depth_provider,
    disparity_to_depth,
)


def _frames(t: int = 3, h: int = 40, w: int = 64) -> np.ndarray:
    return (np.random.default_rng(0).random((t, h, w, 3)) * 255).astype(np.uint8)


def test_names_and_folders_resolve_to_providers(tmp_path):
    assert isinstance(depth_provider(None), TwoViewDepth)
    assert isinstance(depth_provider("two-view"), TwoViewDepth)
    assert isinstance(depth_provider("constant"), ConstantDepth)
    for i in range(3):
        np.save(tmp_path / f"{i:03d}.npy", np.full((20, 32), i + 1.0, np.float32))
    folder = depth_provider(str(tmp_path))
    assert isinstance(folder, FolderDepth) and isinstance(folder, DepthProvider)
    depth = folder.estimate(_frames()).depth
    assert depth.shape == (3, 40, 64)  # resized to the frames (same aspect ratio)
    np.testing.assert_array_equal(depth[:, 0, 0], [1.0, 2.0, 3.0])
    with pytest.raises(MissingFileError, match="neither an existing folder"):
        depth_provider("no-such-provider")


def test_folder_selection_follows_the_frame_selection(tmp_path):
    for i in range(10):
        np.save(tmp_path / f"{i:03d}.npy", np.full((40, 64), float(i + 1), np.float32))
    with pytest.raises(ShapeError, match="holds 10 maps but the video has 3"):
        FolderDepth(tmp_path).estimate(_frames())
    depth = FolderDepth(tmp_path, select=(2, 3)).estimate(_frames()).depth
    np.testing.assert_array_equal(depth[:, 0, 0], [3.0, 6.0, 9.0])
    with pytest.raises(ShapeError, match="too few"):
        FolderDepth(tmp_path, select=(5, 3)).estimate(_frames())


def test_constant_plane():
    estimate = ConstantDepth(2.5).estimate(_frames())
    assert estimate.method == "constant" and np.all(estimate.depth == 2.5)


def test_disparity_to_depth_fits_the_reference_inverse_depth():
    rng = np.random.default_rng(0)
    depth = rng.uniform(1.0, 8.0, (2, 30, 40))
    disparity = 3.0 / depth + 0.7  # affine-invariant inverse depth, as relative networks predict
    confidence = (rng.random(depth.shape) < 0.3).astype(np.float32)
    reference = DepthEstimate((depth / 2.0).astype(np.float32), "two-view", confidence=confidence)
    out, fits = disparity_to_depth(disparity, reference)
    assert all(isinstance(f, list) for f in fits)
    np.testing.assert_allclose(out, depth / 2.0, rtol=1e-4)  # the reference's scale, everywhere
    plain, fits = disparity_to_depth(disparity, None)  # no reference: a monotone 10:1 depth range
    assert fits == ["percentiles", "percentiles"]
    order = np.argsort(disparity.ravel())
    assert np.all(np.diff(plain.ravel()[order]) <= 1e-6)


# ------------------------------------------------------------------ Depth Anything (transformers)
@pytest.fixture(scope="module")
def tiny_depth_anything(tmp_path_factory):
    transformers = pytest.importorskip("transformers")
    backbone = transformers.Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, mlp_ratio=2,
                                         image_size=56, patch_size=14, out_features=["stage1", "stage2"],
                                         out_indices=[1, 2], reshape_hidden_states=False)
    config = transformers.DepthAnythingConfig(backbone_config=backbone, neck_hidden_sizes=[16, 32],
                                              reassemble_factors=[2, 1], fusion_hidden_size=16, head_hidden_size=8,
                                              reassemble_hidden_size=32, patch_size=14)
    torch.manual_seed(0)
    model = transformers.DepthAnythingForDepthEstimation(config).eval()
    for p in model.parameters():  # random weights with a visible output (the default init predicts ~0)
        p.data.normal_(0.0, 0.2)
    processor = transformers.DPTImageProcessor(
        do_resize=True, size={"height": 56, "width": 56}, keep_aspect_ratio=True, ensure_multiple_of=14, resample=3,
        do_rescale=True, do_normalize=True, image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])
    folder = tmp_path_factory.mktemp("tiny_depth_anything")
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def test_depth_anything_loads_a_local_model_and_matches_the_transformers_pipeline(tiny_depth_anything):
    from PIL import Image
    from transformers import pipeline

    from splats.depth_providers import DepthAnything

    frames = _frames()
    provider = DepthAnything(tiny_depth_anything, local_files_only=True, batch_size=2)
    raw = provider.predict(frames)
    assert raw.shape == (3, 40, 64) and raw.std() > 0.01
    reference = pipeline("depth-estimation", model=str(tiny_depth_anything), device="cpu")
    for t in range(3):
        expected = reference(Image.fromarray(frames[t]))["predicted_depth"].numpy()
        np.testing.assert_allclose(raw[t], expected, atol=1e-4)
    estimate = provider.estimate(frames)
    assert estimate.method == "depth-anything" and (estimate.depth > 0).all()
    # relative models predict inverse depth: more disparity, less depth (monotone over the whole video)
    order = np.argsort(raw.ravel(), kind="stable")
    assert np.all(np.diff(estimate.depth.ravel()[order]) <= 1e-5)
    assert estimate.depth.max() / estimate.depth.min() > 5
    assert isinstance(depth_provider(f"depth-anything:{tiny_depth_anything}"), DepthAnything)


def test_depth_anything_errors(monkeypatch, tmp_path):
    pytest.importorskip("transformers")
    from splats.depth_providers import DepthAnything

    with pytest.raises(MissingFileError, match="does not exist"):
        DepthAnything(tmp_path / "missing_model")
    monkeypatch.setitem(sys.modules, "transformers", None)  # as if not installed
    with pytest.raises(MissingDependencyError, match="motion4d\\[depth\\]"):
        DepthAnything(tmp_path)


def test_depth_prior_api_is_exported_from_splats():
    import splats
    from splats import depth_prior, depth_providers

    assert splats.two_view_depth is depth_prior.two_view_depth
    assert splats.DepthProvider is depth_providers.DepthProvider
    assert splats.depth_provider is depth_providers.depth_provider
    for name in ("depth_fill", "posed_video", "reprojected_scene", "video_reconstruction"):
        assert getattr(splats, name).__name__ == f"splats.{name}"
