"""GST (Luo & Yuille, ICCV 2019): a ResNet block's 3x3 conv split into a spatial and a spatio-temporal group.

``GSTConv(conv, num_frames, alpha=4, beta=2)`` replaces the block's 3x3 conv (placement
``replace_conv``). With ``beta=2`` the input channels are halved: the first half goes through a 2-D
3x3 conv to (alpha-1)/alpha of the output channels, the second through a 3x3x3 conv to the other
1/alpha; ``beta=1`` ("GST-Large") feeds the whole input to both. The block's BN + ReLU after conv2
normalise the concatenation, as in the official block. alpha=4, beta=2 is the paper's GST (29.5
GFLOPs at ResNet-50 8x224^2, the official README's command for SSv1 47.0 %).

Names follow the official code (chenxuluo/GST-video, ``GST.py``): ``layerX.Y.conv2.weight`` ->
``layerX.Y.conv2.conv2.weight`` (official Conv3d 1x3x3: squeeze dim 2), ``layerX.Y.Tconv.weight`` ->
``layerX.Y.conv2.Tconv.weight``. As there, the 2-D group starts from the ImageNet conv2 sliced to its
shape (first output rows, first input channels) and the 3-D group from Kaiming's fan-out init.

Frames are (N*T, C, H, W), frame-major per video; ``num_frames`` is fixed at construction.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..fit import check_frame_batch

__all__ = ["GSTConv", "OFFICIAL_KEYS"]

# official GST block key (prefix of layerX.Y) -> ours; the other convs and BNs keep their names (and squeeze
# the official Conv3d's unit time dimension, as conv2 does)
OFFICIAL_KEYS = {"conv2.weight": "conv2.conv2.weight", "Tconv.weight": "conv2.Tconv.weight"}


class GSTConv(nn.Module):
    """Grouped spatial (2-D 3x3) and spatio-temporal (3x3x3) conv in place of a block's 3x3 ``conv``."""

    def __init__(self, conv: nn.Conv2d, num_frames: int, alpha: int = 4, beta: int = 2):
        super().__init__()
        if not isinstance(conv, nn.Conv2d) or conv.kernel_size != (3, 3) or conv.padding != (1, 1) \
                or conv.groups != 1 or conv.dilation != (1, 1) or conv.bias is not None:
            raise ValueError(f"GST replaces a plain 3x3 Conv2d (padding 1, no groups, dilation or bias); got "
                             f"{conv!r}: ResNeXt and dilated ResNets are not supported")
        if not isinstance(num_frames, int) or num_frames <= 0:
            raise ValueError(f"num_frames must be a positive integer, got {num_frames!r}")
        c_in, c_out = conv.in_channels, conv.out_channels
        if beta not in (1, 2) or c_in % beta:
            raise ValueError(f"beta={beta!r}: 2 (GST, halves of the input channels, which must be even) "
                             f"or 1 (GST-Large, the whole input to both groups); input channels {c_in}")
        if not isinstance(alpha, int) or isinstance(alpha, bool) or alpha < 2 or c_out % alpha:
            raise ValueError(f"alpha={alpha!r} must be an integer >= 2 that divides the output channels {c_out} "
                             "(1/alpha of them come from the 3-D conv)")
        self.num_frames, self.alpha, self.beta, self.split = num_frames, alpha, beta, c_in // beta
        self.conv2 = nn.Conv2d(c_in // beta, c_out // alpha * (alpha - 1), 3, stride=conv.stride, padding=1,
                               bias=False)
        self.Tconv = nn.Conv3d(c_in // beta, c_out // alpha, 3, stride=(1, *conv.stride), padding=1, bias=False)
        nn.init.kaiming_normal_(self.Tconv.weight, mode="fan_out", nonlinearity="relu")
        with torch.no_grad():
            self.conv2.weight.copy_(conv.weight[:self.conv2.out_channels, :self.split])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t = check_frame_batch(x.shape[0], self.num_frames), self.num_frames
        left, right = (x[:, :self.split], x[:, self.split:]) if self.beta == 2 else (x, x)
        # (N*T, C, H, W) -> (N, C, T, H, W) is a view; channels_last frames give channels_last_3d clips
        r5 = right.reshape(n, t, *right.shape[1:]).transpose(1, 2)
        y5 = self.Tconv(r5).transpose(1, 2)
        return torch.cat((self.conv2(left), y5.reshape(n * t, *y5.shape[2:])), dim=1)
