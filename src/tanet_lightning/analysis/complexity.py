"""Model complexity in the paper's convention (the ``complexity`` application prints it).

One FLOP = one multiply-add, model in eval mode, one clip of T x 3 x S x S; convolutions, linear
layers, TAM's adaptive aggregation (K multiply-adds per output element) and BatchNorm (2 per element,
as fvcore counts it in eval mode) are charged; pooling, activations and element-wise products are not
(reference_impl.md 8.2). The non-local blocks' attention products (batched matmuls) are reported
apart: the paper's 64.49G for NL C2D leaves them out. Counting runs on the meta device: shapes only,
no weights, so every row of Table 2 takes well under a second.

Modules after TAM (TAda2D, TEA, GST) are rows too (``NEWER``), beside their own papers' numbers
(``TemporalSpec.reported``), each measured by default at the input side its paper counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..models import STAGE_NAMES, create_video_model
from ..models.flops import count_exact
from ..models.temporal import TEMPORAL, Reported

# paper row name -> (temporal module, paper GFLOPs, paper Mparams): from the registry, where each
# module also has its own position (TSM: a)
TABLE2: dict[str, tuple[str, float, float]] = {
    spec.paper_row: (name, *spec.paper[:2]) for name, spec in TEMPORAL.items() if spec.paper
}
TABLE2_SIZE = 256  # Table 2 counts 8 x 256 x 256 clips
# row name -> (temporal module, its own paper's numbers): the modules after TAM
NEWER: dict[str, tuple[str, Reported]] = {
    spec.paper_row: (name, spec.reported) for name, spec in TEMPORAL.items() if spec.reported
}
ROWS = (*TABLE2, *NEWER)


def reference(row: str) -> tuple[float | None, float | None, int]:
    """(GFLOPs, Mparams, input side) a row's paper gives: Table 2's or the module's own paper's."""
    if row in TABLE2:
        return (*TABLE2[row][1:], TABLE2_SIZE)
    r = NEWER[row][1]
    return r.gflops, r.mparams, r.size

@dataclass
class Complexity:
    model: str
    flops_g: float  # paper convention (no attention products)
    params_m: float
    params: int
    flops_full_g: float  # + attention matmuls (differs for NL C2D only)
    macs: int = 0  # exact multiply-adds behind flops_g (deterministic: pinned by the tests)
    size: int = TABLE2_SIZE  # input side counted


def measure(
    rows: Sequence[str] = tuple(TABLE2),
    backbone: str = "resnet50",
    num_frames: int = 8,
    size: int | None = None,
    position: str | None = None,
    stages: Sequence[str] = STAGE_NAMES,
    num_classes: int = 400,
) -> list[Complexity]:
    """Count each row; ``size=None``: the side its paper counts (256 for Table 2, the module's own paper's
    for the newer rows)."""
    out = []
    for row in rows:
        if row not in ROWS:
            raise ValueError(f"unknown complexity row {row!r}; choose from {list(ROWS)}")
        temporal = TABLE2[row][0] if row in TABLE2 else NEWER[row][0]
        side = size or reference(row)[2]
        with torch.device("meta"):
            model = create_video_model(backbone, temporal, num_classes, num_frames,
                                       position=position, stages=stages, dropout=0.0)
        macs, full, params = count_exact(model, (1, num_frames, 3, side, side))
        out.append(Complexity(row, round(macs / 1e9, 4), round(params / 1e6, 4), params, round(full / 1e9, 4), macs,
                              side))
    return out
