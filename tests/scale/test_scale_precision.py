"""The precision / compile / memory-layout switches, run for real on the CPU (and on CUDA when present).

Tolerances, stated once:
- bf16 autocast vs float32: max |diff| <= BF16_RTOL x max |float32 value| (outputs) and
  BF16_GRAD_RTOL x max |float32 gradient| (gradients). bf16 keeps 8 mantissa bits (2^-8 = 0.4 %
  per rounding); measured here: outputs <= 0.8 %, gradients <= 2 % of the tensor's scale.
- compiled vs eager (float32): loss within 1e-4 relative, every gradient within COMPILE_GRAD_RTOL of
  its scale (the compiled graph fuses and re-associates sums; measured ~1e-6).
- channels_last vs contiguous logits: 1e-4 relative (different conv kernels, same arithmetic).
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from tanet_lightning.models import create_video_model
from tanet_lightning.models.temporal import (
    TEMPORAL_MODULES,
    create_temporal,
    temporal_aggregate,
    temporal_aggregate_plain,
)
from tanet_lightning.models.temporal.aggregation import _temporal_aggregate
from tanet_lightning.training.module import VideoClassificationModule

BF16_RTOL, BF16_GRAD_RTOL = 2e-2, 6e-2
COMPILE_GRAD_RTOL = 1e-3
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none on this machine)")
DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.gpu, CUDA])]


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| over max |b|: the error on the scale of the reference tensor."""
    return ((a.float() - b.float()).abs().max() / b.float().abs().max().clamp_min(1e-12)).item()


def tiny_tanet(temporal: str = "tam", frames: int = 4) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_video_model("resnet18", temporal, num_classes=8, num_frames=frames, dropout=0.0)


def grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


# ------------------------------------------------------------------------------------------------
# bf16 autocast


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", sorted(TEMPORAL_MODULES))
def test_bf16_autocast_through_every_temporal_module(name, device):
    torch.manual_seed(0)
    m = create_temporal(name, 16, 4).to(device).train()
    x = torch.randn(8, 16, 8, 8, device=device, requires_grad=True)
    y32 = m(x)
    params = [p for p in m.parameters()]
    g32 = torch.autograd.grad(y32.square().mean(), [x, *params])
    # under autocast a temporal module receives the bf16 output of the conv before it
    xb = x.detach().bfloat16().requires_grad_()
    with torch.autocast(device, dtype=torch.bfloat16):
        yb = m(xb)
    gb = torch.autograd.grad(yb.float().square().mean(), [xb, *params])
    assert yb.dtype == torch.bfloat16, f"{name} left bf16: {yb.dtype}"
    assert rel_err(yb, y32) <= BF16_RTOL, name
    for a, b in zip(gb, g32):
        assert torch.isfinite(a).all()
        assert rel_err(a, b) <= BF16_GRAD_RTOL, name


@pytest.mark.parametrize("device", DEVICES)
def test_bf16_autocast_tanet_train_step(device):
    """ResNet-18 TANet at 32x32: bf16 logits/loss close to float32, every gradient finite."""
    model = tiny_tanet().to(device)
    video = torch.randn(2, 4, 3, 32, 32, device=device)
    label = torch.tensor([1, 5], device=device)
    loss32 = F.cross_entropy(logits32 := model(video), label)
    loss32.backward()
    g32 = grads(model)
    model.zero_grad()
    with torch.autocast(device, dtype=torch.bfloat16):
        logits = model(video)
        loss = F.cross_entropy(logits, label)
    loss.backward()
    assert logits.dtype == torch.bfloat16
    assert rel_err(logits, logits32) <= BF16_RTOL
    assert loss.item() == pytest.approx(loss32.item(), rel=BF16_RTOL)
    for name, g in grads(model).items():
        assert torch.isfinite(g).all(), name
        assert g.dtype == torch.float32  # autocast keeps the parameters (and their grads) in float32
    assert rel_err(grads(model)["fc.weight"], g32["fc.weight"]) <= BF16_GRAD_RTOL


# ------------------------------------------------------------------------------------------------
# torch.compile


@pytest.mark.parametrize("taps, frames", [(1, 4), (3, 4), (5, 4), (5, 2), (3, 1)])
def test_compile_decomposition_equals_custom_op(taps, frames):
    """The plain-ops form used under torch.compile: same values and gradients as the custom op,
    including kernels wider than the clip (taps that read only zero padding)."""
    torch.manual_seed(0)
    x = torch.randn(2, frames, 6, 3, 3, requires_grad=True)
    c = torch.rand(2, frames, 6, taps, requires_grad=True)
    y_op, y_dec = _temporal_aggregate(x, c), temporal_aggregate_plain(x, c)
    torch.testing.assert_close(y_dec, y_op)
    g = torch.randn_like(y_op)
    torch.testing.assert_close(torch.autograd.grad(y_dec, (x, c), g), torch.autograd.grad(y_op, (x, c), g))


def test_eager_keeps_the_custom_op():
    """Eager mode (and so FLOP counting) still goes through the custom op, not the decomposition."""
    from torch.utils.flop_counter import FlopCounterMode

    x, c = torch.randn(1, 4, 8, 5, 5), torch.rand(1, 4, 8, 3)
    with FlopCounterMode(display=False) as fc:
        temporal_aggregate(x, c)
    assert fc.get_flop_counts()["Global"][torch.ops.tanet_lightning.temporal_aggregate] == 2 * x.numel() * 3


