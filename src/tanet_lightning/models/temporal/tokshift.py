"""TokShift (Zhang et al., "Token Shift Transformer for Video Classification", ACM MM 2021).

A zero-parameter shift of the class token over time: of its channels, [0, C/fold_div) take frame t+1's and
[C/fold_div, 2C/fold_div) frame t-1's (zeros at the clip ends); the patch tokens are not moved. The official
ViT block (VideoNetworks/TokShift-Transformer, ``token_shift``) shifts the residual stream before the
attention and again before the MLP, with ``fold_div=4`` (the ``k400_tokshift_div4_8x32_base_224`` config:
ViT-B/16 ImageNet-21k, K400 77.28 % at 8 frames). It sees whole token sequences ``(N*T, L, C)`` with the
class token first (``takes_tokens``), where the frame-batch modules see patch tokens only.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..fit import check_frame_batch
from .checks import _check_divides, _check_positive_int

__all__ = ["TokenShift"]


class TokenShift(nn.Module):
    takes_tokens = True  # the ViT block passes (N*T, L, C) with the class token at index 0

    def __init__(self, channels: int, num_frames: int, fold_div: int = 4):
        super().__init__()
        _check_positive_int("num_frames", num_frames)
        _check_divides("fold_div", fold_div, channels)
        if fold_div < 2:
            raise ValueError(f"fold_div must be at least 2 (two folds are shifted), got {fold_div}")
        self.channels, self.num_frames, self.fold = channels, num_frames, channels // fold_div

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[-1] != self.channels:
            raise ValueError(f"expected tokens (N*T, L, {self.channels}), got shape {tuple(x.shape)}")
        n = check_frame_batch(x.shape[0], self.num_frames)
        x4 = x.view(n, self.num_frames, *x.shape[1:])
        f = self.fold
        cls = x4[:, :, 0]
        shifted = torch.cat([
            torch.cat([cls[:, 1:, :f], torch.zeros_like(cls[:, :1, :f])], dim=1),  # frame t reads t+1
            torch.cat([torch.zeros_like(cls[:, :1, f:2 * f]), cls[:, :-1, f:2 * f]], dim=1),  # t reads t-1
            cls[:, :, 2 * f:],
        ], dim=-1)
        return torch.cat([shifted.unsqueeze(2), x4[:, :, 1:]], dim=2).view_as(x)
