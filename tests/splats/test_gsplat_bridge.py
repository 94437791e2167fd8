"""The gsplat path of ``splats.render`` on the CPU: the arguments the bridge builds for
``gsplat.rasterization``, rendered by a pure-PyTorch stand-in with gsplat's conventions
(``gsplat_reference``: gsplat's own ``_torch_impl`` projection, SH and tile sort), must give what our
CPU renderer gives. A convention slip in the bridge (a transposed view matrix, the quaternion
order, the half-pixel centre offset, the SH degree, packed outputs, near/far, background, render
mode) fails here instead of on a user's GPU.

The ``gsplat_on_cpu`` fixture sends ``backend="gsplat"`` through the same code a GPU run takes
(``rendering.rasterize`` -> ``gsplat_bridge.rasterize_gsplat`` -> ``gsplat_arguments``) and swaps
only ``gsplat.rasterization`` itself for the stand-in.
"""
from __future__ import annotations

import inspect
import math

import pytest
import torch

from splats import gsplat_bridge, rendering
from splats.cameras import Cameras, look_at
from splats.gaussians import Gaussians, rgb_to_sh0
from splats.rendering import rasterize, render

from . import gsplat_reference

WIDTH, HEIGHT = 40, 28  # 3 x 2 tiles of 16 px, the last ones partial


@pytest.fixture
def gsplat_on_cpu(monkeypatch):
    pytest.importorskip("gsplat.cuda._torch_impl")
    monkeypatch.setattr(rendering, "resolve_backend", lambda backend, device, dtype=torch.float32: backend)
    monkeypatch.setattr(gsplat_bridge, "load_rasterization", lambda: gsplat_reference.rasterization)


def _scene(n: int = 40, sh_degree: int | None = None, seed: int = 0) -> Gaussians:
    """Anisotropic, rotated Gaussians of about 1-3 px around the origin (depths 2.2-3.8 from the cameras)."""
    g = torch.Generator().manual_seed(seed)
    rgb = torch.rand(n, 3, generator=g)
    colors = rgb
    if sh_degree is not None:
        colors = 0.3 * torch.randn(n, (sh_degree + 1) ** 2, 3, generator=g)
        colors[:, 0] = rgb_to_sh0(rgb)
    return Gaussians(
        means=torch.rand(n, 3, generator=g) * torch.tensor([2.4, 1.7, 1.6]) - torch.tensor([1.2, 0.85, 0.8]),
        quats=torch.randn(n, 4, generator=g),
        log_scales=math.log(0.1) + 0.5 * torch.randn(n, 3, generator=g),
        logit_opacities=torch.randn(n, generator=g) + 1.0,
        colors=colors,
    )


def _cameras() -> Cameras:
    w2c = look_at(torch.tensor([[0.3, -0.2, -3.0], [1.2, 0.5, -2.7]]), torch.zeros(3))
    return Cameras.from_fov(w2c, WIDTH, HEIGHT, 65.0)


def _assert_same_render(gs, ours, mode: str) -> None:
    (img_g, alpha_g, meta_g), (img_t, alpha_t, meta_t) = gs, ours
    assert meta_g["backend"] == "gsplat" and meta_t["backend"] == "torch"
    assert img_g.shape == img_t.shape and alpha_g.shape == alpha_t.shape == img_t.shape[:-1] + (1,)
    torch.testing.assert_close(alpha_g, alpha_t, atol=1e-4, rtol=0)
    depth = mode in ("D", "ED", "RGB+D", "RGB+ED")
    colour = img_t.shape[-1] - depth
    torch.testing.assert_close(img_g[..., :colour], img_t[..., :colour], atol=1e-4, rtol=0)
    if depth:
        covered = alpha_t[..., 0] > 0.5 if mode.endswith("ED") else torch.ones_like(alpha_t[..., 0], dtype=torch.bool)
        assert covered.sum() > 50
        torch.testing.assert_close(img_g[..., -1][covered], img_t[..., -1][covered], atol=1e-3, rtol=0)
    c, n = meta_t["means2d"].shape[:2]
    # the densifier reads these layouts: means2d [C, N, 2] (per-camera: [C, 1, N, 2]), radii [C, N, 2]
    assert meta_g["means2d"].numel() == c * n * 2 and meta_g["radii"].shape == (c, n, 2)
    torch.testing.assert_close(meta_g["means2d"].reshape(c, n, 2), meta_t["means2d"], atol=1e-4, rtol=1e-5)
    assert (meta_g["n_cameras"], meta_g["width"], meta_g["height"]) == (c, meta_t["width"], meta_t["height"])


