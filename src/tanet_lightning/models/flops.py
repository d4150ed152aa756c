"""Multiply-adds and parameters of a network on one clip, counted on the meta device (shapes only).

The paper's convention (one FLOP = one multiply-add; BatchNorm charged 2 per element as fvcore does in
eval mode; non-local attention products reported apart) is explained in ``analysis/complexity.py``,
which builds Table 2 from these counts; training reports them for every run.
"""

from __future__ import annotations

import math

import torch
from torch.utils.flop_counter import FlopCounterMode

_BN_OPS = ("native_batch_norm", "_native_batch_norm_legit_no_training", "_native_batch_norm_legit")


def _bn_flops(x_shape, *args, out_shape=None, **kwargs) -> int:
    return 2 * 2 * math.prod(x_shape)  # FlopCounterMode counts 2 per multiply-add; BN = 2 per element


def count_exact(model: torch.nn.Module, clip: tuple[int, ...]) -> tuple[int, int, int]:
    """(paper-convention multiply-adds, with attention products, parameters) of one clip (1, T, 3, H, W)."""
    mapping = {getattr(torch.ops.aten, op): _bn_flops for op in _BN_OPS if hasattr(torch.ops.aten, op)}
    model = model.eval()
    x = torch.empty(clip, device="meta")
    with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        model(x)
    per_op = counter.get_flop_counts()["Global"]
    attention = sum(v for op, v in per_op.items() if "bmm" in str(op))
    total = sum(per_op.values())
    params = sum(p.numel() for p in model.parameters())
    return (total - attention) // 2, total // 2, params  # FlopCounterMode counts 2 per multiply-add


def count(model: torch.nn.Module, clip: tuple[int, ...]) -> tuple[float, float, int]:
    """(paper-convention GFLOPs, full GFLOPs, parameters) of one clip (1, T, 3, H, W)."""
    macs, full, params = count_exact(model, clip)
    return macs / 1e9, full / 1e9, params
