"""TEA and GST (replace a ResNet block's 3x3 conv): the official formulations written out, their
initialisation and key names, isolation between videos, memory layout, bf16, torch.compile, ONNX, the
complexity rows beside their papers and a short training of each in the main job."""

from __future__ import annotations

import copy
import warnings

import pytest
import timm
import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.models.res2net import Bottle2neck

from tanet_lightning.analysis.complexity import NEWER, measure
from tanet_lightning.models import create_video_model
from tanet_lightning.models.flops import count_exact
from tanet_lightning.models.temporal.gst import OFFICIAL_KEYS as GST_KEYS
from tanet_lightning.models.temporal.gst import GSTConv
from tanet_lightning.models.temporal.tea import OFFICIAL_KEYS as TEA_KEYS
from tanet_lightning.models.temporal.tea import MEModule, ShiftModule, TEAConv
from tanet_lightning.models.video import VideoClassifier
from tanet_lightning.training.module import VideoClassificationModule
from weights import randomized

T = 4



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
    """fullgraph=True fails on any graph break (the eager backend: dynamo's capture without codegen)."""
    torch.manual_seed(0)
    m = make(name, 2).train()
    x = torch.randn(2 * T, 32, 8, 8)
    torch._dynamo.reset()
    compiled = torch.compile(copy.deepcopy(m), backend="eager", fullgraph=True)
    torch.testing.assert_close(compiled(x), m(x))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tea", "gst"])
def test_compiled_forward_and_backward_match_eager(name):
    """aot_eager traces forward and backward as one graph each (TEA: ~5 s on 2 cores)."""
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


