"""Table 2 FLOPs and parameters, measured: ``python -m tanet_lightning.complexity [--json]``.

Counting conventions are in ``tanet_lightning.analysis.complexity``. Below Table 2's rows come the modules
after TAM (TAda2D, TEA, GST) beside their own papers' numbers, each counted at its paper's input side
unless ``--size`` is given.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import asdict

from .analysis.complexity import NEWER, ROWS, measure, reference
from .base.errors import handle_user_errors
from .config import schema
from .models import STAGE_NAMES


@handle_user_errors
def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backbone", default="resnet50")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--size", type=int, help="input side (default: each row's paper's: 256 for Table 2)")
    p.add_argument("--position", choices=list("abcd"), help="override every row's position")
    p.add_argument("--stages", nargs="+", default=list(STAGE_NAMES), choices=list(STAGE_NAMES))
    p.add_argument("--classes", type=int, default=400)
    p.add_argument("--rows", nargs="+", default=list(ROWS), metavar="ROW",
                   help="Table 2 row names and the newer modules' (TAda2D, ...)")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    a = p.parse_args(argv)
    schema.validate_args(a, "complexity")
    results = measure(a.rows, a.backbone, a.frames, a.size, a.position, a.stages, a.classes)
    if a.json:
        print(json.dumps([asdict(r) for r in results], indent=1))
        return
    paper_setting = (a.backbone, a.frames, a.classes, a.position, list(a.stages)) == (
        "resnet50", 8, 400, None, list(STAGE_NAMES))
    side = f"{a.size}x{a.size}" if a.size else "S x S (S: each row's paper's)"
    print(f"{a.backbone}, {a.frames}x3x{side}, {a.classes} classes, stages {'/'.join(a.stages)}"
          + ("" if paper_setting else "  (not the papers' setting: paper columns shown for reference only)"))
    print(f"{'model':<20}{'S':>5}{'GFLOPs':>9}{'paper':>11}{'Mparams':>10}{'paper':>8}{'params':>12}{'GFLOPs+attn':>13}")
    for r in results:
        pf, pp, ps = reference(r.model)
        pf_s = "-" if pf is None else f"{pf:.2f}" + ("" if ps == r.size else f"@{ps}")
        pp_s = "-" if pp is None else f"{pp:.2f}"
        print(f"{r.model:<20}{r.size:>5}{r.flops_g:>9.2f}{pf_s:>11}{r.params_m:>10.2f}{pp_s:>8}{r.params:>12,}"
              f"{r.flops_full_g:>13.2f}")
    newer = [r.model for r in results if r.model in NEWER]
    if newer:
        print("\npaper columns: Table 2 of the TANet paper; for the modules after TAM, their own papers:")
    for row in newer:
        rep = NEWER[row][1]
        acc = ", ".join(f"{d} {t1}%" + (f"/{t5}%" if t5 is not None else "") for d, t1, t5 in rep.results)
        print(f"  {row}: {rep.source}; top-1/top-5 at {rep.frames} frames: {acc}" + (f"; {rep.note}" if rep.note
                                                                                         else ""))



if __name__ == "__main__":
    main()
