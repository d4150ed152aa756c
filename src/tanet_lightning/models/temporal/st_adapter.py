"""ST-Adapter (Pan et al., "ST-Adapter: Parameter-Efficient Image-to-Video Transfer Learning", NeurIPS 2022).

A bottleneck on a ViT's patch tokens: a linear down-projection, a depthwise 3-D convolution over
(T, H', W') (kernel 3x1x1: time only, the official configs), a linear up-projection, added to the tokens.
The ViT block places it on the residual stream before the attention (``before_attn``, the paper's Fig. 2)
and / or before the MLP (``before_mlp``); the official K400 model (``clip_vit_base_patch16_adapter12x384``)
has one adapter per block before the MLP, the SSv2 one (``adapter24x384``) one before each.

Identity at step 0, as in the official ``Adapter``: the depthwise conv's weight and bias are zero (and both
linear biases), so the patched network is the image model; the conv is the one zero-initialised part, and
after one step it is not zero, because fc1 and fc2 keep their random init and pass gradient to it.
The class token is not adapted (the official adapter adds to ``x[:, 1:]`` only): the ViT block passes
patch tokens only, as a frame batch ``(N*T, C, H', W')``. Names follow the official module
(``fc1``, ``conv``, ``fc2``), so its adapter weights map one to one.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .checks import _check_kernel_size, _check_positive_int, _frames

__all__ = ["STAdapter"]


class STAdapter(nn.Module):
    """``STAdapter(channels, num_frames, width=None, kernel_size=3)``: ``width`` is the bottleneck's channels
    (None: channels // 2, the official 384 of ViT-B/16's 768)."""

    def __init__(self, channels: int, num_frames: int, width: int | None = None, kernel_size: int = 3):
        super().__init__()
        _check_positive_int("channels", channels)
        _check_positive_int("num_frames", num_frames)
        _check_kernel_size("kernel_size", kernel_size)
        width = channels // 2 if width is None else width
        _check_positive_int("width", width)
        self.channels, self.num_frames = channels, num_frames
        self.fc1 = nn.Linear(channels, width)
        self.conv = nn.Conv3d(width, width, (kernel_size, 1, 1), padding=(kernel_size // 2, 0, 0), groups=width)
        self.fc2 = nn.Linear(width, channels)
        for p in (self.conv.weight, self.conv.bias, self.fc1.bias, self.fc2.bias):
            nn.init.zeros_(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = _frames(x, self.num_frames, self.channels)
        _, c, h, w = x.shape
        tokens = x.view(n, self.num_frames, c, h, w).permute(0, 1, 3, 4, 2)  # (N, T, H, W, C)
        y = self.fc1(tokens).permute(0, 4, 1, 2, 3)  # (N, width, T, H, W)
        y = self.fc2(self.conv(y).permute(0, 2, 3, 4, 1))  # (N, T, H, W, C)
        return x + y.permute(0, 1, 4, 2, 3).reshape_as(x)