CASES = {
    # name: (sh_degree, mode, background, near_plane, far_plane)
    "rgb": (None, "RGB", None, 0.01, 1e10),
    "sh3-rgb+ed-background-near-far": (3, "RGB+ED", (0.2, 0.5, 0.9), 2.6, 3.5),
    "sh2-rgb+d-background": (2, "RGB+D", (0.7, 0.1, 0.3), 0.01, 1e10),
    "sh1-d": (1, "D", (0.7, 0.1, 0.3), 0.01, 1e10),
    "rgb-ed-far": (None, "ED", None, 0.01, 3.2),
}


@pytest.mark.parametrize("case", CASES)
def test_gsplat_path_matches_cpu_renderer(gsplat_on_cpu, case):
    sh_degree, mode, background, near, far = CASES[case]
    g, cams = _scene(sh_degree=sh_degree), _cameras()
    kw = dict(mode=mode, background=background, near_plane=near, far_plane=far)
    _assert_same_render(render(g, cams, backend="gsplat", **kw), render(g, cams, backend="torch", **kw), mode)


def _render_with_grads(g: Gaussians, cams: Cameras, backend: str, per_camera: bool):
    params = {k: v.detach().clone().requires_grad_() for k, v in g.tensors().items()}
    means = params["means"]
    if per_camera:  # a deformable model evaluated at each view's time: per-camera means and opacities
        means = torch.stack([means, means + torch.tensor([0.08, -0.05, 0.1])])
    opacities = torch.sigmoid(params["logit_opacities"])
    if per_camera:
        opacities = torch.stack([opacities, opacities.flip(0)])
    out = rasterize(means, params["quats"], params["log_scales"].exp(), opacities, params["colors"],
                    cams.world_to_cam, cams.K, WIDTH, HEIGHT, sh_degree=g.sh_degree, mode="RGB+ED",
                    backgrounds=torch.tensor([0.1, 0.2, 0.3]), backend=backend)
    out[2]["means2d"].retain_grad()
    weights = torch.tensor([0.5, 1.0, 1.5, 0.02])
    ((out[0] * weights).sum() + out[1].sum()).backward()
    return out, {k: v.grad for k, v in params.items()}


@pytest.mark.parametrize("per_camera", [False, True], ids=["shared", "per-camera"])
def test_gsplat_path_matches_cpu_renderer_with_gradients(gsplat_on_cpu, per_camera):
    g, cams = _scene(sh_degree=3, seed=1), _cameras()
    out_g, grads_g = _render_with_grads(g, cams, "gsplat", per_camera)
    out_t, grads_t = _render_with_grads(g, cams, "torch", per_camera)
    _assert_same_render(out_g, out_t, "RGB+ED")
    for name, grad in grads_t.items():
        scale = grad.abs().max().item()
        assert scale > 0, name
        torch.testing.assert_close(grads_g[name], grad, atol=2e-3 * scale, rtol=0, msg=name)
    c, n = out_t[2]["means2d"].shape[:2]
    grad_t = out_t[2]["means2d"].grad
    torch.testing.assert_close(out_g[2]["means2d"].grad.reshape(c, n, 2), grad_t, atol=2e-3 * grad_t.abs().max(),
                               rtol=0)


def test_bridge_arguments_are_gsplat_rasterization_parameters():
    """Every argument the bridge passes exists in the installed gsplat, and the stand-in assumes
    gsplat's defaults for the ones the bridge leaves out."""
    gsplat = pytest.importorskip("gsplat")
    gsplat_sig = inspect.signature(gsplat.rasterization)
    g, cams = _scene(sh_degree=2), _cameras()
    for means in (g.means, torch.stack([g.means, g.means])):
        call = gsplat_bridge.gsplat_arguments(
            means, g.quats, g.scales, g.opacities, g.colors, cams.world_to_cam, cams.K, WIDTH, HEIGHT,
            sh_degree=g.sh_degree, mode="RGB", backgrounds=torch.zeros(2, 3), near_plane=0.01, far_plane=1e10,
            eps2d=0.3)
        assert call.per_camera == (means.dim() == 3)
        gsplat_sig.bind(**call.kwargs)
        inspect.signature(gsplat_reference.rasterization).bind(**call.kwargs)
    for name, param in inspect.signature(gsplat_reference.rasterization).parameters.items():
        assert name in gsplat_sig.parameters, name
        assert gsplat_sig.parameters[name].default == param.default, name


