"""TAda2D: identity at step 0, the official kernel-calibration formulation, isolation, layouts, precision,
compile, ONNX, and its complexity row against its paper."""

import copy
import functools
import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.models.resnet import BasicBlock, Bottleneck, ResNet

from tanet_lightning.analysis.complexity import NEWER, measure
from tanet_lightning.models import create_video_model
from tanet_lightning.models.insertion import ConvReplacedBasicBlock, ConvReplacedBottleneck, replace_convs
from tanet_lightning.models.temporal.tada import TAdaConv2d, tada
from tanet_lightning.training.module import frozen_batchnorms
from tanet_lightning.training.sync_bn import CPUSyncBatchNorm, convert_sync_batchnorm
from weights import randomized as random_weights

T = 4


def randomized(m: nn.Module, seed: int = 0) -> nn.Module:
    return random_weights(m, seed, scale=0.2)  # small weights: deep random stacks stay in range


@functools.cache
def random_backbone(block: str) -> nn.Module:
    """A small timm ResNet (2, 1, 1, 1 blocks: stride-1 and downsampling blocks in every form), random weights."""
    torch.manual_seed(0)
    return randomized(ResNet({"basic": BasicBlock, "bottleneck": Bottleneck}[block], [2, 1, 1, 1])).eval()


def random_tada(c_in: int = 8, c_out: int = 8, stride: int = 1, groups: int = 1, **kwargs) -> TAdaConv2d:
    conv = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, groups=groups, bias=False)
    return randomized(tada(conv, T, ratio=2, **kwargs)).eval()


