"""TEA and GST (replace a ResNet block's 3x3 conv): the official formulations written out, their
initialisation, isolation between videos, memory layout, bf16, torch.compile and ONNX."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from tanet_lightning.models.gst import GSTConv
from tanet_lightning.models.tea import MEModule, ShiftModule, TEAConv

T = 4


def randomized(m: nn.Module, seed: int = 0) -> nn.Module:
    """Every parameter (BN gammas included) and BN statistic drawn at random (variances kept positive)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in [*m.named_parameters(), *m.named_buffers()]:
            if t.is_floating_point():
                t.copy_(torch.rand(t.shape, generator=g) + 0.5 if name.endswith("running_var")
                        else torch.randn(t.shape, generator=g))
    return m


def conv3x3(c_in: int = 32, c_out: int = 32, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)


def make(name: str, stride: int = 1, **kwargs) -> nn.Module:
    cls = {"tea": TEAConv, "gst": GSTConv}[name]
    return cls(conv3x3(stride=stride), T, **kwargs)


# ------------------------------------------------------------------------------------------------
# The official code's formulations, written out (loops over time, the full-size motion difference,
# GST on 5-D clips with Conv3d weights, as in Phoenix1327/tea-action-recognition and chenxuluo/GST-video)


def temporal_conv_loop(shift: ShiftModule, z: torch.Tensor) -> torch.Tensor:
    n, c = z.shape[0] // T, z.shape[1]
    w, z5 = shift.conv.weight.view(c, 3), z.view(n, T, *z.shape[1:])
    y = torch.zeros_like(z5)
    for t in range(T):
        for k in range(3):
            if 0 <= t + k - 1 < T:
                y[:, t] += w[:, k, None, None] * z5[:, t + k - 1]
    return y.view_as(z)


def me_official(me: MEModule, x: torch.Tensor) -> torch.Tensor:
    n = x.shape[0] // T
    b = me.bn1(me.conv1(x))
    b5, c5 = b.view(n, T, *b.shape[1:]), me.conv2(b).view(n, T, *b.shape[1:])
    diff = torch.zeros_like(b5)
    diff[:, :-1] = c5[:, 1:] - b5[:, :-1]
    y = torch.sigmoid(me.bn3(me.conv3(F.adaptive_avg_pool2d(diff.flatten(0, 1), 1)))) - 0.5
    return x + x * y


def tea_official(m: TEAConv, x: torch.Tensor) -> torch.Tensor:
    spx = torch.split(me_official(m.me, x), m.width, 1)
    out, sp = [], spx[0]
    for i in range(m.scale - 1):
        sp = spx[i] if i == 0 or m.stage else sp + spx[i]
        sp = F.relu(m.bns[i](m.convs[i](temporal_conv_loop(m.shifts[i], sp))))
        out.append(sp)
    last = temporal_conv_loop(m.shifts[-1], spx[-1])
    out.append(F.avg_pool2d(last, 3, m.convs[0].stride, 1) if m.stage else last)
    return torch.cat(out, 1)


def gst_official(m: GSTConv, x: torch.Tensor) -> torch.Tensor:
    n = x.shape[0] // T
    x5 = x.view(n, T, *x.shape[1:]).transpose(1, 2)  # the official network runs on (N, C, T, H, W)
    half = x5.shape[1] // m.beta
    left, right = (x5[:, :half], x5[:, half:]) if m.beta == 2 else (x5, x5)
    s = m.conv2.stride
    out1 = F.conv3d(left, m.conv2.weight.unsqueeze(2), stride=(1, *s), padding=(0, 1, 1))  # a 1x3x3 Conv3d
    out2 = F.conv3d(right, m.Tconv.weight, stride=(1, *s), padding=1)
    y = torch.cat((out1, out2), 1)
    return y.transpose(1, 2).reshape(n * T, *y.shape[1:2], *y.shape[-2:])


