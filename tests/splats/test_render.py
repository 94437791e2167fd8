"""CPU rasteriser: projection parity with gsplat's _torch_impl, compositor vs a dense loop, gradients."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from motion4d.errors import BackendUnavailableError, InvalidArgumentError, NonFiniteError, ShapeError
from splats import _raster_torch as rt
from splats.cameras import Cameras, look_at, to_gsplat_intrinsics
from splats.gaussians import Gaussians
from splats.rendering import eval_sh, rasterize, render


def _scene(n: int = 60, seed: int = 0, dtype=torch.float32) -> Gaussians:
    g = torch.Generator().manual_seed(seed)
    return Gaussians(
        means=(torch.randn(n, 3, generator=g) * 0.5).to(dtype),
        quats=torch.randn(n, 4, generator=g).to(dtype),
        log_scales=(torch.randn(n, 3, generator=g) * 0.3 - 2.3).to(dtype),
        logit_opacities=(torch.randn(n, generator=g) * 2 + 1).to(dtype),
        colors=torch.rand(n, 3, generator=g).to(dtype),
    )


def _cameras(width: int = 24, height: int = 20, dtype=torch.float32) -> Cameras:
    w2c = look_at(torch.tensor([[0.0, 0.0, -3.0], [1.0, 0.5, -3.0]]), torch.zeros(3))
    cams = Cameras.from_fov(w2c, width, height, 60.0)
    return Cameras(cams.K.to(dtype), cams.world_to_cam.to(dtype), width, height)


def test_projection_matches_gsplat_torch_impl():
    ti = pytest.importorskip("gsplat.cuda._torch_impl")
    g, cams = _scene(200), _cameras(40, 30)
    ks = to_gsplat_intrinsics(cams.K)
    cov, _ = ti._quat_scale_to_covar_preci(g.quats, g.scales, compute_preci=False)
    radii, means2d, depths, conics, _ = ti._fully_fused_projection(g.means, cov, cams.world_to_cam, ks, 40, 30)
    ours = rt.project(g.means, g.quats, g.scales, cams.world_to_cam, ks, 40, 30)
    assert torch.equal(ours.radii, radii)
    vis = radii[..., 0] > 0
    assert vis.sum() > 100
    torch.testing.assert_close(ours.means2d[vis], means2d[vis], atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(ours.depths, depths)
    torch.testing.assert_close(ours.conics[vis], conics[vis], atol=1e-5, rtol=1e-4)


def test_projection_of_a_point_lands_on_its_pixel():
    # A tiny Gaussian at a known 3D point renders its peak at the pixel Cameras.project gives.
    cams = _cameras(32, 24)[0]
    point = torch.tensor([[0.21, -0.13, 0.4]])
    uv, _ = cams.project(point)
    u, v = uv[0, 0].round().long().tolist()
    uv_exact = torch.tensor([u, v], dtype=torch.float32)
    # move the point so that it projects exactly onto the pixel centre (u, v)
    k = cams.K[0]
    z = (cams.world_to_cam[0, :3, :3] @ point[0] + cams.world_to_cam[0, :3, 3])[2]
    cam_pt = torch.stack([(uv_exact[0] - k[0, 2]) / k[0, 0] * z, (uv_exact[1] - k[1, 2]) / k[1, 1] * z, z])
    world = cams.cam_to_world[0, :3, :3] @ cam_pt + cams.cam_to_world[0, :3, 3]
    g = Gaussians(world[None], torch.tensor([[1.0, 0, 0, 0]]), torch.full((1, 3), -4.0), torch.tensor([5.0]),
                  torch.ones(1, 3))
    img, _, _ = render(g, cams)
    peak = torch.nonzero(img[0, ..., 0] == img[0, ..., 0].max())[0]
    assert peak.tolist() == [v, u]
    assert img[0, v, u, 0] > 0.9


# (chunk size in box pixels, max_pairs): one chunk; several chunks whose pairs are kept for the
# backward pass; several chunks rebuilt in the backward pass (the memory-bounded mode)
CHUNKINGS = [(None, 1 << 22), (400, 1 << 22), (400, 2000)]


@pytest.fixture(params=CHUNKINGS, ids=["one-chunk", "kept-chunks", "rebuilt-chunks"])
def chunking(request, monkeypatch):
    chunk, max_pairs = request.param
    if chunk is not None:
        monkeypatch.setattr(rt, "CHUNK_PAIRS", chunk)
    return max_pairs


def _projected(n=50, seed=0, dtype=torch.float32, width=24, height=20, eps2d=0.3, scene=None):
    g = _scene(n, seed, dtype) if scene is None else scene
    cams = _cameras(width, height, dtype)
    proj = rt.project(g.means, g.quats, g.scales, cams.world_to_cam, to_gsplat_intrinsics(cams.K), width, height,
                      eps2d=eps2d, opacities=g.opacities)
    feats = torch.cat([g.colors.expand(2, -1, -1), proj.depths[..., None]], dim=-1)
    return proj, g.opacities, feats


def test_compositor_matches_dense_loop(chunking):
    proj, opac, feats = _projected()
    ours, alpha = rt.composite(proj, opac, feats, 24, 20, max_pairs=chunking)
    ref, ref_alpha = rt.composite_dense(proj, opac, feats, 24, 20)
    torch.testing.assert_close(ours, ref, atol=2e-6, rtol=1e-5)
    torch.testing.assert_close(alpha, ref_alpha, atol=2e-6, rtol=1e-5)
    assert alpha.max() > 0.999  # the early-termination branch was exercised


def test_analytic_backward_matches_autograd_of_dense_loop(chunking):
    # float64, gradients of a generic loss of image and alpha w.r.t. every compositor input; a few
    # nearly opaque Gaussians centred on pixel centres hit the 0.999 alpha clamp
    scene = _scene(50, 1, torch.float64)
    scene = scene.replace(logit_opacities=torch.cat([torch.full((6,), 12.0, dtype=torch.float64),
                                                     scene.logit_opacities[6:]]))
    proj, opac, feats = _projected(scene=scene, dtype=torch.float64)
    means2d = proj.means2d.detach().clone()
    means2d[:, :6] = means2d[:, :6].floor() + 0.5
    leaves = [t.detach().clone().requires_grad_() for t in (means2d, proj.conics, opac, feats)]
    g = torch.Generator().manual_seed(0)
    w_img = torch.randn(2, 20, 24, 4, generator=g, dtype=torch.float64)
    w_alpha = torch.randn(2, 20, 24, 1, generator=g, dtype=torch.float64)

    def grads(fn, **kw):
        p = rt.Projection(means2d=leaves[0], conics=leaves[1], depths=proj.depths.detach(), radii=proj.radii)
        img, alpha = fn(p, leaves[2], leaves[3], 24, 20, **kw)
        return torch.autograd.grad((img * w_img).sum() + (alpha * w_alpha).square().sum(), leaves)

    ours = grads(rt.composite, max_pairs=chunking)
    ref = grads(rt.composite_dense)
    for name, a, b in zip(("means2d", "conics", "opacities", "features"), ours, ref):
        assert b.abs().sum() > 0, name
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-8, msg=name)
    p = rt.Projection(means2d=means2d, conics=proj.conics.detach(), depths=proj.depths, radii=proj.radii)
    lay = rt._layout(p, 24, 20, 1 << 30)
    pairs = rt._chunk_pairs(rt._gaussian_table(p, opac.detach(), feats.detach(), lay.gids), None, None,
                            (lay.x0, lay.y0, lay.bw, lay.bh, lay.cam_off), 24, 20 * 24 * 2)
    assert (~pairs.grad_opacity).sum() >= 6  # the clamp was reached


def test_composite_gradcheck_across_chunks(monkeypatch):
    # several chunks, so the transmittance handed from chunk to chunk is differentiated too
    monkeypatch.setattr(rt, "CHUNK_PAIRS", 60)
    proj, opac, feats = _projected(12, seed=3, dtype=torch.float64, width=12, height=10)
    assert len(rt._layout(proj, 12, 10, 60).bounds) > 3
    leaves = tuple(t.detach().clone().requires_grad_() for t in (proj.means2d, proj.conics, opac, feats))

    def fn(means2d, conics, opacities, features):
        p = rt.Projection(means2d=means2d, conics=conics, depths=proj.depths.detach(), radii=proj.radii)
        return rt.composite(p, opacities, features, 12, 10)

    assert torch.autograd.gradcheck(fn, leaves, eps=1e-7, atol=1e-6, rtol=1e-4, fast_mode=True)


@pytest.mark.parametrize("eps2d", [0.3, 0.0])
def test_ellipse_rows_keep_every_pixel_of_the_box_compositor(eps2d):
    # Thin, strongly correlated and large Gaussians (and no low-pass at all): the per-row ellipse
    # intervals must contain every box pixel whose alpha reaches 1/255, so the result equals the
    # whole-box reference, and they must be tighter than the boxes.
    g = torch.Generator().manual_seed(7)
    n = 120
    log_scales = torch.randn(n, 3, generator=g) * 1.2 - 2.5
    log_scales[: n // 3, 0] -= 3.0  # needles
    scene = Gaussians(torch.randn(n, 3, generator=g) * 0.6, torch.randn(n, 4, generator=g), log_scales,
                      torch.randn(n, generator=g) * 3, torch.rand(n, 3, generator=g))
    proj, opac, feats = _projected(scene=scene, width=40, height=32, eps2d=eps2d)
    ours, alpha = rt.composite(proj, opac, feats, 40, 32)
    ref, ref_alpha = rt.composite_autograd(proj, opac, feats, 40, 32)
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(alpha, ref_alpha, atol=1e-6, rtol=1e-6)

    lay = rt._layout(proj, 40, 32, 1 << 30)
    table = rt._gaussian_table(proj, opac, feats, lay.gids)
    cols = list(table.t().contiguous())
    chunk = (lay.x0, lay.y0, lay.bw, lay.bh, lay.cam_off)
    row_g, dy, row_base, col0, count = rt._row_intervals(cols, chunk, 40)
    row_g = row_g.long()
    # brute force over each row of each box
    box_w = lay.bw[row_g].long()
    cols_x = lay.x0[row_g, None].long() + torch.arange(int(box_w.max()))
    in_box = torch.arange(int(box_w.max())) < box_w[:, None]
    dx = (cols_x.float() + 0.5) - cols[0][row_g, None]
    dyy = dy[:, None]
    sigma = 0.5 * (cols[2][row_g, None] * dx * dx + cols[4][row_g, None] * dyy * dyy) + cols[3][row_g, None] * dx * dyy
    passes = in_box & (cols[5][row_g, None] * torch.exp(-sigma.clamp_min(0)) >= rt.ALPHA_MIN)
    lo, hi = col0[:, None].long(), col0[:, None].long() + count[:, None].long() - 1
    assert passes.sum() > 1000
    assert not (passes & ((cols_x < lo) | (cols_x > hi))).any()
    assert ((cols_x >= lo) & (cols_x <= hi) & ~in_box).sum() == 0
    assert count.sum() < 0.85 * in_box.sum()


def test_modes_background_and_depth():
    g, cams = _scene(80), _cameras()
    rgb, alpha, meta = render(g, cams, mode="RGB", background=(0.2, 0.4, 0.6))
    acc, alpha_d, _ = render(g, cams, mode="D")
    both, _, _ = render(g, cams, mode="RGB+ED", background=(0.2, 0.4, 0.6))
    assert rgb.shape == (2, 20, 24, 3) and alpha.shape == (2, 20, 24, 1) and acc.shape == (2, 20, 24, 1)
    torch.testing.assert_close(both[..., :3], rgb)
    torch.testing.assert_close(both[..., 3:] * alpha_d.clamp_min(1e-10), acc, atol=1e-5, rtol=1e-5)
    empty = alpha[..., 0] < 1e-6
    assert empty.any()
    torch.testing.assert_close(rgb[empty], torch.tensor([0.2, 0.4, 0.6]).expand(int(empty.sum()), 3))
    covered = alpha[..., 0] > 0.99
    depths = meta["depths"]
    assert (both[..., 3][covered] > depths.min() - 0.5).all() and (both[..., 3][covered] < depths.max() + 0.5).all()
    for key in ("means2d", "radii", "width", "height", "n_cameras", "gaussian_ids"):
        assert key in meta


def test_gradcheck_float64():
    g = _scene(6, seed=3, dtype=torch.float64)
    cams = _cameras(10, 8, dtype=torch.float64)
    params = {k: v.clone().requires_grad_() for k, v in g.tensors().items()}

    def fn(means, quats, log_scales, logit_opacities, colors):
        img, alpha, _ = rasterize(means, quats, log_scales.exp(), torch.sigmoid(logit_opacities), colors,
                                  cams.world_to_cam, cams.K, 10, 8, mode="RGB+ED", backend="torch")
        return img, alpha

    assert torch.autograd.gradcheck(fn, tuple(params.values()), eps=1e-6, atol=1e-5, rtol=1e-3, fast_mode=True)


def test_gradients_reach_all_parameters_and_viewmats():
    g, cams = _scene(80), _cameras()
    params = {k: v.clone().requires_grad_() for k, v in g.tensors().items()}
    viewmats = cams.world_to_cam.clone().requires_grad_()
    img, _, meta = rasterize(params["means"], params["quats"], params["log_scales"].exp(),
                             torch.sigmoid(params["logit_opacities"]), params["colors"], viewmats, cams.K, 24, 20)
    meta["means2d"].retain_grad()
    img.square().sum().backward()
    for name, p in list(params.items()) + [("viewmats", viewmats)]:
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name
    assert meta["means2d"].grad.shape == (2, 80, 2)


def test_sh_colours_degree0_match_rgb_and_view_dependence():
    g = _scene(40)
    sh = torch.zeros(40, 16, 3)
    sh[:, 0] = (g.colors - 0.5) / 0.28209479177387814
    g_sh = g.replace(colors=sh)
    cams = _cameras()
    torch.testing.assert_close(render(g_sh, cams)[0], render(g, cams)[0], atol=1e-5, rtol=1e-5)
    # degree-1 band along +z: brighter for a camera looking along +z (direction from camera to Gaussian)
    d = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, -1.0]])
    coeffs = torch.zeros(2, 4, 3)
    coeffs[:, 2] = 1.0
    out = eval_sh(1, coeffs, d)
    assert out[0, 0] == pytest.approx(0.4886025, abs=1e-6) and out[1, 0] == pytest.approx(-0.4886025, abs=1e-6)


def test_default_strategy_densifies_with_cpu_meta():
    gsplat = pytest.importorskip("gsplat")
    cams = _cameras(32, 24)
    target, _, _ = render(_scene(300, seed=5), cams)
    g = _scene(50, seed=1)
    params = torch.nn.ParameterDict({
        "means": g.means, "quats": g.quats, "scales": g.log_scales, "opacities": g.logit_opacities,
        "colors": g.colors,
    })
    opts = {k: torch.optim.Adam([p], lr=1e-2) for k, p in params.items()}
    strategy = gsplat.DefaultStrategy(refine_start_iter=5, refine_every=5, refine_stop_iter=30, grow_grad2d=1e-4,
                                      reset_every=1000)
    strategy.check_sanity(params, opts)
    state = strategy.initialize_state(scene_scale=1.0)
    first_loss = None
    for step in range(25):
        img, _, meta = rasterize(params["means"], params["quats"], params["scales"].exp(),
                                 torch.sigmoid(params["opacities"]), params["colors"], cams.world_to_cam, cams.K,
                                 32, 24)
        loss = (img - target).abs().mean()
        first_loss = first_loss if first_loss is not None else loss.item()
        strategy.step_pre_backward(params, opts, state, step, meta)
        loss.backward()
        strategy.step_post_backward(params, opts, state, step, meta, packed=False)
        for o in opts.values():
            o.step()
            o.zero_grad()
    assert len(params["means"]) > 50
    assert loss.item() < first_loss


def test_bad_inputs():
    g, cams = _scene(10), _cameras()
    with pytest.raises(InvalidArgumentError, match="mode"):
        render(g, cams, mode="RGBD")
    with pytest.raises(BackendUnavailableError):
        render(g, cams, backend="gsplat")
    bad = g.means.clone()
    bad[3, 1] = math.nan
    with pytest.raises(NonFiniteError, match="means"):
        Gaussians(bad, g.quats, g.log_scales, g.logit_opacities, g.colors)
    g.means[3, 1] = math.inf  # edited in place after validation: render checks again
    with pytest.raises(NonFiniteError, match="means"):
        render(g, cams)
    g = _scene(10)
    with pytest.raises(ShapeError, match="background"):
        render(g, cams, background=torch.zeros(5))
    with pytest.raises(ShapeError, match="opacities"):
        rasterize(g.means, g.quats, g.scales, g.opacities[:5], g.colors, cams.world_to_cam, cams.K, 24, 20)


def test_per_camera_gaussians_match_separate_renders():
    g, cams = _scene(60), _cameras()
    moved = g.means + torch.tensor([0.1, 0.0, 0.0])
    means = torch.stack([g.means, moved])
    img, _, _ = rasterize(means, g.quats, g.scales, g.opacities, g.colors, cams.world_to_cam, cams.K, 24, 20)
    a, _, _ = render(g, cams[0])
    b, _, _ = render(g.replace(means=moved), cams[1])
    torch.testing.assert_close(img, torch.cat([a, b]))


def test_package_level_render_is_callable_after_submodule_import():
    import splats
    import splats.gsplat_bridge
    import splats.rendering  # binds the package attribute "rendering", not "render"

    img, _, _ = splats.render(_scene(10), _cameras())
    assert img.shape == (2, 20, 24, 3)
    assert splats.render is splats.rendering.render
    # no submodule may share the function's name: importing it would rebind splats.render
    package_dir = Path(splats.__file__).parent
    assert not (package_dir / "render.py").exists() and not (package_dir / "render").exists()