@pytest.mark.parametrize("backbone", ["basic", "bottleneck"])
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_tada_at_init_is_the_2d_network_bit_for_bit(backbone, mode):
    """Random weights everywhere (BN gammas too) in the 2-D network; TAda2D's own parameters at their
    init: calibration exactly 1 and the pooling branch exactly 0, in eval and in train mode (batch
    statistics), so ImageNet weights give the ImageNet network at step 0."""
    plain = copy.deepcopy(random_backbone(backbone))
    patched = copy.deepcopy(plain)
    replace_convs(patched, "resnet", functools.partial(tada, num_frames=T))
    missing = set(patched.state_dict()) - set(plain.state_dict())
    assert missing and all(".conv2.rf." in k or ".conv2.avgpool_bn." in k for k in missing)
    plain.train(mode == "train")
    patched.train(mode == "train")
    x = torch.randn(2 * T, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(plain.forward_features(x), patched.forward_features(x))


def test_partial_bn_and_sync_bn_keep_the_branch():
    """``model.freeze_bn`` freezes pretrained BatchNorm2d layers, not TAda2D's new zero-initialised ones;
    ``model.sync_bn`` converts them and the network computes the same."""
    net = copy.deepcopy(random_backbone("bottleneck"))
    replace_convs(net, "resnet", functools.partial(tada, num_frames=T))
    randomized(net).eval()
    new = [m for m in net.modules() if isinstance(m, TAdaConv2d)]
    frozen = {id(b) for b in frozen_batchnorms(net)}
    assert new and not any(id(b) in frozen for m in new for b in (m.avgpool_bn, m.rf.bn))
    synced = convert_sync_batchnorm(copy.deepcopy(net), "cpu")
    assert all(isinstance(m.avgpool_bn, CPUSyncBatchNorm) for m in synced.modules() if isinstance(m, TAdaConv2d))
    x = torch.randn(2 * T, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(synced.eval().forward_features(x), net.forward_features(x))


@pytest.mark.parametrize("cal_dim", ["cin", "cout"])
@pytest.mark.parametrize("stride,groups", [(1, 1), (2, 1), (1, 4)])
def test_tada_equals_the_official_calibrated_kernels(cal_dim, stride, groups):
    """Official TAdaConv2d: one kernel per (video, frame), ``alpha_t * W`` on the input (cin) or output
    (cout) channels, run as a grouped conv with N*T groups. Ours scales the frames instead."""
    m = random_tada(stride=stride, groups=groups, cal_dim=cal_dim)
    x = torch.randn(3 * T, 8, 9, 9)
    with torch.no_grad():
        alpha = m.calibration(x.view(3, T, 8, 9, 9))[..., 0, 0]  # (N, T, C)
        assert not torch.allclose(alpha, torch.ones_like(alpha))
        w = m.weight  # (O, I/groups, 3, 3)
        if cal_dim == "cin":  # output channel o of group g reads input channels g*C/groups + i
            a = alpha.reshape(3 * T, groups, 8 // groups).repeat_interleave(8 // groups, dim=1)  # (NT, O, C/g)
            kernels = a[..., None, None] * w
        else:
            kernels = alpha.reshape(3 * T, 8, 1, 1, 1) * w
        want = F.conv2d(x.reshape(1, -1, 9, 9), kernels.reshape(-1, 8 // groups, 3, 3), stride=stride, padding=1,
                        groups=3 * T * groups).view(3 * T, 8, *(-(-9 // stride),) * 2)
        torch.testing.assert_close(m(x), want, rtol=1e-5, atol=1e-5)


def test_pooling_branch_is_avgpool3d_then_bn():
    """AvgPool3d((3, 1, 1), stride 1, padding (1, 0, 0)) of the official block: zero frames at the ends,
    divisor 3 everywhere."""
    m = random_tada()
    y = torch.randn(2 * T, 8, 5, 5)
    y5 = y.view(2, T, 8, 5, 5).transpose(1, 2)
    pooled = F.avg_pool3d(y5, (3, 1, 1), stride=1, padding=(1, 0, 0)).transpose(1, 2).reshape_as(y)
    with torch.no_grad():
        torch.testing.assert_close(m.norm_branch(y), m.avgpool_bn(pooled))
    assert random_tada(pool_kernel_size=None).norm_branch(y) is None


def test_no_leakage_between_videos():
    m = random_tada()
    x = torch.randn(3 * T, 8, 6, 6)
    x2 = x.clone()
    x2[T:2 * T] += 10 * torch.randn(T, 8, 6, 6)  # change video 1 only
    with torch.no_grad():
        y, y2 = m(x), m(x2)
        b, b2 = m.norm_branch(y), m.norm_branch(y2)
        frame = F.conv2d(x, m.weight, padding=1)
    assert not torch.allclose(y, frame, atol=1e-3)  # the calibration does act: the test can fail
    assert not torch.allclose(y[T:2 * T], y2[T:2 * T])
    for out, out2 in ((y, y2), (b, b2)):
        torch.testing.assert_close(out[:T], out2[:T], rtol=0, atol=1e-5)
        torch.testing.assert_close(out[2 * T:], out2[2 * T:], rtol=0, atol=1e-5)


def test_frames_change_the_output_in_order():
    """The calibration reads neighbouring frames: swapping two frames changes a third one's output."""
    m = random_tada()
    x = torch.randn(T, 8, 6, 6)
    with torch.no_grad():
        y, y2 = m(x), m(x[[0, 2, 1, 3]])
    assert not torch.allclose(y[3], y2[3])


def test_channels_last_and_bf16():
    m = random_tada(stride=2)
    x = torch.randn(2 * T, 8, 10, 10)
    xc = x.contiguous(memory_format=torch.channels_last).requires_grad_()
    with torch.no_grad():
        y = m(x)
    yc = m(xc)
    assert yc.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(yc, y, rtol=1e-4, atol=1e-4)
    yc.sum().backward()
    assert xc.grad.is_contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        yb = m(x.bfloat16())
    assert yb.dtype == torch.bfloat16
    assert (yb.float() - y).abs().max() <= 2e-2 * y.abs().max()
    with torch.no_grad():
        yb2 = copy.deepcopy(m).bfloat16()(x.bfloat16())  # a bf16 model, no autocast
    assert yb2.dtype == torch.bfloat16 and (yb2.float() - y).abs().max() <= 3e-2 * y.abs().max()


def test_gradients_reach_every_parameter():
    m = tada(nn.Conv2d(8, 8, 3, padding=1, bias=False), T, ratio=2).train()
    nn.init.ones_(m.avgpool_bn.weight)  # zero gamma blocks the branch's gradient at step 0 by design
    nn.init.normal_(m.rf.b.weight)  # and a zero b blocks a's and g's
    x = torch.randn(2 * T, 8, 5, 5, requires_grad=True)
    y = m(x)
    (y.square().sum() + m.norm_branch(y).square().sum()).backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def patched_blocks() -> nn.Module:
    """A basic and a bottleneck block (64 channels in, stride 2) with TAda2D and random weights: the hot
    path of a TAda2D network, as ``replace_convs`` builds it."""
    torch.manual_seed(0)
    blocks = []
    kinds = ((BasicBlock, ConvReplacedBasicBlock, 64), (Bottleneck, ConvReplacedBottleneck, 16))
    for block_type, wrapper, width in kinds:
        down = nn.Sequential(nn.Conv2d(64, 64, 1, stride=2), nn.BatchNorm2d(64))
        block = block_type(64, width, stride=2, downsample=down)
        block.conv2 = tada(block.conv2, T)
        blocks.append(wrapper(block))
    return randomized(nn.Sequential(*blocks)).eval()


def test_blocks_compile_without_graph_breaks():
    torch._dynamo.reset()
    explanation = torch._dynamo.explain(patched_blocks())(torch.randn(2 * T, 64, 16, 16))
    assert explanation.graph_break_count == 0 and explanation.graph_count == 1, explanation.break_reasons


def test_blocks_export_to_onnx_with_a_dynamic_batch(tmp_path):
    """The frame batch is (clips x T): the exported graph must not freeze the number of clips (the
    official grouped conv would, with N*T groups). A whole model's export: ``slow`` test below."""
    check_onnx(patched_blocks(), (64, 16, 16), tmp_path / "blocks.onnx", frames=True)


@pytest.mark.slow
def test_model_exports_to_onnx_with_a_dynamic_batch(tmp_path):
    model = randomized(create_video_model("resnet18", "tada", 5, T, dropout=0.0)).eval()
    check_onnx(model, (T, 3, 32, 32), tmp_path / "tada.onnx", frames=False)


def check_onnx(model: nn.Module, shape: tuple[int, ...], path, frames: bool) -> None:
    """Export with batch 2, run onnxruntime with batches 1 and 3 (x T frames when ``frames``)."""
    ort = pytest.importorskip("onnxruntime")
    per = T if frames else 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.randn(2 * per, *shape),), str(path), input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, opset_version=17, dynamo=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 3):
        x = torch.randn(batch * per, *shape)
        with torch.no_grad():
            want = model(x).numpy()
        got = session.run(None, {"x": x.numpy()})[0]
        assert got.shape == want.shape and abs(got - want).max() <= 1e-4 * abs(want).max()


@pytest.mark.slow
def test_compiled_fullgraph_matches_eager_forward_and_backward():
    torch._dynamo.reset()
    model = randomized(create_video_model("resnet18", "tada", 5, T, dropout=0.0)).train()
    compiled = torch.compile(copy.deepcopy(model), fullgraph=True)
    video = torch.randn(2, T, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    loss, loss_c = model(video).square().mean(), compiled(video).square().mean()
    loss.backward()
    loss_c.backward()
    torch.testing.assert_close(loss_c, loss, rtol=1e-4, atol=1e-6)
    largest = max(p.grad.abs().max() for p in model.parameters())
    for (name, p), pc in zip(model.named_parameters(), compiled.parameters()):
        # + 1e-5 of the largest gradient: rf.a.bias feeds a train-mode BN, so its gradient is 0 up to
        # rounding in both (measured: differences up to 1.3e-6 of the largest gradient over 4 inputs)
        assert (pc.grad - p.grad).abs().max() <= 1e-3 * p.grad.abs().max() + 1e-5 * largest, name


def test_complexity_row_beside_its_paper():
    """ResNet-50, 8 x 256^2 (the official test crop), 400 classes: 42.99 GFLOPs against the paper's 43
    (its K400 table, per view); 27.49M parameters (the paper gives none)."""
    r = measure(["TAda2D"])[0]
    assert (r.size, r.macs, r.params) == (256, 42_990_414_592, 27_485_472)
    reported = NEWER["TAda2D"][1]
    assert abs(r.flops_g - reported.gflops) / reported.gflops <= 0.02
    assert ("K400", 76.7, 92.6) in reported.results
