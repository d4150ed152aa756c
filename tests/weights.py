"""Random weights for tests of modules inside residual branches: timm zero-inits the last BN of each
block, which would hide such a module at initialisation, so every weight is drawn, BN gammas included."""

from __future__ import annotations

import torch
import torch.nn as nn


def randomized(m: nn.Module, seed: int = 0, scale: float = 1.0) -> nn.Module:
    """Every parameter (BN gammas included) and BN statistic drawn at random: N(0, scale^2), running
    variances U(0.5, 1.5) so they stay positive."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in [*m.named_parameters(), *m.named_buffers()]:
            if t.is_floating_point():
                t.copy_(torch.rand(t.shape, generator=g) + 0.5 if name.endswith("running_var")
                        else torch.randn(t.shape, generator=g) * scale)
    return m