@pytest.mark.heavy  # torch.compile of two models: 6.2 s
@pytest.mark.parametrize("temporal", ["tam", "teinet"])
def test_compile_traces_tanet_without_graph_break(temporal):
    model = tiny_tanet(temporal)
    torch._dynamo.reset()
    explain = torch._dynamo.explain(model)(torch.randn(2, 4, 3, 32, 32))
    assert explain.graph_break_count == 0, explain.break_reasons
    assert explain.graph_count == 1


def compiled_vs_eager_step(backend: str, device: str = "cpu") -> None:
    """One forward+backward of ResNet-18 TANet, fullgraph-compiled vs eager: loss and gradients agree."""
    eager = tiny_tanet().to(device)
    compiled = copy.deepcopy(eager)
    torch._dynamo.reset()
    compiled.backbone.compile(backend=backend, fullgraph=True)  # what model.compile=true does (in place)
    video = torch.randn(2, 4, 3, 32, 32, device=device)
    label = torch.tensor([1, 5], device=device)
    losses = {}
    for key, m in (("eager", eager), ("compiled", compiled)):
        losses[key] = F.cross_entropy(m(video), label)
        losses[key].backward()
    assert losses["compiled"].item() == pytest.approx(losses["eager"].item(), rel=1e-4)
    ge, gc = grads(eager), grads(compiled)
    assert ge.keys() == gc.keys() and len(ge) > 60  # every parameter got a gradient through the graph
    for name in ge:
        assert rel_err(gc[name], ge[name]) <= COMPILE_GRAD_RTOL, name


def test_compile_aot_autograd_train_step_matches_eager():
    """The traced forward+backward graph (AOTAutograd, no code generation: seconds on a CPU)."""
    compiled_vs_eager_step("aot_eager")


@pytest.mark.slow
def test_compile_inductor_train_step_matches_eager():
    """The real inductor compile of the CPU (C++ code generation: about a minute on 2 cores)."""
    compiled_vs_eager_step("inductor")


@pytest.mark.gpu
@CUDA
def test_compile_inductor_train_step_matches_eager_cuda():
    compiled_vs_eager_step("inductor", "cuda")


def test_module_compile_switch_compiles_in_place_and_keeps_state_dict_keys():
    """`model.compile=true`: configure_model compiles the backbone once; checkpoint keys stay plain."""
    kwargs = dict(num_classes=8, num_frames=4, backbone="resnet18", temporal={"name": "tam"}, dropout=0.0)
    module = VideoClassificationModule(**kwargs, compile=True)
    keys = list(module.state_dict())
    module.configure_model()
    module.configure_model()  # Lightning may call it again (e.g. under strategies): no double compile
    assert module.net.backbone._compiled_call_impl is not None
    assert list(module.state_dict()) == keys and not any("_orig_mod" in k for k in keys)


# ------------------------------------------------------------------------------------------------
# channels_last


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("temporal", ["tam", "tsm", "c2d"])
def test_channels_last_gives_the_same_logits(temporal, device):
    kwargs = dict(num_classes=8, num_frames=4, backbone="resnet18", temporal={"name": temporal}, dropout=0.0)
    torch.manual_seed(0)
    plain = VideoClassificationModule(**kwargs).to(device).eval()
    torch.manual_seed(0)
    cl = VideoClassificationModule(**kwargs, channels_last=True).to(device).eval()
    assert cl.net.backbone.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    video = torch.randn(2, 4, 3, 32, 32, device=device)
    with torch.no_grad():
        torch.testing.assert_close(cl(video), plain(video), rtol=1e-4, atol=1e-4 * plain(video).abs().max().item())


@pytest.mark.parametrize("name", ["tam", "tanet_r", "teinet"])
def test_aggregation_keeps_channels_last(name):
    """Measured: a channels_last (N*T, C, H, W) input gives a channels_last output (strides
    (C*H*W, 1, W*C, C)), forward and backward; no silent copy back to the contiguous layout."""
    m = create_temporal(name, 16, 4)
    x = torch.randn(8, 16, 6, 5).contiguous(memory_format=torch.channels_last).requires_grad_()
    y = m(x)
    assert y.is_contiguous(memory_format=torch.channels_last) and not y.is_contiguous()
    assert y.stride() == (16 * 6 * 5, 1, 5 * 16, 16)
    y.backward(torch.randn_like(y))  # randn_like keeps the layout, as autograd's incoming grads do
    assert x.grad.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.heavy  # three trainings: 7.7 s in all
@pytest.mark.parametrize("precision, fused", [("32-true", True), ("bf16-mixed", False), ("16-mixed", False)])
def test_fused_optimizer_steps_with_gradient_clipping(make_cfg, precision, fused):
    """The optimizer configs ask for fused steps; Lightning's mixed-precision plugin refuses gradient
    clipping with a fused optimizer, so mixed precision trains with the unfused one, clipping included."""
    from tanet_lightning.train import train

    metrics, objects = train(make_cfg([f"trainer.precision={precision}", "trainer.limit_train_batches=2",
                                       "trainer.limit_val_batches=1", "test=false"]))
    optimizer = objects["trainer"].optimizers[0]
    assert bool(optimizer.defaults.get("fused")) is fused
    assert objects["trainer"].gradient_clip_val == 20 and objects["trainer"].global_step == 2
    assert torch.isfinite(torch.tensor(metrics["train/loss"]))
