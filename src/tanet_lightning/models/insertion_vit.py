"""Temporal modules in timm VisionTransformer blocks (the ViT side of ``insertion.py``).

timm VisionTransformer blocks (``x = x + attn(norm1(x)); x = x + mlp(norm2(x))``) have their own
positions (``VIT_POSITIONS``), one module per position, children ``temporal.<position>``
(``blocks.3.temporal.before_attn.fc1.weight``); ``model.blocks`` picks block indices (None: all):
    before_attn   the residual stream entering the attention sub-block: x <- m(x) (ST-Adapter, TokShift)
    attn_branch   the attention branch's input only: x + attn(norm1(m(x))), stream untouched (like a)
    before_mlp    the residual stream entering the MLP sub-block
    mlp_branch    the MLP branch's input only
    after_block   the block's output
A module sees the patch tokens as a frame batch ``(N*T, C, H', W')``, the class (prefix) tokens passed
by unchanged; a module with ``takes_tokens = True`` (TokShift) sees the whole ``(N*T, L, C)`` sequence.
Modules that rewrite a ViT block (AIM) go in with ``replace_vit_blocks``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn as nn
from timm.models.vision_transformer import Block as ViTBlock
from timm.models.vision_transformer import VisionTransformer

from .insertion import POSITIONS, VIT_POSITIONS, TakenOverBlock, TemporalFactory


def vit_blocks(model: nn.Module, blocks: Sequence[int] | None) -> list[tuple[str, nn.Module]]:
    """(qualified name, block) of the chosen block indices of a timm ViT (None: every block), in order."""
    if not isinstance(model, VisionTransformer):
        raise ValueError(f"model.blocks / ViT positions need a timm VisionTransformer, not {type(model).__name__}")
    count = len(model.blocks)
    indices = range(count) if blocks is None else list(blocks)
    bad = [i for i in indices if not isinstance(i, int) or not 0 <= i < count]
    if bad or (blocks is not None and not indices):
        raise ValueError(f"model.blocks={list(indices)}: this ViT has blocks 0..{count - 1}; "
                         f"give a non-empty list of those indices or null (every block)")
    if len(set(indices)) != len(indices):
        raise ValueError(f"model.blocks={list(indices)} names a block twice")
    return [(f"blocks.{i}", model.blocks[i]) for i in sorted(indices)]


class TemporalViTBlock(TakenOverBlock):
    """timm ViT ``Block`` with a temporal module at each of its positions (``temporal``, a ModuleDict)."""

    def __init__(self, block: ViTBlock, modules: dict[str, nn.Module], prefix_tokens: int, grid: tuple[int, int]):
        super().__init__(block)
        self.temporal = nn.ModuleDict(modules)
        self.prefix_tokens, self.grid = prefix_tokens, tuple(grid)

    def _at(self, position: str, x: torch.Tensor) -> torch.Tensor:
        if position not in self.temporal:
            return x
        module = self.temporal[position]
        if getattr(module, "takes_tokens", False):
            return module(x)
        p, (h, w) = self.prefix_tokens, self.grid
        if x.shape[1] != p + h * w:
            raise ValueError(f"expected {p} prefix + {h}x{w} patch tokens, got {x.shape[1]} tokens "
                             "(the ViT was built for another input size)")
        patches = x[:, p:].transpose(1, 2).reshape(x.shape[0], x.shape[2], h, w)
        y = module(patches).flatten(2).transpose(1, 2)
        return torch.cat([x[:, :p], y], dim=1)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False
                ) -> torch.Tensor:
        x = self._at("before_attn", x)
        a = self.attn(self.norm1(self._at("attn_branch", x)), attn_mask=attn_mask, is_causal=is_causal)
        x = x + self.drop_path1(self.ls1(a))
        x = self._at("before_mlp", x)
        x = x + self.drop_path2(self.ls2(self.mlp(self.norm2(self._at("mlp_branch", x)))))
        return self._at("after_block", x)


def _check_vit_positions(positions: Sequence[str]) -> None:
    bad = [p for p in positions if p not in VIT_POSITIONS]
    if bad or not positions:
        resnet = [p for p in bad if p in POSITIONS]
        why = f" ({resnet} are ResNet block positions)" if resnet else ""
        raise ValueError(f"position(s) {bad or list(positions)} are not ViT block positions{why}; "
                         f"choose one or more of {list(VIT_POSITIONS)}")
    if len(set(positions)) != len(positions):
        raise ValueError(f"positions {list(positions)} name one twice")


def insert_vit(model: nn.Module, factory: TemporalFactory, positions: Sequence[str],
               blocks: Sequence[int] | None = None) -> list[str]:
    """Put ``factory(embed_dim)`` at each of ``positions`` of the chosen blocks; return the patched names."""
    _check_vit_positions(positions)
    targets = vit_blocks(model, blocks)
    for name, block in targets:  # validate everything before changing anything
        if type(block) is not ViTBlock:
            raise ValueError(f"{name} is a {type(block).__name__}, not a timm ViT Block (already patched?)")
    for name, block in targets:
        channels = block.norm1.normalized_shape[0]
        new = TemporalViTBlock(block, {p: factory(channels) for p in positions}, model.num_prefix_tokens,
                               model.patch_embed.grid_size)
        model.blocks[int(name.rpartition(".")[2])] = new
    return [n for n, _ in targets]


def replace_vit_blocks(model: nn.Module, factory: Callable[[nn.Module], nn.Module],
                       blocks: Sequence[int] | None = None) -> list[str]:
    """Each chosen block becomes ``factory(block)`` (AIM); return the names replaced."""
    targets = vit_blocks(model, blocks)
    for name, block in targets:
        if type(block) is not ViTBlock:
            raise ValueError(f"{name} is a {type(block).__name__}, not a timm ViT Block (already patched?)")
    for name, block in targets:
        model.blocks[int(name.rpartition(".")[2])] = factory(block)
    return [n for n, _ in targets]


def _add_temporal_embedding(module: nn.Module, args: tuple) -> tuple:
    x = args[0]  # (N*T, L, C): every token of frame t gets embedding t
    t = module.temporal_embedding.shape[1]
    x = (x.view(-1, t, *x.shape[1:]) + module.temporal_embedding.unsqueeze(2)).view_as(x)
    return (x, *args[1:])


def insert_temporal_embedding(model: nn.Module, num_frames: int) -> str:
    """A learned temporal embedding (1, T, C), zero at init, added to every token before the ViT's
    pre-norm (AIM's, where the official ``ViT_CLIP`` adds it: after the position embedding, before
    ``ln_pre``). It is a parameter of ``norm_pre`` (``norm_pre.temporal_embedding``; timm's ``norm_pre``
    is the CLIP ``ln_pre``, an identity on other ViTs), whose forward pre-hook adds it. Returns its name."""
    if not isinstance(model, VisionTransformer):
        raise ValueError(f"a temporal embedding needs a timm VisionTransformer, not {type(model).__name__}")
    norm = model.norm_pre
    if hasattr(norm, "temporal_embedding"):
        raise ValueError("this ViT already has a temporal embedding")
    norm.temporal_embedding = nn.Parameter(torch.zeros(1, num_frames, model.embed_dim))
    norm.register_forward_pre_hook(_add_temporal_embedding)
    return "norm_pre.temporal_embedding"