@pytest.mark.parametrize("stride", [1, 2])
def test_tea_is_the_official_formulation(stride):
    m = randomized(make("tea", stride)).eval()
    x = torch.randn(2 * T, 32, 8, 8)
    with torch.no_grad():
        y = m(x)
        # random weights make large values (~1e2) through the hierarchy: float32 rounding of the sums
        torch.testing.assert_close(y, tea_official(m, x), atol=1e-5 * y.abs().max().item(), rtol=1e-4)
    assert y.shape == (2 * T, 32, 8 // stride, 8 // stride)


@pytest.mark.parametrize("stride, beta", [(1, 2), (2, 2), (1, 1)])
def test_gst_is_the_official_formulation(stride, beta):
    m = randomized(make("gst", stride, beta=beta)).eval()
    x = torch.randn(2 * T, 32, 8, 8)
    with torch.no_grad():
        y = m(x)
        torch.testing.assert_close(y, gst_official(m, x), atol=1e-4, rtol=1e-5)
    assert y.shape == (2 * T, 32, 8 // stride, 8 // stride)
    # alpha=4: 3/4 of the output channels from the 2-D group, 1/4 from the 3-D group
    assert m.conv2.weight.shape == (24, 32 // beta, 3, 3) and m.Tconv.weight.shape == (8, 32 // beta, 3, 3, 3)


def test_initialisation_follows_the_official_code():
    conv = randomized(conv3x3())
    tea, gst = TEAConv(conv, T), GSTConv(conv, T)
    # TEA: temporal convs are identities, the last fragment's a TSM part shift; 3x3 convs the diagonal blocks
    for shift in tea.shifts[:-1]:
        assert torch.equal(shift.conv.weight.view(8, 3), torch.tensor([[0.0, 1.0, 0.0]]).expand(8, 3))
    last = tea.shifts[-1].conv.weight.view(8, 3)
    assert torch.equal(last[:4], torch.tensor([[0.0, 0.0, 1.0]]).expand(4, 3))  # read frame t+1
    assert torch.equal(last[4:], torch.tensor([[1.0, 0.0, 0.0]]).expand(4, 3))  # read frame t-1
    for i, c in enumerate(tea.convs):
        assert torch.equal(c.weight, conv.weight[8 * i:8 * (i + 1), 8 * i:8 * (i + 1)])
    assert tea.me.conv1.out_channels == 32 // 16 and tea.me.conv2.groups == 2
    # GST: the 2-D group is the ImageNet conv sliced (first 3/4 of the outputs, first half of the inputs)
    assert torch.equal(gst.conv2.weight, conv.weight[:24, :16])


@pytest.mark.parametrize("name, stride", [("tea", 1), ("tea", 2), ("gst", 1), ("gst", 2)])
def test_no_leakage_between_videos(name, stride):
    m = randomized(make(name, stride)).eval()
    x = torch.randn(3 * T, 32, 6, 6)
    x2 = x.clone()
    x2[T:2 * T] += 10 * torch.randn(T, 32, 6, 6)  # change video 1 only
    with torch.no_grad():
        y, y2 = m(x), m(x2)
        # the module mixes frames (the test can fail): a changed frame moves its neighbours' outputs
        x3 = x.clone()
        x3[1] += 10
        assert not torch.allclose(m(x3)[[0, 2]], y[[0, 2]], atol=1e-3)
    assert not torch.allclose(y[T:2 * T], y2[T:2 * T])
    torch.testing.assert_close(y[:T], y2[:T], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(y[2 * T:], y2[2 * T:], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["tea", "gst"])
def test_channels_last_and_bf16(name):
    torch.manual_seed(0)
    m = make(name, 2).train()
    x = torch.randn(2 * T, 32, 8, 8, requires_grad=True)
    y = m(x)
    g32 = torch.autograd.grad(y.square().mean(), [x, *m.parameters()])
    # channels_last frames in, channels_last frames out (forward and backward), the same values
    xc = x.detach().contiguous(memory_format=torch.channels_last).requires_grad_()
    yc = m(xc)
    assert yc.is_contiguous(memory_format=torch.channels_last) and not yc.is_contiguous()
    torch.testing.assert_close(yc, y, atol=1e-5, rtol=1e-5)
    yc.backward(torch.randn_like(yc))
    assert xc.grad.is_contiguous(memory_format=torch.channels_last)
    # bf16 autocast: a module after a conv receives bf16 and stays in bf16, within bf16's rounding
    xb = x.detach().bfloat16().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        yb = m(xb)
    gb = torch.autograd.grad(yb.float().square().mean(), [xb, *m.parameters()])
    assert yb.dtype == torch.bfloat16
    assert (yb.float() - y).abs().max() <= 2e-2 * y.abs().max()
    for a, b in zip(gb, g32):
        assert torch.isfinite(a).all() and (a.float() - b).abs().max() <= 6e-2 * b.abs().max()


@pytest.mark.parametrize("name", ["tea", "gst"])
def test_compiles_as_one_graph(name):
    """fullgraph=True fails on any graph break; aot_eager traces forward and backward without codegen."""
    torch.manual_seed(0)
    m = make(name, 2).train()
    x = torch.randn(2 * T, 32, 8, 8, requires_grad=True)
    torch._dynamo.reset()
    compiled = torch.compile(copy.deepcopy(m), backend="aot_eager", fullgraph=True)
    y = m(x)
    g = torch.autograd.grad(y.square().sum(), x)
    yc = compiled(x)
    torch.testing.assert_close(yc, y)
    torch.testing.assert_close(torch.autograd.grad(yc.square().sum(), x), g)


@pytest.mark.parametrize("kwargs, match", [
    (dict(scale=3), "scale=3 must"), (dict(scale=1), "scale must be at least 2"), (dict(reduction=64), "reduction"),
])
def test_bad_tea_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make("tea", **kwargs)


@pytest.mark.parametrize("conv, kwargs, match", [
    (conv3x3(), dict(alpha=3), "alpha=3"), (conv3x3(), dict(beta=4), "beta=4"),
    (nn.Conv2d(32, 32, 3, padding=1, groups=4, bias=False), {}, "ResNeXt"),
    (nn.Conv2d(32, 32, 1, bias=False), {}, "3x3"),
])
def test_bad_gst_arguments_raise(conv, kwargs, match):
    with pytest.raises(ValueError, match=match):
        GSTConv(conv, T, **kwargs)


def test_tea_refuses_what_it_cannot_replace():
    with pytest.raises(ValueError, match="C -> C"):
        TEAConv(conv3x3(32, 64), T)
    with pytest.raises(ValueError, match="ResNeXt"):
        TEAConv(nn.Conv2d(32, 32, 3, padding=2, dilation=2, bias=False), T)
