"""TAda2D (Huang et al., "TAda! Temporally-Adaptive Convolutions for Video Understanding", ICLR 2022).

A ResNet block's 3x3 conv becomes a temporally adaptive conv: frame descriptors (spatial mean) and the
clip's mean go through a routing function (a temporal conv over the descriptors, reduction ``ratio``, BN,
ReLU, a second temporal conv) that gives every frame a per-channel calibration ``alpha_t`` of the shared
kernel, ``W_t = alpha_t * W``. The official TAda2D block adds an average-pooling branch: the conv's output
pooled over 3 frames, through its own BN, added after the conv's BN (``norm_branch``).

Identity at step 0, as in the official code: the routing function's last conv is zero (``alpha = 1``) and
the pooling branch's BN has gamma = beta = 0, so the network is the 2-D ResNet it was built from.

Calibrating the input channels (``cal_dim="cin"``, the official default) equals scaling the input:
``conv(x_t, alpha_t * W) = conv(alpha_t * x_t, W)`` (zero padding stays zero). So this module runs one
ordinary conv with the shared weight on calibrated frames, where the official code builds N*T kernels and
a grouped conv with N*T groups. Same arithmetic; no group count tied to the batch (ONNX keeps a dynamic
batch), the usual conv kernels (channels_last, bf16), and grouped convs (ResNeXt) work as they are.
``cal_dim="cout"`` scales the output instead.

Names follow the official block (``models/module_zoo/branches/tada_branch.py``) so a converter is a key
map (``OFFICIAL_KEYS``; the official kernels carry extra unit dimensions, dropped by a reshape).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..fit import check_frame_batch

__all__ = ["RouteFuncMLP", "FrameBatchNorm3d", "TAdaConv2d", "tada", "OFFICIAL_KEYS"]

# official TAda2D bottleneck key (prefix of layerX.Y) -> ours (b: the 3x3 conv, a / c: the 1x1 convs)
OFFICIAL_KEYS = {
    "a.": "conv1.", "a_bn.": "bn1.",
    "b.weight": "conv2.weight", "b_rf.": "conv2.rf.", "b_bn.": "bn2.", "b_avgpool_bn.": "conv2.avgpool_bn.",
    "c.": "conv3.", "c_bn.": "bn3.",
}


class RouteFuncMLP(nn.Module):
    """Routing function: (N, C, T, 1, 1) frame descriptors + (N, C, 1, 1, 1) clip mean -> alpha (N, C, T, 1, 1).

    ``alpha = b(relu(bn(a(desc + g(clip_mean))))) + 1`` with ``b`` zero-initialised, so alpha starts at 1.
    Conv3d with (k, 1, 1) kernels as in the official code (same parameter shapes); T is never an input
    width, so one model takes any T it was built for.
    """

    def __init__(self, c_in: int, ratio: int = 4, kernels: Sequence[int] = (3, 3), bn_eps: float = 1e-5,
                 bn_mmt: float = 0.1):
        super().__init__()
        kernels = tuple(kernels)
        if len(kernels) != 2 or any(not isinstance(k, int) or k <= 0 or k % 2 == 0 for k in kernels):
            raise ValueError(f"kernels must be two odd temporal kernel sizes (e.g. [3, 3]), got {list(kernels)}")
        if not isinstance(ratio, int) or ratio <= 0 or c_in % ratio:
            raise ValueError(f"ratio={ratio} must be a positive divisor of the conv's {c_in} input channels")
        hidden = c_in // ratio
        self.g = nn.Conv3d(c_in, c_in, 1)
        self.a = nn.Conv3d(c_in, hidden, (kernels[0], 1, 1), padding=(kernels[0] // 2, 0, 0))
        self.bn = nn.BatchNorm3d(hidden, eps=bn_eps, momentum=bn_mmt)
        self.relu = nn.ReLU(inplace=True)
        self.b = nn.Conv3d(hidden, c_in, (kernels[1], 1, 1), padding=(kernels[1] // 2, 0, 0), bias=False)
        nn.init.zeros_(self.b.weight)  # alpha = 1 at step 0: the 2-D network unchanged

    def forward(self, desc: torch.Tensor) -> torch.Tensor:
        x = self.a(desc + self.g(desc.mean(dim=2, keepdim=True)))
        return self.b(self.relu(self.bn(x))) + 1


class FrameBatchNorm3d(nn.BatchNorm3d):
    """The official block's BatchNorm3d, run on the (N*T, C, H, W) frame batch: per channel over N, T, H, W,
    the same statistics without a transpose. A BatchNorm3d, not 2d, so TSN's partial BN (``freeze_bn``:
    every BatchNorm2d but the first keeps its pretrained state) leaves this new, zero-initialised one free."""

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() not in (4, 5):
            raise ValueError(f"expected a 4-D frame batch or a 5-D clip batch, got {input.dim()}-D input")


class TAdaConv2d(nn.Module):
    """The temporally adaptive 3x3 conv of TAda2D, built from (and owning) a block's ``nn.Conv2d``.

    Input and output are frame batches (N*T, C, H, W) like the conv's. ``weight`` (and ``bias``) are the
    conv's own parameters, so its state-dict keys and ImageNet weights stay where they were.
    ``pool_kernel_size``: temporal window of the average-pooling branch (None: no branch, plain TAdaConv).
    """

    def __init__(self, conv: nn.Conv2d, num_frames: int, ratio: int = 4, kernels: Sequence[int] = (3, 3),
                 pool_kernel_size: int | None = 3, cal_dim: str = "cin"):
        super().__init__()
        if not isinstance(conv, nn.Conv2d) or isinstance(conv.padding, str) or conv.padding_mode != "zeros":
            raise ValueError(f"TAdaConv2d replaces an nn.Conv2d with numeric zero padding, got {conv}")
        if not isinstance(num_frames, int) or num_frames <= 0:
            raise ValueError(f"num_frames must be a positive integer, got {num_frames!r}")
        if cal_dim not in ("cin", "cout"):
            raise ValueError(f"cal_dim must be 'cin' (calibrate input channels) or 'cout', got {cal_dim!r}")
        if cal_dim == "cout" and conv.in_channels != conv.out_channels:
            raise ValueError(f"cal_dim='cout' needs as many output as input channels, got {conv}")
        if pool_kernel_size is not None and (not isinstance(pool_kernel_size, int) or pool_kernel_size <= 0
                                             or pool_kernel_size % 2 == 0):
            raise ValueError(f"pool_kernel_size must be odd (1, 3, 5, ...) or null, got {pool_kernel_size!r}")
        self.num_frames, self.cal_dim, self.pool_kernel_size = num_frames, cal_dim, pool_kernel_size
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels
        self.stride, self.padding, self.dilation, self.groups = conv.stride, conv.padding, conv.dilation, conv.groups
        self.weight, self.bias = conv.weight, conv.bias
        self.rf = RouteFuncMLP(conv.in_channels, ratio, kernels)
        if pool_kernel_size is not None:
            self.avgpool_bn = FrameBatchNorm3d(conv.out_channels)
            nn.init.zeros_(self.avgpool_bn.weight)  # the branch adds 0 at step 0
            nn.init.zeros_(self.avgpool_bn.bias)

    def calibration(self, x5: torch.Tensor) -> torch.Tensor:
        """alpha (N, T, C_in, 1, 1) of a clip batch (N, T, C_in, H, W)."""
        desc = x5.mean(dim=(-2, -1)).transpose(1, 2)[..., None, None]  # (N, C, T, 1, 1)
        return self.rf(desc).squeeze(-1).transpose(1, 2).unsqueeze(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected a frame batch (N*T, {self.in_channels}, H, W), got shape {tuple(x.shape)}")
        check_frame_batch(x.shape[0], self.num_frames)
        x5 = x.view(-1, self.num_frames, *x.shape[1:])
        alpha = self.calibration(x5).to(x.dtype)
        if self.cal_dim == "cin":
            x = (x5 * alpha).view_as(x)
        y = F.conv2d(x, self.weight, None, self.stride, self.padding, self.dilation, self.groups)
        if self.cal_dim == "cout":
            y5 = y.view(-1, self.num_frames, *y.shape[1:])
            y = (y5 * alpha).view_as(y)
        return y if self.bias is None else y + self.bias.view(1, -1, 1, 1)

    def norm_branch(self, y: torch.Tensor) -> torch.Tensor | None:
        """The average-pooling branch on the conv's output ``y``, added after the block's BN of ``y``:
        the mean over ``pool_kernel_size`` frames (zero padded, fixed divisor, like AvgPool3d), then BN."""
        if self.pool_kernel_size is None:
            return None
        k, t = self.pool_kernel_size, self.num_frames
        y5 = y.view(-1, t, *y.shape[1:])
        p = F.pad(y5, (0, 0, 0, 0, 0, 0, k // 2, k // 2))  # zero frames at both ends of every clip
        pooled = p[:, 0:t]
        for j in range(1, k):
            pooled = pooled + p[:, j:j + t]
        return self.avgpool_bn((pooled / k).view_as(y))

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={tuple(self.weight.shape[-2:])}, "
                f"stride={self.stride}, padding={self.padding}, groups={self.groups}, num_frames={self.num_frames}, "
                f"cal_dim={self.cal_dim!r}, pool_kernel_size={self.pool_kernel_size}")


def tada(conv: nn.Conv2d, num_frames: int, ratio: int = 4, kernels: Sequence[int] = (3, 3),
         pool_kernel_size: int | None = 3, cal_dim: str = "cin") -> TAdaConv2d:
    """TAda2D's conv (official defaults: ROUTE_FUNC_R 4, ROUTE_FUNC_K [3, 3], POOL_K [3, 1, 1])."""
    return TAdaConv2d(conv, num_frames, ratio, tuple(kernels), pool_kernel_size, cal_dim)
