"""The paper's Table 2 baselines: TSM, C2D-Pool, C2D-TConv (and I3D's inflated conv), TEINet, non-local.

Every module maps a frame batch ``(N*T, C, H, W)`` to the same shape (rows frame-major per video) and is
built by ``factory(channels, num_frames, **kwargs)``; the registry (``registry.py``) names them.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .aggregation import _taps, temporal_aggregate
from .checks import _check_divides, _check_kernel_size, _check_positive_int, _frames


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