def _single_gaussian(mean, quat, scales, colour=(1.0, 1.0, 1.0)) -> Gaussians:
    return Gaussians(means=torch.tensor([mean]), quats=torch.tensor([quat]),
                     log_scales=torch.tensor([scales]).log(), logit_opacities=torch.logit(torch.tensor([0.9])),
                     colors=torch.tensor([colour]))


def _moments(img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Intensity-weighted centroid ``(u, v)`` (integer pixel centres) and second moments of ``[H, W]``."""
    v, u = torch.meshgrid(torch.arange(img.shape[0], dtype=img.dtype), torch.arange(img.shape[1], dtype=img.dtype),
                          indexing="ij")
    w = img / img.sum()
    mu = torch.stack([(w * u).sum(), (w * v).sum()])
    du, dv = u - mu[0], v - mu[1]
    cov = torch.stack([(w * du * du).sum(), (w * du * dv).sum(), (w * dv * dv).sum()])
    return mu, cov


@pytest.mark.parametrize("backend", ["gsplat", "torch"])
def test_render_puts_gaussians_where_the_pinhole_model_says(gsplat_on_cpu, backend):
    """Ground truth independent of both renderers: a small round Gaussian at a world point appears
    centred on ``K (R p + t)`` (pixel centres at integer coordinates), seen by a rotated, translated
    camera; a Gaussian stretched along its local x and turned 60 degrees about the optical axis by
    the quaternion (cos 30, 0, 0, sin 30) (w, x, y, z) appears stretched at 60 degrees."""
    w2c = look_at(torch.tensor([0.6, -0.45, -3.0]), torch.tensor([0.1, 0.05, 0.0]))[None]
    K = torch.tensor([[[42.0, 0.0, 19.0], [0.0, 38.0, 13.0], [0.0, 0.0, 1.0]]])
    cams = Cameras(K, w2c, WIDTH, HEIGHT)
    point = torch.tensor([0.23, -0.11, 0.15])
    cam_point = w2c[0, :3, :3] @ point + w2c[0, :3, 3]
    expected = (K[0] @ (cam_point / cam_point[2]))[:2]
    img, _, _ = render(_single_gaussian(point.tolist(), [1.0, 0.0, 0.0, 0.0], [0.03] * 3), cams, backend=backend)
    mu, _ = _moments(img[0, ..., 0])
    assert torch.allclose(mu, expected, atol=0.03), (mu, expected)

    axis_cams = Cameras(K, look_at(torch.tensor([0.0, 0.0, -3.0]), torch.zeros(3))[None], WIDTH, HEIGHT)
    quat = [math.cos(math.radians(30)), 0.0, 0.0, math.sin(math.radians(30))]
    img, _, _ = render(_single_gaussian([0.0, 0.0, 0.0], quat, [0.25, 0.04, 0.04]), axis_cams, backend=backend)
    _, (cuu, cuv, cvv) = _moments(img[0, ..., 0])
    angle = 0.5 * math.degrees(math.atan2(2 * cuv, cuu - cvv))  # major axis, from +u towards +v
    # expected: J R diag(s^2) R^T J^T + 0.3 px^2 (R: 60 degrees about z; J = diag(fx, fy) / z on the
    # optical axis); the 1/255 cut-off is an iso-contour, so it keeps the moments' orientation
    c60, s60 = math.cos(math.radians(60)), math.sin(math.radians(60))
    rot = torch.tensor([[c60, -s60], [s60, c60]])
    jac = torch.diag(torch.tensor([42.0, 38.0])) / 3.0
    cov = jac @ rot @ torch.diag(torch.tensor([0.25, 0.04]) ** 2) @ rot.T @ jac.T + 0.3 * torch.eye(2)
    expected_angle = 0.5 * math.degrees(math.atan2(2 * cov[0, 1], cov[0, 0] - cov[1, 1]))
    assert abs(angle - expected_angle) < 1.0, (angle, expected_angle)
