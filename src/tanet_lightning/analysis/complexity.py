"""Model complexity in the paper's convention: ``python -m tanet_lightning.complexity [--json]``.

One FLOP = one multiply-add, model in eval mode, one clip of T x 3 x S x S; convolutions, linear
layers, TAM's adaptive aggregation (K multiply-adds per output element) and BatchNorm (2 per element,
as fvcore counts it in eval mode) are charged; pooling, activations and element-wise products are not
(reference_impl.md 8.2). The non-local blocks' attention products (batched matmuls) are reported
apart: the paper's 64.49G for NL C2D leaves them out. Counting runs on the meta device: shapes only,
no weights, so every row of Table 2 takes well under a second.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from ..models import STAGE_NAMES, create_video_model
from ..models.temporal import TEMPORAL
from ..training import schema

# paper row name -> (temporal module, paper GFLOPs, paper Mparams): from the registry, where each
# module also has its own position (TSM: a)
TABLE2: dict[str, tuple[str, float, float]] = {
    spec.paper_row: (name, *spec.paper[:2]) for name, spec in TEMPORAL.items() if spec.paper
}

_BN_OPS = ("native_batch_norm", "_native_batch_norm_legit_no_training", "_native_batch_norm_legit")


def _bn_flops(x_shape, *args, out_shape=None, **kwargs) -> int:
    return 2 * 2 * math.prod(x_shape)  # FlopCounterMode counts 2 per multiply-add; BN = 2 per element


@dataclass
class Complexity:
    model: str
    flops_g: float  # paper convention (no attention products)
    params_m: float
    params: int
    flops_full_g: float  # + attention matmuls (differs for NL C2D only)
    macs: int = 0  # exact multiply-adds behind flops_g (deterministic: pinned by the tests)


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


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="resnet50")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--size", type=int, default=256, help="input side (the paper's Table 2 uses 256)")
    p.add_argument("--position", choices=list("abcd"), help="override every row's position")
    p.add_argument("--stages", nargs="+", default=list(STAGE_NAMES), choices=list(STAGE_NAMES))
    p.add_argument("--classes", type=int, default=400)
    p.add_argument("--rows", nargs="+", default=list(TABLE2), metavar="ROW", help="Table 2 row names")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    a = p.parse_args(argv)
    schema.check_args(a, "complexity")
    results = measure(a.rows, a.backbone, a.frames, a.size, a.position, a.stages, a.classes)
    if a.json:
        print(json.dumps([asdict(r) for r in results], indent=1))
        return
    paper_setting = (a.backbone, a.frames, a.size, a.classes, a.position, list(a.stages)) == (
        "resnet50", 8, 256, 400, None, list(STAGE_NAMES))
    print(f"{a.backbone}, {a.frames}x3x{a.size}x{a.size}, {a.classes} classes, stages {'/'.join(a.stages)}"
          + ("" if paper_setting else "  (not the paper's setting: paper columns shown for reference only)"))
    print(f"{'model':<20}{'GFLOPs':>9}{'paper':>8}{'Mparams':>10}{'paper':>8}{'params':>12}{'GFLOPs+attn':>13}")
    for r in results:
        _, pf, pp = TABLE2[r.model]
        print(f"{r.model:<20}{r.flops_g:>9.2f}{pf:>8.2f}{r.params_m:>10.2f}{pp:>8.2f}{r.params:>12,}"
              f"{r.flops_full_g:>13.2f}")


if __name__ == "__main__":
    main()
