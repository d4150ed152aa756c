"""TEA (Li et al., CVPR 2020): motion excitation (ME) + multiple temporal aggregation (MTA) in place of a
ResNet block's 3x3 conv.

``TEAConv(conv, num_frames)`` takes the block's 3x3 conv (C -> C) and replaces it (placement
``replace_conv``): ME excites the motion-sensitive channels of its input, then MTA splits the channels
into ``scale`` fragments processed Res2Net-style, each a channel-wise temporal conv (K=3) and a 3x3
spatial conv, every fragment adding the previous one's output before its own convs (the "hierarchical
residual" that widens the temporal receptive field to 2*scale-1 frames without new parameters).

Names follow the official code (Phoenix1327/tea-action-recognition, ``ops/tea50_8f.py``), so a checkpoint
converts by a key map: ``layerX.Y.me.*`` -> ``layerX.Y.conv2.me.*``, ``layerX.Y.{convs,bns,shifts}.*`` ->
``layerX.Y.conv2.{convs,bns,shifts}.*``; the temporal convs are (C, 1, 3, 1) depthwise Conv2d weights
(official: Conv1d (C, 1, 3), a reshape). The official network is Res2Net-50 26w4s (1x1 convs 104/208/
416/832 wide), not a ResNet-50: on a ResNet-50 the fragments are C/4 of the ResNet's own width, which
makes it cheaper than the paper's 35 GFLOPs (the complexity table's note gives both).

Frames are (N*T, C, H, W), frame-major per video; ``num_frames`` is fixed at construction.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..fit import check_frame_batch

__all__ = ["MEModule", "ShiftModule", "TEAConv", "OFFICIAL_KEYS"]

# official TEA block key (prefix of layerX.Y) -> ours; conv1/bn1/conv3/bn3/downsample keep their names
OFFICIAL_KEYS = {"me.": "conv2.me.", "convs.": "conv2.convs.", "bns.": "conv2.bns.", "shifts.": "conv2.shifts."}


def _check_conv(conv: nn.Conv2d, what: str) -> None:
    if not isinstance(conv, nn.Conv2d) or conv.kernel_size != (3, 3):
        raise ValueError(f"{what} replaces a block's 3x3 Conv2d, got {conv!r}")
    if conv.groups != 1 or conv.dilation != (1, 1) or conv.bias is not None or conv.padding != (1, 1):
        raise ValueError(f"{what} replaces a plain 3x3 conv (no groups, dilation or bias, padding 1); got "
                         f"{conv!r}: ResNeXt and dilated ResNets are not supported")


def _check_divides(name: str, divisor: int, channels: int) -> None:
    if not isinstance(divisor, int) or isinstance(divisor, bool) or divisor <= 0 or channels % divisor:
        raise ValueError(f"{name}={divisor!r} must be a positive integer that divides the channel count "
                         f"{channels} (e.g. {[d for d in (1, 2, 4, 8, 16) if channels % d == 0]})")


class MEModule(nn.Module):
    """Motion excitation: channel attention from the feature difference of adjacent frames.

    Reduce C -> C/r (1x1 + BN), transform frame t+1 by a channel-wise 3x3 conv, subtract frame t (the
    last frame gets zero motion), pool spatially, expand C/r -> C (1x1 + BN), attention = sigmoid - 0.5,
    output x + x * attention (so a zero attention is the identity).
    """

    def __init__(self, channels: int, num_frames: int, reduction: int = 16):
        super().__init__()
        if not isinstance(reduction, int) or isinstance(reduction, bool) or not 0 < reduction <= channels:
            raise ValueError(f"reduction={reduction!r} must be an integer in [1, {channels}] (the channel count)")
        if not isinstance(num_frames, int) or num_frames <= 0:
            raise ValueError(f"num_frames must be a positive integer, got {num_frames!r}")
        hidden = channels // reduction  # rounded down as in the official code (Res2Net's 104 -> 6)
        self.channels, self.num_frames = channels, num_frames
        self.conv1 = nn.Conv2d(channels, hidden, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.conv2 = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden, bias=False)
        self.conv3 = nn.Conv2d(hidden, channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t = check_frame_batch(x.shape[0], self.num_frames), self.num_frames
        b = self.bn1(self.conv1(x))
        # pooling is linear, so pool(conv2(b)[t+1] - b[t]) = pool(conv2(b))[t+1] - pool(b)[t]: the
        # full-size difference is never stored
        pb = b.mean(dim=(-2, -1)).view(n, t, -1)
        pc = self.conv2(b).mean(dim=(-2, -1)).view(n, t, -1)
        diff = F.pad(pc[:, 1:] - pb[:, :-1], (0, 0, 0, 1))  # (N, T, C/r): zero for the last frame
        y = self.bn3(self.conv3(diff.reshape(n * t, -1, 1, 1)))
        return x * (torch.sigmoid(y) + 0.5)  # = x + x * (sigmoid(y) - 0.5), one full-size product


class ShiftModule(nn.Module):
    """Channel-wise temporal conv (K=3, zero padded in time) on (N*T, C, H, W) frames.

    ``mode="shift"`` starts as TSM's part shift (channels [0, C/2) read frame t+1, [C/2, C) frame
    t-1, as the official code with n_div=2), ``"fixed"`` as the identity, ``"norm"`` at random.
    """

    def __init__(self, channels: int, num_frames: int, mode: str = "shift"):
        super().__init__()
        if mode not in ("shift", "fixed", "norm"):
            raise ValueError(f"mode must be 'shift', 'fixed' or 'norm', got {mode!r}")
        self.channels, self.num_frames = channels, num_frames
        # a depthwise (3, 1) conv over (N, C, T, H*W): measured 4x faster than a (3, 1, 1) Conv3d on the CPU
        # (fwd + bwd), and it keeps channels_last, which the depthwise Conv3d does not
        self.conv = nn.Conv2d(channels, channels, (3, 1), padding=(1, 0), groups=channels, bias=False)
        if mode != "norm":
            fold = channels // 2 if mode == "shift" else 0
            with torch.no_grad():
                w = self.conv.weight.view(channels, 3)
                w.zero_()
                w[:fold, 2] = 1.0  # tap 2 reads frame t+1
                w[fold:2 * fold, 0] = 1.0  # tap 0 reads frame t-1
                w[2 * fold:, 1] = 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t = check_frame_batch(x.shape[0], self.num_frames), self.num_frames
        c, h, w = x.shape[1:]
        # (N*T, C, H, W) -> (N, C, T, H*W): a view for contiguous and channels_last frames alike
        y = self.conv(x.view(n, t, c, h, w).transpose(1, 2).reshape(n, c, t, h * w))
        return y.view(n, c, t, h, w).transpose(1, 2).reshape(x.shape)


class TEAConv(nn.Module):
    """ME + MTA in place of a block's 3x3 conv ``conv`` (C -> C, stride s).

    MTA: the C channels are split into ``scale`` fragments of C/scale. Fragment i < scale-1 adds the
    previous fragment's output (except in a strided block, where shapes differ: Res2Net's "stage" type;
    Res2Net also counts res2's first block, stride 1, as one, which the conv alone cannot tell), then a
    temporal conv (identity at init), the 3x3 conv (stride s) and BN + ReLU; the last fragment only gets
    the temporal conv (a TSM shift at init), average-pooled 3x3 when strided.

    The fragments' 3x3 convs start from the diagonal blocks of ``conv``'s (ImageNet) weights, the way
    GST slices its 2-D conv. The block's own BN + ReLU after conv2 stay (the official Res2Net block has
    none there): on the last fragment, which has no BN of its own, that is its only normalisation.
    """

    def __init__(self, conv: nn.Conv2d, num_frames: int, reduction: int = 16, scale: int = 4):
        super().__init__()
        _check_conv(conv, "TEA")
        channels = conv.in_channels
        if conv.out_channels != channels:
            raise ValueError(f"TEA's hierarchical fragments need a C -> C conv, got {conv!r}")
        _check_divides("scale", scale, channels)
        if scale < 2:
            raise ValueError(f"scale must be at least 2 (one convolved and one shifted fragment), got {scale}")
        width, stride = channels // scale, conv.stride
        self.channels, self.num_frames, self.width, self.scale = channels, num_frames, width, scale
        self.stage = stride != (1, 1)  # Res2Net's 'stage' block: no hierarchy, pooled last fragment
        self.me = MEModule(channels, num_frames, reduction)
        self.convs = nn.ModuleList(
            nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False) for _ in range(scale - 1))
        self.bns = nn.ModuleList(nn.BatchNorm2d(width) for _ in range(scale - 1))
        self.shifts = nn.ModuleList(
            [*(ShiftModule(width, num_frames, "fixed") for _ in range(scale - 1)), ShiftModule(width, num_frames)])
        self.pool = nn.AvgPool2d(3, stride=stride, padding=1) if self.stage else None
        self.relu = nn.ReLU(inplace=True)
        with torch.no_grad():
            for i, c in enumerate(self.convs):
                s = slice(i * width, (i + 1) * width)
                c.weight.copy_(conv.weight[s, s])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spx = torch.split(self.me(x), self.width, dim=1)
        out = []
        sp = spx[0]
        for i, (conv, bn, shift) in enumerate(zip(self.convs, self.bns, self.shifts)):
            sp = spx[i] if i == 0 or self.stage else sp + spx[i]
            sp = self.relu(bn(conv(shift(sp))))
            out.append(sp)
        last = self.shifts[-1](spx[-1])
        out.append(self.pool(last) if self.pool is not None else last)
        return torch.cat(out, dim=1)

