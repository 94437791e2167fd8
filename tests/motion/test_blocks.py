"""Shared RAFT-family blocks checked against explicit references and analytic cases."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from motion.models.blocks import (
    BasicEncoder,
    GMAAggregate,
    GMAAttention,
    SepConvGRU,
    SKBlock,
    TwinsEncoder,
    convex_upsample,
    coords_grid,
    sample_bilinear,
    sequence_loss,
)
from motion.models.twins import LocallyGroupedAttention


def test_coords_grid_is_x_then_y():
    grid = coords_grid(2, 3, 4)
    assert grid.shape == (2, 2, 3, 4)
    assert grid[0, 0, 2, 3] == 3 and grid[0, 1, 2, 3] == 2


def explicit_bilinear(image: torch.Tensor, x: float, y: float) -> torch.Tensor:
    """Bilinear interpolation with zeros outside, written out pixel by pixel."""
    c, h, w = image.shape
    x0, y0 = math.floor(x), math.floor(y)
    out = torch.zeros(c, dtype=image.dtype)
    for xi, yi in ((x0, y0), (x0 + 1, y0), (x0, y0 + 1), (x0 + 1, y0 + 1)):
        weight = (1 - abs(x - xi)) * (1 - abs(y - yi))
        if 0 <= xi < w and 0 <= yi < h:
            out += weight * image[:, yi, xi]
    return out


@pytest.mark.parametrize("size", [(5, 7), (1, 6), (4, 1)])
def test_sample_bilinear_matches_explicit_interpolation(size):
    g = torch.Generator().manual_seed(0)
    h, w = size
    image = torch.randn(1, 3, h, w, generator=g, dtype=torch.float64)
    coords = torch.rand(1, 2, 4, 5, generator=g, dtype=torch.float64) * torch.tensor([w + 1.0, h + 1.0]).view(1, 2, 1, 1) - 1
    got = sample_bilinear(image, coords)
    for i in range(4):
        for j in range(5):
            x, y = coords[0, 0, i, j].item(), coords[0, 1, i, j].item()
            torch.testing.assert_close(got[0, :, i, j], explicit_bilinear(image[0], x, y))


def test_convex_upsample_of_constant_flow_is_constant_inside():
    flow = torch.tensor([1.5, -0.5]).view(1, 2, 1, 1).expand(1, 2, 4, 5).contiguous()
    mask = torch.randn(1, 9 * 64, 4, 5)
    up = convex_upsample(flow, mask)
    assert up.shape == (1, 2, 32, 40)
    # cells whose 3x3 neighbourhood is inside the map: every fine pixel is 8 * flow
    torch.testing.assert_close(up[:, :, 8:24, 8:32], (8 * flow[:, :, :1, :1]).expand(1, 2, 16, 24))


def test_convex_upsample_with_centre_mask_is_nearest():
    flow = torch.randn(1, 2, 3, 4)
    mask = torch.full((1, 9, 8, 8, 3, 4), -1e4)
    mask[:, 4] = 1e4  # all weight on the cell itself (neighbour 4 of the 3x3 unfold)
    up = convex_upsample(flow, mask.reshape(1, 9 * 64, 3, 4))
    expected = 8 * flow.repeat_interleave(8, dim=2).repeat_interleave(8, dim=3)
    torch.testing.assert_close(up, expected)


def test_sequence_loss_matches_explicit_formula():
    g = torch.Generator().manual_seed(0)
    target = torch.randn(2, 3, 2, 5, 6, generator=g, dtype=torch.float64) * 3
    target[0, 1, :, 0, 0] = 500.0  # beyond max_flow: excluded
    valid = torch.rand(2, 3, 5, 6, generator=g, dtype=torch.float64) > 0.3
    preds = [torch.randn(2, 3, 2, 5, 6, generator=g, dtype=torch.float64) for _ in range(4)]
    loss, metrics = sequence_loss(preds, target, valid, gamma=0.8)
    mask = valid & (target.norm(dim=2) < 400)
    expected = 0.0
    for i, p in enumerate(preds):
        total = 0.0
        for idx in torch.nonzero(mask):
            b, t, y, x = idx.tolist()
            total += (p[b, t, :, y, x] - target[b, t, :, y, x]).abs().sum().item()
        expected += 0.8 ** (3 - i) * total / p.numel()
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    epe = (preds[-1] - target).norm(dim=2)[mask]
    assert metrics["epe"] == pytest.approx(epe.mean().item())
    assert metrics["1px"] == pytest.approx((epe < 1).double().mean().item())


def test_sequence_loss_gradient_and_empty_mask():
    pred = torch.zeros(1, 2, 3, 3, requires_grad=True)
    loss, metrics = sequence_loss([pred], torch.ones(1, 2, 3, 3), torch.zeros(1, 3, 3, dtype=torch.bool))
    assert loss.item() == 0.0 and math.isnan(metrics["epe"])
    loss, _ = sequence_loss([pred], torch.ones(1, 2, 3, 3))
    loss.backward()
    torch.testing.assert_close(pred.grad, torch.full_like(pred, -1.0 / 18))


def test_sk_block_equals_its_definition():
    torch.manual_seed(0)
    block = SKBlock(6, 4, (1, 3)).double()
    x = torch.randn(2, 6, 5, 7, dtype=torch.float64)
    y = F.gelu(x + block.ffn1[2](F.gelu(block.ffn1[0](x))))
    for conv in block.conv_list:
        assert conv.groups == 6  # depthwise
        y = F.gelu(y + conv(y))
    y = F.gelu(y + block.pw(y))
    y = block.ffn2[2](F.gelu(block.ffn2[0](y)))
    torch.testing.assert_close(block(x), y)


def test_gma_dense_and_fused_agree_with_explicit_softmax():
    torch.manual_seed(0)
    att, agg = GMAAttention(8, heads=1, dim_head=8).double(), GMAAggregate(8, heads=1, dim_head=8).double()
    agg.gamma.data.fill_(0.7)
    context, motion = torch.randn(2, 8, 3, 4, dtype=torch.float64), torch.randn(2, 8, 3, 4, dtype=torch.float64)
    q, k = att.to_qk(context).chunk(2, dim=1)
    v = agg.to_v(motion)
    expected = motion.clone()
    for b in range(2):
        for i in range(12):
            weights = torch.softmax(torch.stack([(q[b].flatten(1)[:, i] * k[b].flatten(1)[:, j]).sum() / math.sqrt(8) for j in range(12)]), 0)
            expected[b].view(8, 12)[:, i] += 0.7 * (v[b].flatten(1) * weights).sum(dim=1)
    torch.testing.assert_close(agg(att(context), motion), expected)
    torch.testing.assert_close(agg(att(context, fused=True), motion), expected)


def _largest_cpu_allocation(fn) -> int:
    from torch.profiler import ProfilerActivity, profile

    with torch.no_grad(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    return max(e.cpu_memory_usage for e in prof.events())


def test_fused_gma_never_allocates_the_token_by_token_matrix():
    """At 64 x 64 tokens the attention matrix is 64 MiB; the fused path (used for high resolutions)
    must stay on the flash kernel: strided q/k/v made PyTorch's CPU SDPA fall back to the math path,
    which allocates that matrix."""
    torch.manual_seed(0)
    att, agg = GMAAttention(128), GMAAggregate(128)
    context, motion = torch.randn(1, 128, 64, 64), torch.randn(1, 128, 64, 64)
    matrix_bytes = 4096 * 4096 * 4
    assert _largest_cpu_allocation(lambda: agg(att(context), motion)) >= matrix_bytes  # the measure sees it
    assert _largest_cpu_allocation(lambda: agg(att(context, fused=True), motion)) < matrix_bytes // 8


def test_gru_with_closed_update_gate_keeps_state():
    gru = SepConvGRU(hidden=4, input_dim=3)
    for conv in (gru.convz1, gru.convz2):
        torch.nn.init.zeros_(conv.weight)
        torch.nn.init.constant_(conv.bias, -50.0)
    h = torch.randn(1, 4, 6, 6)
    torch.testing.assert_close(gru(h, torch.randn(1, 3, 6, 6)), h, atol=1e-6, rtol=0)


def test_basic_encoder_shapes_and_raft_key_names():
    enc = BasicEncoder(256, norm_fn="batch")
    keys = enc.state_dict()
    assert keys["layer2.0.downsample.0.weight"].shape == (96, 64, 1, 1)
    # RAFT registers norm3 twice (as itself and inside downsample), checkpoints list both
    assert "layer2.0.norm3.running_mean" in keys and "layer2.0.downsample.1.running_mean" in keys
    assert enc.layer2[0].norm3 is enc.layer2[0].downsample[1]
    assert not any(k.startswith("layer1.0.norm") for k in BasicEncoder(256, "instance").state_dict())
    assert enc.eval()(torch.rand(2, 3, 40, 56)).shape == (2, 256, 5, 7)


def explicit_window_attention(lsa: LocallyGroupedAttention, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """LSA written window by window, zero tokens padding the bottom/right windows."""
    b, n, c = x.shape
    h, w = size
    ws, heads = lsa.window, lsa.heads
    hp, wp = -(-h // ws) * ws, -(-w // ws) * ws
    grid = torch.zeros(b, hp, wp, c, dtype=x.dtype)
    grid[:, :h, :w] = x.view(b, h, w, c)
    out = torch.zeros_like(grid)
    for i in range(0, hp, ws):
        for j in range(0, wp, ws):
            tokens = grid[:, i:i + ws, j:j + ws].reshape(b, ws * ws, c)
            q, k, v = lsa.qkv(tokens).reshape(b, ws * ws, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
            attn = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(c // heads), dim=-1)
            out[:, i:i + ws, j:j + ws] = (attn @ v).transpose(1, 2).reshape(b, ws, ws, c)
    return lsa.proj(out[:, :h, :w].reshape(b, n, c))


def test_locally_grouped_attention_matches_window_loop():
    torch.manual_seed(0)
    lsa = LocallyGroupedAttention(16, heads=2, window=7).double()
    x = torch.randn(2, 9 * 10, 16, dtype=torch.float64)
    torch.testing.assert_close(lsa(x, (9, 10)), explicit_window_attention(lsa, x, (9, 10)))


def test_twins_encoder_timm_names_and_output():
    enc = TwinsEncoder().eval()
    keys = enc.state_dict()
    assert sum(p.numel() for p in enc.parameters()) == 4_218_624
    assert keys["svt.blocks.0.1.attn.sr.weight"].shape == (128, 128, 8, 8)
    assert keys["svt.blocks.1.0.attn.qkv.weight"].shape == (768, 256)
    assert keys["svt.pos_block.1.proj.0.weight"].shape == (256, 1, 3, 3)
    assert keys["svt.norm.weight"].shape == (1024,)
    with torch.no_grad():
        assert enc(torch.rand(1, 3, 48, 64)).shape == (1, 256, 6, 8)


@pytest.mark.parametrize("kernel", [1, 3, 7, 15])
def test_depthwise_fast_routes_equal_the_convolution(kernel):
    """The SK block's depthwise convs take faster routes on the CPU (scale and shift for 1 x 1,
    channels-last for large kernels): the same values and gradients as the plain convolution."""
    from motion.models.sk import depthwise

    torch.manual_seed(kernel)
    conv = torch.nn.Conv2d(12, 12, kernel, padding=kernel // 2, groups=12).double()
    x = torch.randn(2, 12, 9, 11, dtype=torch.float64, requires_grad=True)
    fast = depthwise(conv, x)
    assert fast.is_contiguous()
    grads = torch.autograd.grad(fast.square().sum(), [x, conv.weight, conv.bias])
    plain = conv(x)
    torch.testing.assert_close(fast, plain)
    for a, b in zip(grads, torch.autograd.grad(plain.square().sum(), [x, conv.weight, conv.bias])):
        torch.testing.assert_close(a, b)
