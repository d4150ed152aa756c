"""AIM (Yang et al., "AIM: Adapting Image Models for Efficient Video Action Recognition", ICLR 2023).

A timm ViT block rewritten with three bottleneck adapters (Linear C -> C/4, GELU, Linear C/4 -> C), the
image weights frozen around them (official code: taoyang1122/adapt-image-models, ``vit_clip.py``):

    temporal  x = x + drop_path(T_Adapter(attn(norm1(x over time))))   the block's own attention, run over
                                                                      the T frames of every token
    spatial   x = x + S_Adapter(ls1(attn(norm1(x))))                  S_Adapter keeps a skip: a + adapter(a)
    joint     x = x + ls2(mlp(norm2(x))) + drop_path(scale * MLP_Adapter(norm2(x)))

as the official block has them: stochastic depth on the temporal and joint adapters only (the image
block's own ``drop_path1`` / ``drop_path2`` rates); ``ls1`` / ``ls2`` are the image block's layer scales
(identities on CLIP). ``scale`` is the official ``adapter_scale`` (0.5); ``num_tadapter=2`` adds
``T_Adapter_in`` (with a skip) before the temporal attention (the official SSv2 setting). Each adapter's
second linear is zero at init, as in the official ``init_weights``, so the block is the image block at
step 0. AIM's learned temporal embedding (zeros, (1, T, C)) is added to every token before the ViT's
pre-norm, as the official ``ViT_CLIP.forward`` does (``insertion.insert_temporal_embedding``, asked for by
the spec's ``temporal_embedding``). Class and patch tokens are adapted alike. Placement ``replace_block``:
``factory(block, num_frames, **kwargs)``; the block's children keep their names, so timm weights load.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..fit import check_frame_batch
from .checks import _check_positive_int

__all__ = ["Adapter", "AIMBlock", "aim"]


class Adapter(nn.Module):
    """AIM's bottleneck: D_fc2(act(D_fc1(x))), plus x when ``skip``; D_fc2 starts at zero."""

    def __init__(self, channels: int, mlp_ratio: float = 0.25, skip: bool = True):
        super().__init__()
        hidden = int(channels * mlp_ratio)
        _check_positive_int("adapter width (channels x mlp_ratio)", hidden)
        self.skip = skip
        self.D_fc1 = nn.Linear(channels, hidden)
        self.act = nn.GELU()
        self.D_fc2 = nn.Linear(hidden, channels)
        nn.init.zeros_(self.D_fc2.weight)
        nn.init.zeros_(self.D_fc2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.D_fc2(self.act(self.D_fc1(x)))
        return x + y if self.skip else y


_BLOCK_PARTS = ("norm1", "attn", "ls1", "drop_path1", "norm2", "mlp", "ls2", "drop_path2")


class AIMBlock(nn.Module):
    def __init__(self, block: nn.Module, num_frames: int, mlp_ratio: float = 0.25, scale: float = 0.5,
                 num_tadapter: int = 1):
        super().__init__()
        _check_positive_int("num_frames", num_frames)
        missing = [p for p in _BLOCK_PARTS if not hasattr(block, p)]
        if missing:
            raise ValueError(f"AIM adapts timm ViT blocks (norm1, attn, ls1, norm2, mlp, ls2); "
                             f"{type(block).__name__} lacks {missing}")
        if num_tadapter not in (1, 2):
            raise ValueError(f"num_tadapter must be 1 or 2, got {num_tadapter}")
        for name, child in block.named_children():  # the image block's parts, under their own names
            self.add_module(name, child)
        channels = block.norm1.normalized_shape[0]
        self.num_frames, self.scale = num_frames, scale
        self.T_Adapter_in = Adapter(channels, mlp_ratio) if num_tadapter == 2 else None
        self.T_Adapter = Adapter(channels, mlp_ratio, skip=False)
        self.S_Adapter = Adapter(channels, mlp_ratio)
        self.MLP_Adapter = Adapter(channels, mlp_ratio, skip=False)

    def _over_time(self, x: torch.Tensor, n: int) -> torch.Tensor:
        """(N*T, L, C) -> (N*L, T, C): every token's sequence of frames."""
        _, length, c = x.shape
        return x.view(n, self.num_frames, length, c).transpose(1, 2).reshape(n * length, self.num_frames, c)

    def _back(self, xt: torch.Tensor, n: int) -> torch.Tensor:
        length, c = xt.shape[0] // n, xt.shape[-1]
        return xt.view(n, length, self.num_frames, c).transpose(1, 2).reshape(n * self.num_frames, length, c)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        if attn_mask is not None:
            raise ValueError("AIM blocks take no attention mask")
        n = check_frame_batch(x.shape[0], self.num_frames)
        h = self.norm1(self._over_time(x, n))
        if self.T_Adapter_in is not None:
            h = self.T_Adapter_in(h)
        x = x + self.drop_path1(self._back(self.T_Adapter(self.attn(h)), n))
        x = x + self.S_Adapter(self.ls1(self.attn(self.norm1(x))))
        xn = self.norm2(x)
        return x + self.ls2(self.mlp(xn)) + self.drop_path2(self.scale * self.MLP_Adapter(xn))


def aim(block: nn.Module, num_frames: int, mlp_ratio: float = 0.25, scale: float = 0.5, num_tadapter: int = 1
        ) -> nn.Module:
    return AIMBlock(block, num_frames, mlp_ratio, scale, num_tadapter)
