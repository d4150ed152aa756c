"""Temporal modules: TAM and the paper's Table 2 baselines, written like a timm layer file.

Every module here maps a frame batch ``(N*T, C, H, W)`` to a tensor of the same shape, where the rows
are grouped per video, frame-major inside a video (row ``n*T + t``). ``T`` is a constructor argument
(``num_frames``), never guessed from the input: a clip of another length must be rejected where the
clip is still 5-D (``VideoClassifier``), because ``(2*8)`` rows and ``(1*16)`` rows look the same here.

All factories here share one signature, ``factory(channels, num_frames, **kwargs) -> nn.Module``, so the
block-insertion utility (``insertion.py``) can place any of them anywhere. Modules that replace a block's
3x3 conv (placement ``replace_conv``: TAda2D, TEA, GST, each in its own file) take the conv instead,
``factory(conv: nn.Conv2d, num_frames, **kwargs) -> nn.Module``; their files import ``fit``, never this one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.flop_counter import register_flop_formula

from .fit import check_frame_batch
from .gst import GSTConv
from .tada import tada
from .tea import TEAConv

__all__ = [
    "TAM",
    "TemporalAdaptiveModule",
    "LocalBranch",
    "GlobalBranch",
    "SEGate",
    "TemporalShift",
    "TemporalAvgPool",
    "TemporalConv",
    "TEIModule",
    "NonLocalBlock",
    "temporal_aggregate",
    "temporal_aggregate_plain",
    "plain_aggregation",
    "TEMPORAL",
    "TEMPORAL_MODULES",
    "CONV_MODULES",
    "PLACEMENTS",
    "Reported",
    "TemporalSpec",
    "temporal_spec",
    "create_temporal",
    "create_conv_temporal",
]


# ------------------------------------------------------------------------------------------------
# Argument checks: fail at construction, name the argument and the allowed values.


def _check_positive_int(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _check_kernel_size(name: str, k: int) -> None:
    _check_positive_int(name, k)
    if k % 2 == 0:
        raise ValueError(
            f"{name} must be odd (1, 3, 5, ...) so zero padding {name}//2 keeps T unchanged; got {k}"
        )


def _check_divides(name: str, divisor: int, channels: int) -> None:
    _check_positive_int(name, divisor)
    if channels % divisor:
        raise ValueError(
            f"{name}={divisor} must divide the channel count {channels} "
            f"(allowed: divisors of {channels}, e.g. {[d for d in (1, 2, 4, 8, 16) if channels % d == 0]})"
        )


def _frames(x: torch.Tensor, num_frames: int, channels: int | None = None) -> int:
    """Number of videos N in an (N*T, C, H, W) batch; a clear error instead of a silent re-split."""
    if x.dim() != 4:
        raise ValueError(f"expected a frame batch (N*T, C, H, W), got shape {tuple(x.shape)}")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"module built for {channels} channels got input with {x.shape[1]}")
    return check_frame_batch(x.shape[0], num_frames)


# ------------------------------------------------------------------------------------------------
# The aggregation  Y[n,t,c] = sum_k coeff[n,t,c,k] * X[n, t+k-K//2, c]  (zero padded in time).
#
# TAM's importance map V and kernel Theta fold into this one small (N, T, C, K) coefficient computed
# on the pooled descriptor, so the full-size tensor is read K times and Z = V*X is never stored. It is
# a custom op for two reasons: the backward is written out (no K full-size temporaries kept for
# autograd), and the FLOP counter can charge it K multiply-adds per output element, which is how the
# paper counts the adaptive convolution (reference_impl.md 8.2).


def _shift_ranges(k: int, pad: int, t: int) -> tuple[slice, slice] | None:
    """(dst, src) time slices for tap k: dst frame t reads src frame t + k - pad."""
    s = k - pad
    if abs(s) >= t:
        return None
    if s >= 0:
        return slice(0, t - s), slice(s, t)
    return slice(-s, t), slice(0, t + s)


@torch.library.custom_op("tanet_lightning::temporal_aggregate", mutates_args=())
def _temporal_aggregate(x: torch.Tensor, coeff: torch.Tensor) -> torch.Tensor:
    t, k_taps = x.shape[1], coeff.shape[-1]
    pad = k_taps // 2
    w = coeff.to(x.dtype)[..., None, None]  # (N, T, C, K, 1, 1): broadcast over H, W
    y = x * w[:, :, :, pad]
    for k in range(k_taps):
        r = _shift_ranges(k, pad, t)
        if k == pad or r is None:
            continue
        dst, src = r
        y[:, dst].addcmul_(x[:, src], w[:, dst, :, k])
    return y


@_temporal_aggregate.register_fake
def _(x, coeff):
    return torch.empty_like(x)


def _aggregate_setup(ctx, inputs, output):
    ctx.save_for_backward(*inputs)


def _aggregate_backward(ctx, grad):
    x, coeff = ctx.saved_tensors
    t, k_taps = x.shape[1], coeff.shape[-1]
    pad = k_taps // 2
    w = coeff.to(x.dtype)[..., None, None]
    grad_x = grad_c = None
    if ctx.needs_input_grad[0]:
        grad_x = grad * w[:, :, :, pad]
        for k in range(k_taps):
            r = _shift_ranges(k, pad, t)
            if k == pad or r is None:
                continue
            dst, src = r
            grad_x[:, src].addcmul_(grad[:, dst], w[:, dst, :, k])
    if ctx.needs_input_grad[1]:
        gc = torch.zeros(coeff.shape, dtype=torch.float32, device=coeff.device)
        for k in range(k_taps):
            r = _shift_ranges(k, pad, t)
            if r is None:
                continue
            dst, src = r
            # sum over H, W of grad * shifted x (mul + sum measured 3-6x faster than einsum on CPU here)
            gc[:, dst, :, k] = (grad[:, dst] * x[:, src]).sum(dim=(-2, -1), dtype=torch.float32)
        grad_c = gc.to(coeff.dtype)
    return grad_x, grad_c


_temporal_aggregate.register_autograd(_aggregate_backward, setup_context=_aggregate_setup)


@register_flop_formula(torch.ops.tanet_lightning.temporal_aggregate)
def _aggregate_flops(x_shape, coeff_shape, *args, out_shape=None, **kwargs) -> int:
    # FlopCounterMode counts 2 FLOPs per multiply-add; K multiply-adds per output element
    return 2 * math.prod(x_shape) * coeff_shape[-1]


def temporal_aggregate_plain(x: torch.Tensor, coeff: torch.Tensor) -> torch.Tensor:
    """The same aggregation written with plain ops (zero pad in time, K shifted slices, multiplies, adds).

    Used where the custom op cannot be: ONNX export (every op here has an ONNX equivalent;
    ``plain_aggregation()``) and torch.compile (inductor cannot see inside the custom op and would run it
    as an opaque call; in plain ops it fuses into one pointwise kernel and autograd derives the
    backward). Eager mode keeps the custom op: its hand-written backward stores no K full-size
    temporaries, and the FLOP counter charges it (FlopCounterMode runs eagerly).
    """
    t, k_taps = x.shape[1], coeff.shape[-1]
    pad = k_taps // 2
    w = coeff.to(x.dtype)[..., None, None]  # (N, T, C, K, 1, 1)
    xp = F.pad(x, (0, 0, 0, 0, 0, 0, pad, pad))  # (N, T + 2*pad, C, H, W): output t reads padded t + k
    y = xp[:, 0:t] * w[:, :, :, 0]
    for k in range(1, k_taps):
        y = y + xp[:, k:k + t] * w[:, :, :, k]
    return y


_PLAIN_AGGREGATION = False


def _taps(v: torch.Tensor, k: int) -> torch.Tensor:
    """(..., T) -> (..., T, K): entry [t, j] = v[t + j - K//2], zero outside the clip."""
    vp = F.pad(v, (k // 2, k // 2))
    if _PLAIN_AGGREGATION:  # ONNX has no unfold with a dynamic batch; K slices give the same values
        t = v.shape[-1]
        return torch.stack([vp[..., j:j + t] for j in range(k)], dim=-1)
    return vp.unfold(-1, k, 1)


@contextmanager
def plain_aggregation():
    """Within this block every temporal aggregation uses ``temporal_aggregate_plain`` (for ONNX export)."""
    global _PLAIN_AGGREGATION
    previous, _PLAIN_AGGREGATION = _PLAIN_AGGREGATION, True
    try:
        yield
    finally:
        _PLAIN_AGGREGATION = previous


def temporal_aggregate(x: torch.Tensor, coeff: torch.Tensor) -> torch.Tensor:
    """Per-(video, frame, channel) temporal filter. x: (N, T, C, H, W); coeff: (N, T, C, K), K odd."""
    if _PLAIN_AGGREGATION or torch.compiler.is_compiling():
        return temporal_aggregate_plain(x, coeff)
    return _temporal_aggregate(x, coeff)


# ------------------------------------------------------------------------------------------------
# TAM (Sec. 3): Y = G(X) (*) (L(X) . X); TANet-R: Y = L(X) . (G(X) (*) X).


class LocalBranch(nn.Module):
    """L: location-sensitive importance map V in (0, 1), shape (N, C, T), from the pooled descriptor."""

    def __init__(self, channels: int, beta: int = 4, kernel_size: int = 3):
        super().__init__()
        _check_divides("beta", beta, channels)
        _check_kernel_size("local_kernel_size", kernel_size)
        hidden = channels // beta
        # Sequential indices follow the reference checkpoints (tam.L.0 / L.1 / L.3)
        self.net = nn.Sequential(
            nn.Conv1d(channels, hidden, kernel_size, padding=kernel_size // 2, bias=False),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv1d(hidden, channels, 1, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, desc: torch.Tensor) -> torch.Tensor:
        return self.net(desc)


class GlobalBranch(nn.Module):
    """G: one softmax-normalised K-tap kernel per (video, channel), shape (N, C, K), from the descriptor.

    The MLP runs over the time axis, so its weights depend on T: a T=8 checkpoint cannot load into a
    T=16 model (shape mismatch on the first Linear), which is the intended guard.
    """

    def __init__(self, num_frames: int, alpha: int = 2, kernel_size: int = 3):
        super().__init__()
        _check_positive_int("num_frames", num_frames)
        _check_positive_int("alpha", alpha)
        _check_kernel_size("kernel_size", kernel_size)
        hidden = alpha * num_frames
        self.net = nn.Sequential(
            nn.Linear(num_frames, hidden, bias=False),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, kernel_size, bias=False),
            nn.Softmax(dim=-1),
        )

    def forward(self, desc: torch.Tensor) -> torch.Tensor:
        n, c, t = desc.shape
        return self.net(desc.reshape(n * c, t)).view(n, c, -1)


class SEGate(nn.Module):
    """Squeeze-and-excitation gate over channels from the spatio-temporal mean: (N, C, 1) in (0, 1).

    Reduction 8 with bias-free FCs gives the paper's 24.65M for "Global branch + SE" on ResNet-50.
    """

    def __init__(self, channels: int, reduction: int = 8):
        super().__init__()
        _check_divides("se_reduction", reduction, channels)
        self.net = nn.Sequential(
            nn.Linear(channels, channels // reduction, bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(channels // reduction, channels, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, desc: torch.Tensor) -> torch.Tensor:
        return self.net(desc.mean(-1)).unsqueeze(-1)


class TemporalAdaptiveModule(nn.Module):
    """A gate (importance map) and/or a video-adaptive kernel, fused into one temporal aggregation.

    ``local_first=True`` is TANet's order (gate the input, then aggregate); False is TANet-R.
    Either branch may be None, which gives the paper's "global branch only" / "local branch only".
    """

    def __init__(
        self,
        channels: int,
        num_frames: int,
        L: nn.Module | None,
        G: nn.Module | None,
        local_first: bool = True,
    ):
        super().__init__()
        _check_positive_int("channels", channels)
        _check_positive_int("num_frames", num_frames)
        if L is None and G is None:
            raise ValueError("a temporal adaptive module needs a local branch L, a global branch G, or both")
        self.channels, self.num_frames, self.local_first = channels, num_frames, local_first
        self.L, self.G = L, G

    def coefficients(self, desc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Fold V (N, C, T|1) and Theta (N, C, K) into coeff (N, T, C, K); also return V, Theta."""
        v = self.L(desc) if self.L is not None else None
        theta = self.G(desc) if self.G is not None else None
        n, c, t = desc.shape
        if theta is None:  # local only: a 1-tap "kernel" that is the map itself
            coeff = v.unsqueeze(-1)
        elif v is None:
            coeff = theta.unsqueeze(2)
        elif self.local_first and v.shape[-1] > 1:
            # tap k of output frame t reads input frame t+k-pad, which the map scaled by V[t+k-pad]
            k = theta.shape[-1]
            v_taps = _taps(v, k)  # (N, C, T, K)
            coeff = v_taps * theta.unsqueeze(2)
        else:  # TANet-R, or a gate constant over time (SE): V[t] * Theta[k]
            coeff = v.unsqueeze(-1) * theta.unsqueeze(2)
        coeff = coeff.expand(n, c, t, coeff.shape[-1])  # maps constant over time (SE) broadcast here
        return coeff.permute(0, 2, 1, 3), v, theta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = _frames(x, self.num_frames, self.channels)
        x5 = x.view(n, self.num_frames, *x.shape[1:])
        desc = x5.mean(dim=(-2, -1)).transpose(1, 2)  # (N, C, T): spatial squeeze
        coeff, _, _ = self.coefficients(desc)
        return temporal_aggregate(x5, coeff).view_as(x)


class TAM(TemporalAdaptiveModule):
    """Temporal Adaptive Module (paper Sec. 3): ``TAM(channels, num_frames, alpha=2, beta=4, kernel_size=3)``.

    ``local_kernel_size`` is the temporal kernel of L's first Conv1d; it follows ``kernel_size`` unless
    given, as in the official code (reference_impl.md 1.6).
    """

    def __init__(
        self,
        channels: int,
        num_frames: int,
        alpha: int = 2,
        beta: int = 4,
        kernel_size: int = 3,
        local_kernel_size: int | None = None,
        local_first: bool = True,
    ):
        _check_positive_int("channels", channels)
        _check_kernel_size("kernel_size", kernel_size)
        lk = kernel_size if local_kernel_size is None else local_kernel_size
        super().__init__(
            channels,
            num_frames,
            L=LocalBranch(channels, beta, lk),
            G=GlobalBranch(num_frames, alpha, kernel_size),
            local_first=local_first,
        )


def tam_global_only(channels: int, num_frames: int, alpha: int = 2, kernel_size: int = 3, **_) -> nn.Module:
    return TemporalAdaptiveModule(channels, num_frames, L=None, G=GlobalBranch(num_frames, alpha, kernel_size))


def tam_local_only(
    channels: int, num_frames: int, beta: int = 4, kernel_size: int = 3, local_kernel_size=None, **_
) -> nn.Module:
    lk = kernel_size if local_kernel_size is None else local_kernel_size
    return TemporalAdaptiveModule(channels, num_frames, L=LocalBranch(channels, beta, lk), G=None)


def tam_global_se(
    channels: int, num_frames: int, alpha: int = 2, kernel_size: int = 3, se_reduction: int = 8, **_
) -> nn.Module:
    return TemporalAdaptiveModule(
        channels, num_frames, L=SEGate(channels, se_reduction), G=GlobalBranch(num_frames, alpha, kernel_size)
    )


def tanet_r(channels: int, num_frames: int, **kwargs) -> nn.Module:
    return TAM(channels, num_frames, local_first=False, **kwargs)


# ------------------------------------------------------------------------------------------------
# Baselines of Table 2.


class TemporalShift(nn.Module):
    """TSM: channels [0, C/8) take frame t+1, [C/8, C/4) take frame t-1, zeros at the clip ends."""

    def __init__(self, channels: int, num_frames: int, fold_div: int = 8):
        super().__init__()
        _check_positive_int("num_frames", num_frames)
        _check_divides("fold_div", fold_div, channels)
        self.channels, self.num_frames, self.fold = channels, num_frames, channels // fold_div

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = _frames(x, self.num_frames, self.channels)
        x5 = x.view(n, self.num_frames, *x.shape[1:])
        f = self.fold
        out = torch.zeros_like(x5)
        out[:, :-1, :f] = x5[:, 1:, :f]
        out[:, 1:, f : 2 * f] = x5[:, :-1, f : 2 * f]
        out[:, :, 2 * f :] = x5[:, :, 2 * f :]
        return out.view_as(x)


class TemporalAvgPool(nn.Module):
    """C2D-Pool: average over frames t-1, t, t+1 (zero padded, divisor 3), no parameters."""

    def __init__(self, channels: int, num_frames: int, kernel_size: int = 3):
        super().__init__()
        _check_positive_int("num_frames", num_frames)
        _check_kernel_size("kernel_size", kernel_size)
        self.channels, self.num_frames, self.kernel_size = channels, num_frames, kernel_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = _frames(x, self.num_frames, self.channels)
        x5 = x.view(n, self.num_frames, *x.shape[1:])
        y = x5.clone()
        pad, t = self.kernel_size // 2, self.num_frames
        for s in range(1, pad + 1):  # element-wise adds: pooling is not charged FLOPs in the paper
            if s < t:
                y[:, s:] += x5[:, :-s]
                y[:, :-s] += x5[:, s:]
        return (y / self.kernel_size).view_as(x)


class TemporalConv(nn.Module):
    """A K x 1 x 1 convolution over time on (N*T, C, H, W) frames.

    C2D-TConv uses it C -> C with the centre tap at identity (the ImageNet network is unchanged at
    step 0); I3D 3x1x1 builds it from a block's first 1x1 conv (``from_conv2d``), inflated by repeating
    the 2-D weight over time divided by K (Carreira & Zisserman).
    """

    def __init__(
        self,
        channels: int,
        num_frames: int,
        kernel_size: int = 3,
        out_channels: int | None = None,
        init: str = "identity",
        spatial: nn.Conv2d | None = None,
    ):
        super().__init__()
        _check_positive_int("num_frames", num_frames)
        _check_kernel_size("kernel_size", kernel_size)
        out_channels = channels if out_channels is None else out_channels
        self.channels, self.num_frames = channels, num_frames
        kh, kw = spatial.kernel_size if spatial is not None else (1, 1)
        sh, sw = spatial.stride if spatial is not None else (1, 1)
        ph, pw = spatial.padding if spatial is not None else (0, 0)
        self.conv = nn.Conv3d(channels, out_channels, (kernel_size, kh, kw), stride=(1, sh, sw),
                              padding=(kernel_size // 2, ph, pw), bias=False)
        if init == "identity":
            if out_channels != channels or spatial is not None:
                raise ValueError("init='identity' needs a 1x1 spatial kernel and out_channels == channels")
            with torch.no_grad():
                self.conv.weight.zero_()
                self.conv.weight[:, :, kernel_size // 2, 0, 0] = torch.eye(channels)
        elif init != "default":
            raise ValueError(f"init must be 'identity' or 'default', got {init!r}")

    @classmethod
    def from_conv2d(cls, conv: nn.Conv2d, num_frames: int, kernel_size: int = 3) -> TemporalConv:
        """Inflate a 2-D conv to kernel_size x kh x kw (a 1x1 gives the paper's 3x1x1)."""
        if conv.groups != 1 or conv.bias is not None or conv.dilation != (1, 1) or isinstance(conv.padding, str):
            raise ValueError(f"I3D inflation takes a plain conv (no groups, bias or dilation), got {conv}")
        m = cls(conv.in_channels, num_frames, kernel_size, out_channels=conv.out_channels, init="default",
                spatial=conv)
        with torch.no_grad():
            m.conv.weight.copy_(conv.weight.unsqueeze(2).repeat(1, 1, kernel_size, 1, 1) / kernel_size)
        return m

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = _frames(x, self.num_frames, self.channels)
        x5 = x.view(n, self.num_frames, *x.shape[1:]).transpose(1, 2)  # (N, C, T, H, W)
        y = self.conv(x5)
        return y.transpose(1, 2).reshape(n * self.num_frames, y.shape[1], *y.shape[-2:])


class TEIModule(nn.Module):
    """TEINet (Liu et al., AAAI 2020): MEM (motion-enhanced channel gate) then TIM (depthwise temporal conv).

    TEINet has no public code. Reading chosen, the one of its paper closest to Table 2's 25.11M:
    MEM squeezes every frame with one 1x1 reduction (r=4) shared by frames t and t+1, takes the
    difference of the reduced descriptors of frames t+1 and t (zero for the last frame), restores C
    with a second 1x1 and a sigmoid, and gates frame t; TIM is a depthwise K=3 temporal conv
    initialised as a TSM shift (1/8 channels from t+1, 1/8 from t-1, the rest identity).
    At position b of ResNet-50 this gives 24.97M (r=8: 24.65M; separate reductions for t and t+1:
    r=4 25.28M, r=8 24.81M); FLOPs 43.01G like the paper.
    """

    def __init__(self, channels: int, num_frames: int, reduction: int = 4, kernel_size: int = 3, fold_div: int = 8):
        super().__init__()
        _check_positive_int("num_frames", num_frames)
        _check_divides("reduction", reduction, channels)
        _check_kernel_size("kernel_size", kernel_size)
        self.channels, self.num_frames = channels, num_frames
        self.reduce = nn.Conv1d(channels, channels // reduction, 1, bias=False)
        self.restore = nn.Conv1d(channels // reduction, channels, 1, bias=False)
        self.tim = nn.Parameter(torch.zeros(channels, kernel_size))
        fold, centre = channels // fold_div, kernel_size // 2
        with torch.no_grad():
            self.tim[:fold, min(centre + 1, kernel_size - 1)] = 1.0  # read frame t+1
            self.tim[fold : 2 * fold, max(centre - 1, 0)] = 1.0  # read frame t-1
            self.tim[2 * fold :, centre] = 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = _frames(x, self.num_frames, self.channels)
        x5 = x.view(n, self.num_frames, *x.shape[1:])
        r = self.reduce(x5.mean(dim=(-2, -1)).transpose(1, 2))  # (N, C/r, T)
        motion = F.pad(r[..., 1:] - r[..., :-1], (0, 1))
        gate = torch.sigmoid(self.restore(motion))  # (N, C, T): MEM's gate of every frame
        # MEM gates frame t, then TIM mixes frames: tap k of output t needs the gate of source t+k-pad
        k = self.tim.shape[-1]
        g_taps = _taps(gate, k)  # (N, C, T, K)
        coeff = (g_taps * self.tim[:, None, :]).permute(0, 2, 1, 3)
        return temporal_aggregate(x5, coeff).view_as(x)


class NonLocalBlock(nn.Module):
    """Embedded-Gaussian non-local block (Wang et al. 2018) on (N, C, T, H, W), residual, starts as identity.

    theta/phi/g are 1x1x1 convs to C/2 with bias; phi and g are max-pooled (1, 2, 2) to sub-sample the
    keys; the output conv + BN has BN gamma = beta = 0 so the pretrained C2D is unchanged at step 0.
    """

    def __init__(self, channels: int, num_frames: int, reduction: int = 2, sub_sample: bool = True):
        super().__init__()
        _check_positive_int("num_frames", num_frames)
        _check_divides("reduction", reduction, channels)
        inter = channels // reduction
        self.channels, self.num_frames = channels, num_frames
        self.theta = nn.Conv3d(channels, inter, 1)
        self.phi = nn.Conv3d(channels, inter, 1)
        self.g = nn.Conv3d(channels, inter, 1)
        self.pool = nn.MaxPool3d((1, 2, 2)) if sub_sample else nn.Identity()
        self.out = nn.Sequential(nn.Conv3d(inter, channels, 1), nn.BatchNorm3d(channels))
        nn.init.zeros_(self.out[1].weight)
        nn.init.zeros_(self.out[1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = _frames(x, self.num_frames, self.channels)
        x5 = x.view(n, self.num_frames, *x.shape[1:]).transpose(1, 2)  # (N, C, T, H, W)
        q = self.theta(x5).flatten(2)  # (N, C', THW)
        k = self.pool(self.phi(x5)).flatten(2)
        v = self.pool(self.g(x5)).flatten(2)
        attn = torch.softmax(q.transpose(1, 2) @ k, dim=-1)  # (N, THW, THW'), no 1/sqrt(d) as in the paper
        y = (attn @ v.transpose(1, 2)).transpose(1, 2).reshape(n, -1, *x5.shape[2:])
        z = self.out(y) + x5
        return z.transpose(1, 2).reshape_as(x)


# ------------------------------------------------------------------------------------------------
# Registry: one spec per temporal module; everything else (the config check, the model builder, the
# LightningModule's sweep keys, the complexity table, the report's row names) is derived from it.
# Adding a module = its factory above + one entry here + conf/model/temporal/<name>.yaml.

PLACEMENTS = ("in_block", "after_block", "replace_conv", "inflate", "none")


@dataclass(frozen=True)
class Reported:
    """A module's own paper: the numbers it reports, for the complexity table beside ours.

    ``gflops`` is per view (one clip of ``frames`` x ``size``^2) as that paper counts it; ``results`` holds
    (dataset, top-1, top-5 or None) for the ResNet-50 model at ``frames`` frames; ``note`` says where the
    numbers come from and how its counting differs from ours, if it does.
    """

    source: str  # paper (and table / file) the numbers come from
    gflops: float | None
    mparams: float | None
    results: tuple[tuple[str, float, float | None], ...] = ()
    frames: int = 8
    size: int = 224  # input side of the paper's GFLOPs
    note: str = ""


@dataclass(frozen=True)
class TemporalSpec:
    """How a temporal module enters a network and where it stands in the paper's Table 2 (or its own paper)."""

    name: str  # the conf/model/temporal/<name>.yaml option
    # in_block / after_block: factory(channels, num_frames, **kwargs); replace_conv: factory(conv, num_frames,
    # **kwargs) with the block's 3x3 nn.Conv2d; None: no module (C2D, I3D's inflation)
    factory: Callable[..., nn.Module] | None
    # in_block (positions a-d) | after_block (NL) | replace_conv (the 3x3 conv of every ResNet block of the
    # chosen stages, insertion.replace_convs) | inflate (I3D) | none (C2D)
    placement: str
    tam_keys: bool = False  # takes the paper's sweep keys model.tam.{alpha, beta, kernel_size}
    position: str = "b"  # its place in a block when model.position is null (in_block only)
    paper_row: str = ""  # its row name: in Table 2, or (with `reported`) in the complexity table
    paper: tuple[float, float, float, float] | None = None  # Table 2: GFLOPs, Mparams, top-1, top-5
    reported: Reported | None = None  # a module after TAM: its own paper's numbers

    def __post_init__(self):
        if self.placement not in PLACEMENTS:
            raise ValueError(f"{self.name}: placement must be one of {PLACEMENTS}, got {self.placement!r}")
        if (self.factory is None) != (self.placement in ("inflate", "none")):
            raise ValueError(f"{self.name}: a factory is needed exactly when a module is placed")
        if self.reported is not None and (self.paper is not None or not self.paper_row):
            raise ValueError(f"{self.name}: `reported` is for modules outside Table 2, with a paper_row to show")


TEMPORAL: dict[str, TemporalSpec] = {s.name: s for s in (
    TemporalSpec("c2d", None, "none", paper_row="C2D", paper=(42.95, 24.33, 70.2, 88.9)),
    TemporalSpec("c2d_pool", TemporalAvgPool, "in_block", paper_row="C2D-Pool", paper=(42.95, 24.33, 73.1, 90.6)),
    TemporalSpec("c2d_tconv", TemporalConv, "in_block", paper_row="C2D-TConv", paper=(53.02, 28.10, 73.3, 90.7)),
    # TSM's own place: the residual branch's input
    TemporalSpec("tsm", TemporalShift, "in_block", position="a", paper_row="TSM", paper=(42.95, 24.33, 74.1, 91.2)),
    TemporalSpec("teinet", TEIModule, "in_block", paper_row="TEINet", paper=(43.01, 25.11, 74.9, 91.8)),
    TemporalSpec("i3d", None, "inflate", paper_row="I3D3x1x1", paper=(62.55, 32.99, 74.3, 91.6)),
    TemporalSpec("nl", NonLocalBlock, "after_block", paper_row="NL C2D", paper=(64.49, 31.69, 74.4, 91.5)),
    TemporalSpec("tam_global", tam_global_only, "in_block", tam_keys=True, paper_row="Global branch",
                 paper=(43.00, 24.33, 74.9, 91.7)),
    TemporalSpec("tam_local", tam_local_only, "in_block", tam_keys=True, paper_row="Local branch",
                 paper=(43.00, 25.59, 73.3, 90.7)),
    TemporalSpec("tam_global_se", tam_global_se, "in_block", tam_keys=True, paper_row="Global branch + SE",
                 paper=(43.02, 24.65, 75.4, 92.0)),
    TemporalSpec("tanet_r", tanet_r, "in_block", tam_keys=True, paper_row="TANet-R", paper=(43.02, 25.59, 76.0, 92.2)),
    TemporalSpec("tam", TAM, "in_block", tam_keys=True, paper_row="TANet", paper=(43.02, 25.59, 76.1, 92.3)),
    # modules after TAM, with their own papers' numbers (not in Table 2)
    TemporalSpec("tada", tada, "replace_conv", paper_row="TAda2D", reported=Reported(
        "Huang et al., ICLR 2022 (TAda2D R50, K400 table); official README (alibaba-mmai-research/TAdaConv)",
        gflops=43.0, mparams=None, results=(("K400", 76.7, 92.6), ("SSv2", 64.0, 88.0)), size=256,
        note="43 GFLOPs is per 8x256x256 view (the official test crop, TEST_CROP_SIZE 256; at 224 a ResNet-50 "
             "is 33 GFLOPs alone); no parameter count in the sources read (official README and configs)")),
    TemporalSpec("tea", TEAConv, "replace_conv", paper_row="TEA", reported=Reported(
        "Li et al., CVPR 2020 (TEA R50, SSv1 table, 1 clip, centre crop); official code "
        "Phoenix1327/tea-action-recognition", gflops=35.0, mparams=None, results=(("SSv1", 48.9, None),),
        note="the paper's network is Res2Net-50 26w4s (1x1 convs 104/208/416/832 wide, fragments 26-208): that "
             "layout counts 34.7G here (tests/models/test_tea_gst.py builds it); on the ResNet-50 each fragment is "
             "1/4 of the ResNet's own width, so its 3x3 convs cost 3/16 of the original ones: 21.1G")),
    TemporalSpec("gst", GSTConv, "replace_conv", paper_row="GST", reported=Reported(
        "Luo & Yuille, ICCV 2019 (GST R50, alpha=4 beta=2, SSv1 table); official README (chenxuluo/GST-video)",
        gflops=29.5, mparams=21.0, results=(("SSv1", 47.0, None), ("SSv2", 61.6, None)),
        note="the paper counts SSv1's 174 classes: at this table's 400 the classifier has 0.46M more parameters "
             "(--classes 174: 21.04M)")),
)}
# name -> factory(channels, num_frames, **kwargs): the modules placed on a feature map (in a block or after it)
TEMPORAL_MODULES: dict[str, Callable[..., nn.Module]] = {
    n: s.factory for n, s in TEMPORAL.items() if s.placement in ("in_block", "after_block")}
# name -> factory(conv, num_frames, **kwargs): the modules that replace a block's 3x3 conv
CONV_MODULES: dict[str, Callable[..., nn.Module]] = {
    n: s.factory for n, s in TEMPORAL.items() if s.placement == "replace_conv"}
TAM_FAMILY = tuple(name for name, spec in TEMPORAL.items() if spec.tam_keys)  # the modules that take model.tam.*


def temporal_spec(name: str) -> TemporalSpec:
    if name not in TEMPORAL:
        raise ValueError(f"unknown temporal module {name!r}; choose one of {sorted(TEMPORAL)}")
    return TEMPORAL[name]


def _build(name: str, placements: tuple[str, ...], first, num_frames: int, kwargs: dict) -> nn.Module:
    spec = temporal_spec(name)
    if spec.factory is None:
        raise ValueError(f"{name!r} is not a module to place (placement {spec.placement})")
    if spec.placement not in placements:
        other = "create_conv_temporal(name, conv, ...)" if spec.placement == "replace_conv" else \
            "create_temporal(name, channels, ...)"
        raise ValueError(f"{name!r} has placement {spec.placement}: build it with {other}")
    try:
        return spec.factory(first, num_frames, **kwargs)
    except TypeError as e:  # an option the module does not take: say which module and which option
        raise ValueError(f"temporal module {name!r}: {e}") from None


def create_temporal(name: str, channels: int, num_frames: int, **kwargs) -> nn.Module:
    """A module placed on a (N*T, channels, H, W) feature map (placements in_block, after_block)."""
    return _build(name, ("in_block", "after_block"), channels, num_frames, kwargs)


def create_conv_temporal(name: str, conv: nn.Conv2d, num_frames: int, **kwargs) -> nn.Module:
    """A module that replaces ``conv`` (placement replace_conv): same input and output shapes as the conv."""
    return _build(name, ("replace_conv",), conv, num_frames, kwargs)
