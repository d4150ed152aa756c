"""Model complexity in the paper's convention (the ``complexity`` application prints it).

One FLOP = one multiply-add, model in eval mode, one clip of T x 3 x S x S; convolutions, linear
layers, TAM's adaptive aggregation (K multiply-adds per output element) and BatchNorm (2 per element,
as fvcore counts it in eval mode) are charged; pooling, activations and element-wise products are not
(reference_impl.md 8.2). The non-local blocks' attention products (batched matmuls) are reported
apart: the paper's 64.49G for NL C2D leaves them out. Counting runs on the meta device: shapes only,
no weights, so every row of Table 2 takes well under a second.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..models import STAGE_NAMES, create_video_model
from ..models.flops import count_exact
from ..models.temporal import TEMPORAL

# paper row name -> (temporal module, paper GFLOPs, paper Mparams): from the registry, where each
# module also has its own position (TSM: a)
TABLE2: dict[str, tuple[str, float, float]] = {
    spec.paper_row: (name, *spec.paper[:2]) for name, spec in TEMPORAL.items() if spec.paper
}

@dataclass
class Complexity:
    model: str
    flops_g: float  # paper convention (no attention products)
    params_m: float
    params: int
    flops_full_g: float  # + attention matmuls (differs for NL C2D only)
    macs: int = 0  # exact multiply-adds behind flops_g (deterministic: pinned by the tests)


def measure(
    rows: Sequence[str] = tuple(TABLE2),
    backbone: str = "resnet50",
    num_frames: int = 8,
    size: int = 256,
    position: str | None = None,
    stages: Sequence[str] = STAGE_NAMES,
    num_classes: int = 400,
) -> list[Complexity]:
    out = []
    for row in rows:
        if row not in TABLE2:
            raise ValueError(f"unknown Table 2 row {row!r}; choose from {list(TABLE2)}")
        temporal = TABLE2[row][0]
        with torch.device("meta"):
            model = create_video_model(backbone, temporal, num_classes, num_frames,
                                       position=position, stages=stages, dropout=0.0)
        macs, full, params = count_exact(model, (1, num_frames, 3, size, size))
        out.append(Complexity(row, round(macs / 1e9, 4), round(params / 1e6, 4), params, round(full / 1e9, 4), macs))
    return out