@pytest.mark.parametrize("name", ["tea", "gst"])
def test_onnx_export_of_the_module_keeps_a_dynamic_batch(name, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    m = randomized(make(name, 2)).eval()
    path = tmp_path / f"{name}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about the whole-clip check (constant for a given T)
        torch.onnx.export(m, (torch.randn(2 * T, 32, 8, 8),), str(path), input_names=["frames"],
                          output_names=["out"], dynamic_axes={"frames": {0: "batch"}, "out": {0: "batch"}},
                          opset_version=17, dynamo=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for videos in (1, 3):
        x = torch.randn(videos * T, 32, 8, 8)
        with torch.no_grad():
            want = m(x).numpy()
        got = session.run(None, {"frames": x.numpy()})[0]
        assert got.shape == want.shape and abs(got - want).max() <= 1e-4 * abs(want).max()


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


# ------------------------------------------------------------------------------------------------
# In the network: the registry, key names, complexity, ONNX, training


def official_block_keys(name: str, block: nn.Module) -> list[str]:
    """The state-dict keys of the official code's block of the same widths (from ops/tea50_8f.py, GST.py)."""
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    keys = ["conv1.weight", *(f"bn1.{k}" for k in bn), "conv3.weight", *(f"bn3.{k}" for k in bn)]
    if block.downsample is not None:
        keys += ["downsample.0.weight", *(f"downsample.1.{k}" for k in bn)]
    if name == "gst":
        return keys + ["conv2.weight", "Tconv.weight", *(f"bn2.{k}" for k in bn)]
    scale = block.conv2.scale
    keys += ["me.conv1.weight", *(f"me.bn1.{k}" for k in bn), "me.conv2.weight", "me.conv3.weight",
             *(f"me.bn3.{k}" for k in bn), *(f"shifts.{i}.conv.weight" for i in range(scale))]
    # + the block's bn2 after the replaced conv: the official Res2Net block has none (see TEAConv)
    return keys + [f"{p}.{i}.{k}" for i in range(scale - 1) for p, ks in (("convs", ("weight",)), ("bns", bn))
                   for k in ks]


@pytest.mark.parametrize("name", ["tea", "gst"])
def test_every_resnet_block_gets_one_and_official_keys_map_onto_ours(name):
    with torch.device("meta"):
        model = create_video_model("resnet50", name, 174, 8)
    module = {"tea": TEAConv, "gst": GSTConv}[name]
    blocks = [m for m in model.backbone.modules() if isinstance(getattr(m, "conv2", None), module)]
    assert len(blocks) == 16
    key_map = {"tea": TEA_KEYS, "gst": GST_KEYS}[name]
    for block in (blocks[0], blocks[1]):  # a strided block with a shortcut conv, and a plain one
        mapped = set()
        for key in official_block_keys(name, block):
            prefix = next((p for p in key_map if key.startswith(p)), None)
            mapped.add(key_map[prefix] + key[len(prefix):] if prefix else key)
        ours = set(block.state_dict())
        assert mapped == ours - ({f"bn2.{k}" for k in ("weight", "bias", "running_mean", "running_var",
                                                       "num_batches_tracked")} if name == "tea" else set())


@pytest.mark.parametrize("name", ["tea", "gst"])
def test_small_network_trains_every_parameter(name):
    torch.manual_seed(0)
    model = create_video_model("resnet18", name, 5, T, dropout=0.0).train()
    for m in model.modules():  # timm zero-inits each block's last BN gamma, which would block the gradients
        if isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
    model(torch.randn(2, T, 3, 32, 32)).square().sum().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", ["tea", "gst"])
def test_model_channels_last_switch(name):
    """`model.channels_last=true` converts every conv (GST's 3x3x3 to channels_last_3d): the same logits."""
    kwargs = dict(num_classes=5, num_frames=T, backbone="resnet18", temporal={"name": name}, dropout=0.0)
    torch.manual_seed(0)
    plain = VideoClassificationModule(**kwargs).eval()
    torch.manual_seed(0)
    cl = VideoClassificationModule(**kwargs, channels_last=True).eval()
    video = torch.randn(2, T, 3, 32, 32)
    with torch.no_grad():
        want = plain(video)
        torch.testing.assert_close(cl(video), want, rtol=1e-4, atol=1e-4 * want.abs().max().item())


class OfficialTEABlock(nn.Module):
    """The official TEA block (Res2Net-50 26w4s + ME + temporal convs, ops/tea50_8f.py) over a timm
    Bottle2neck's children: only to count the paper's network."""

    def __init__(self, b: Bottle2neck, num_frames: int):
        super().__init__()
        self.b, self.me = b, MEModule(b.conv1.out_channels, num_frames)
        self.shifts = nn.ModuleList(ShiftModule(b.width, num_frames) for _ in range(b.scale))

    def forward(self, x):
        b = self.b
        spx = torch.split(self.me(b.relu(b.bn1(b.conv1(x)))), b.width, 1)
        out, sp = [], spx[0]
        for i, (conv, bn) in enumerate(zip(b.convs, b.bns)):
            sp = b.relu(bn(conv(self.shifts[i](spx[i] if i == 0 or b.is_first else sp + spx[i]))))
            out.append(sp)
        last = self.shifts[-1](spx[-1])
        out.append(b.pool(last) if b.pool is not None else last)
        y = b.bn3(b.conv3(torch.cat(out, 1)))
        return b.relu(y + (b.downsample(x) if b.downsample is not None else x))


def test_complexity_rows_beside_their_papers():
    """ResNet-50, 8 x 224^2 (both papers count there), SSv1's 174 classes. GST: 29.18 GFLOPs against 29.5,
    21.04M parameters against 21.0M. TEA: 21.09 GFLOPs against 35 (the paper's network is Res2Net-50:
    the next test)."""
    gst, tea = measure(["GST", "TEA"], num_classes=174)
    assert (gst.size, gst.macs, gst.params) == (224, 29_178_388_480, 21_035_246)
    assert abs(gst.flops_g - NEWER["GST"][1].gflops) / NEWER["GST"][1].gflops <= 0.02
    assert abs(gst.params_m - NEWER["GST"][1].mparams) / NEWER["GST"][1].mparams <= 0.02
    assert (tea.size, tea.macs, tea.params) == (224, 21_088_849_920, 14_853_618)


@pytest.mark.slow
def test_the_paper_counts_tea_on_res2net50():
    """The official TEA network (Res2Net-50 26w4s with ME and temporal convs) counts 34.7 GFLOPs at
    8 x 224^2, within 2 % of the paper's 35: the gap of the ResNet-50 row is the backbone, not the counting."""
    with torch.device("meta"):
        net = timm.create_model("res2net50_26w_4s", num_classes=0)
        for layer in (net.layer1, net.layer2, net.layer3, net.layer4):
            for i, block in enumerate(layer):
                layer[i] = OfficialTEABlock(block, 8)
        macs, _, _ = count_exact(VideoClassifier(net, 174, 8, 0.0), (1, 8, 3, 224, 224))
    assert round(macs / 1e9, 1) == 34.7
    assert abs(macs / 1e9 - NEWER["TEA"][1].gflops) / NEWER["TEA"][1].gflops <= 0.02


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tea", "gst"])
def test_onnx_export_of_the_network_keeps_a_dynamic_batch(name, tmp_path):
    """ResNet-18 with the module in every block, as `export` writes it (3-8 s each on 2 cores)."""
    ort = pytest.importorskip("onnxruntime")
    model = randomized(create_video_model("resnet18", name, 5, T, dropout=0.0)).eval()
    path = tmp_path / f"{name}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about the clip-length checks (constant for a given T)
        torch.onnx.export(model, (torch.randn(2, T, 3, 32, 32),), str(path), input_names=["video"],
                          output_names=["logits"], dynamic_axes={"video": {0: "batch"}, "logits": {0: "batch"}},
                          opset_version=17, dynamo=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 3):
        video = torch.randn(batch, T, 3, 32, 32)
        with torch.no_grad():
            want = model(video).numpy()
        got = session.run(None, {"video": video.numpy()})[0]
        assert got.shape == (batch, 5) and abs(got - want).max() <= 1e-4 * abs(want).max()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tea", "gst"])
def test_trains_in_the_main_job(name, make_cfg):
    """`python -m tanet_lightning.train model/temporal=NAME`, two steps, on the tiny synthetic set."""
    from tanet_lightning.train import train

    cfg = make_cfg([f"model/temporal={name}", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1",
                    "test=false", "torch_threads=1"])
    metrics, objects = train(cfg)
    net = objects["model"].net
    assert sum(isinstance(m, {"tea": TEAConv, "gst": GSTConv}[name]) for m in net.modules()) == 8  # ResNet-18
    assert "val/top1" in metrics and torch.isfinite(torch.as_tensor(float(metrics["train/loss_epoch"])))
