"""Table 2 FLOPs and parameters, measured: ``python -m tanet_lightning.complexity [--json]``.

Counting conventions are in ``tanet_lightning.analysis.complexity``. Below Table 2's rows come the modules
after TAM (TAda2D, TEA, GST) and the ViT modules (ST-Adapter, AIM, TokShift, on their papers' ViT-B/16)
beside their own papers' numbers, each counted at its paper's input side unless ``--size`` is given; then
TAM on the tokens of a CLIP ViT-B/16 beside the image model, which no paper counts. ``trained`` is what
``model.freeze_backbone=true`` trains (the new modules and the classifier). ``--backbone`` a ViT: every row
that is defined on a ViT, on that one.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import asdict

from .analysis.complexity import (
    NEWER,
    ROWS,
    TAM_ON_VIT,
    TEMPORAL,
    VIT_B16,
    Complexity,
    is_vit,
    measure,
    paper_backbone,
    reference,
)
from .base.errors import handle_user_errors
from .config import schema
from .models import STAGE_NAMES


def vit_rows() -> list[str]:
    """The rows whose module is defined on a ViT (Table 2's in-block modules, C2D, the ViT modules)."""
    spec = {s.paper_row: s for s in TEMPORAL.values()}
    return [r for r in ROWS if spec[r].placement in ("in_block", "replace_block", "none")]


@handle_user_errors
def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="resnet50",
                   help="every row's backbone; the ViT-only modules stay on their papers' ViT on a CNN")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--size", type=int, help="input side (default: each row's paper's: 256 for Table 2, 224 on ViTs)")
    p.add_argument("--position", choices=list("abcd"), help="override every CNN row's position")
    p.add_argument("--stages", nargs="+", default=list(STAGE_NAMES), choices=list(STAGE_NAMES))
    p.add_argument("--classes", type=int, default=400)
    p.add_argument("--rows", nargs="+", metavar="ROW",
                   help="Table 2 row names and the newer modules' (TAda2D, ..., ST-Adapter, AIM, TokShift); "
                        "default: all of them (on a ViT backbone: those defined on ViTs)")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    a = p.parse_args(argv)
    default_rows = a.rows is None
    if default_rows:
        a.rows = list(ROWS)
    schema.validate_args(a, "complexity")
    if default_rows and is_vit(a.backbone):
        a.rows = vit_rows()
    results = measure(a.rows, a.backbone, a.frames, a.size, a.position, a.stages, a.classes)
    paper_setting = (a.backbone, a.frames, a.classes, a.position, list(a.stages)) == (
        "resnet50", 8, 400, None, list(STAGE_NAMES))
    on_vit = measure(TAM_ON_VIT, VIT_B16, a.frames, a.size, None, STAGE_NAMES, a.classes) \
        if default_rows and not is_vit(a.backbone) else []
    if a.json:
        print(json.dumps([{**asdict(r), "trained_m": r.trained_m} for r in results + on_vit], indent=1))
        return
    side = f"{a.size}x{a.size}" if a.size else "S x S (S: each row's paper's)"
    print(f"{a.backbone}, {a.frames}x3x{side}, {a.classes} classes, stages {'/'.join(a.stages)}"
          + ("" if paper_setting else "  (not the papers' setting: paper columns shown for reference only)"))
    table(results)
    newer = [r.model for r in results if r.model in NEWER]
    if newer:
        print("\npaper columns: Table 2 of the TANet paper; for the modules after TAM, their own papers "
              "(GFLOPs per view; * with the attention products, as that paper counts):")
    for row in newer:
        rep = NEWER[row][1]
        acc = ", ".join(f"{d} {t1}%" + (f"/{t5}%" if t5 is not None else "") for d, t1, t5 in rep.results)
        print(f"  {row}: {rep.source}; top-1/top-5 at {rep.frames} frames: {acc}" + (f"; {rep.note}" if rep.note
                                                                                         else ""))
    if on_vit:
        print(f"\nTAM on the patch tokens of {VIT_B16} (before each block's attention branch), beside the image "
              "model (C2D): no paper counts these")
        table(on_vit)


def table(results: list[Complexity]) -> None:
    print(f"{'model':<20}{'backbone':<34}{'S':>5}{'GFLOPs':>9}{'+attn':>9}{'paper':>10}{'Mparams':>9}{'paper':>7}"
          f"{'trained':>9}{'paper':>7}{'params':>13}")
    for r in results:
        # the paper's numbers are for its backbone: beside a row on another one, none
        same = r.backbone.split(".")[0] == paper_backbone(r.model).split(".")[0]
        pf, pp, ps = reference(r.model) if same else (None, None, r.size)
        mark = "*" if r.paper_g != r.flops_g else ""
        pf_s = "-" if pf is None else f"{pf:.2f}{mark}" + ("" if ps == r.size else f"@{ps}")
        pp_s = "-" if pp is None else f"{pp:.2f}"
        pt = NEWER[r.model][1].trained_mparams if r.model in NEWER and same else None
        pt_s = "-" if pt is None else f"{pt:.2f}"
        print(f"{r.model:<20}{r.backbone:<34}{r.size:>5}{r.flops_g:>9.2f}{r.flops_full_g:>9.2f}{pf_s:>10}"
              f"{r.params_m:>9.2f}{pp_s:>7}{r.trained_m:>9.2f}{pt_s:>7}{r.params:>13,}")


if __name__ == "__main__":
    main()
