"""Model complexity in the paper's convention (the ``complexity`` application prints it).

One FLOP = one multiply-add, model in eval mode, one clip of T x 3 x S x S; convolutions, linear
layers, TAM's adaptive aggregation (K multiply-adds per output element) and BatchNorm (2 per element,
as fvcore counts it in eval mode) are charged; pooling, activations and element-wise products are not
(the convention that reproduces the paper's 42.95G / 43.02G for TANet-50). The non-local blocks'
attention products (batched matmuls) are reported apart: the paper's 64.49G for NL C2D leaves them out.
Counting runs on the meta device: shapes only, no weights, so every row of Table 2 takes well under a second.

Modules after TAM (TAda2D, TEA, GST) are rows too (``NEWER``), beside their own papers' numbers
(``TemporalSpec.reported``), each measured by default at the input side its paper counts.

ViT rows. The modules defined on ViTs only (ST-Adapter, AIM, TokShift) are measured on their paper's ViT
(``Reported.backbone``) whatever ``backbone`` is; any other row runs on a ViT when ``backbone`` is one
(``measure(["C2D", "TANet"], VIT_B16)``: TAM on tokens, beside the image model: ``TAM_ON_VIT``). On a ViT
the attention products are part of the image model, and the papers differ in whether they count them
(``ATTENTION_COUNTED``): ST-Adapter's 455 GFLOPs for 3 views (151.7 a view) and AIM's 606 (202 a view) do,
TokShift's 134.7 does not (ViT-B/16 at 8 x 224^2 is 134.8 without them, 140.5 with them). ``paper_g``
picks the count each paper made. ``trained_params`` is what ``model.freeze_backbone=true`` trains: the
parameters the image model did not have (temporal modules, adapters) and the classifier.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..models import STAGE_NAMES, create_video_model
from ..models.backbones import VIT_FAMILIES, backbone_family
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
VIT_B16 = "vit_base_patch16_clip_224.openai"  # the frozen image model of ST-Adapter and AIM
VIT_SIZE = 224  # the ViTs' own input side (their position embeddings are for 14 x 14 patches)
TAM_ON_VIT = ("C2D", "TANet")  # rows no paper counts on a ViT: the image model, and TAM on its tokens
# whether a ViT row's paper counts the attention products (q k^T and attn v): see the module docstring
ATTENTION_COUNTED = {"ST-Adapter": True, "AIM": True, "TokShift": False}


def reference(row: str) -> tuple[float | None, float | None, int]:
    """(GFLOPs, Mparams, input side) a row's paper gives: Table 2's or the module's own paper's."""
    if row in TABLE2:
        return (*TABLE2[row][1:], TABLE2_SIZE)
    r = NEWER[row][1]
    return r.gflops, r.mparams, r.size


def paper_backbone(row: str) -> str:
    """The backbone a row's paper numbers are for (Table 2: ResNet-50)."""
    return NEWER[row][1].backbone if row in NEWER else "resnet50"


@dataclass
class Complexity:
    model: str
    flops_g: float  # paper convention (no attention products)
    params_m: float
    params: int
    flops_full_g: float  # + attention matmuls (NL C2D's, a ViT's self-attention)
    macs: int = 0  # exact multiply-adds behind flops_g (deterministic: pinned by the tests)
    size: int = TABLE2_SIZE  # input side counted
    backbone: str = "resnet50"
    trained_params: int = 0  # under model.freeze_backbone=true: the new modules and the classifier
    full_macs: int = 0  # exact multiply-adds behind flops_full_g

    @property
    def trained_m(self) -> float:
        return round(self.trained_params / 1e6, 4)

    @property
    def paper_g(self) -> float:
        """This row's GFLOPs counted the way its paper counts (with the attention products where it does)."""
        return self.flops_full_g if ATTENTION_COUNTED.get(self.model) else self.flops_g


def is_vit(backbone: str) -> bool:
    return backbone_family(backbone) in VIT_FAMILIES


def row_backbone(row: str, backbone: str) -> str:
    """The backbone a row is measured on: ``backbone``, unless the row's module is not defined there (the
    ViT-only modules on a CNN: their paper's ViT)."""
    spec = TEMPORAL[TABLE2[row][0] if row in TABLE2 else NEWER[row][0]]
    if not spec.cnn and not is_vit(backbone):
        return NEWER[row][1].backbone
    return backbone


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
    for the newer rows, 224 on a ViT). ``position`` and ``stages`` apply to the rows on CNNs."""
    out = []
    for row in rows:
        if row not in ROWS:
            raise ValueError(f"unknown complexity row {row!r}; choose from {list(ROWS)}")
        temporal = TABLE2[row][0] if row in TABLE2 else NEWER[row][0]
        net = row_backbone(row, backbone)
        vit = is_vit(net)
        side = size or (VIT_SIZE if vit else reference(row)[2])
        place = {} if vit else {"position": position, "stages": stages}
        with torch.device("meta"):
            model = create_video_model(net, temporal, num_classes, num_frames, dropout=0.0, **place)
        macs, full, params = count_exact(model, (1, num_frames, 3, side, side))
        model.freeze_backbone()
        trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
        out.append(Complexity(row, round(macs / 1e9, 4), round(params / 1e6, 4), params, round(full / 1e9, 4), macs,
                              side, net, trained, full))
    return out
