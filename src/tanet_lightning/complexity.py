"""Table 2 FLOPs and parameters, measured: ``python -m tanet_lightning.complexity [--json]``.

Counting conventions are in ``tanet_lightning.analysis.complexity``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import asdict

from .analysis.complexity import TABLE2, measure
from .base.errors import handle_user_errors
from .models import STAGE_NAMES
from .training import schema


@handle_user_errors
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
    schema.validate_args(a, "complexity")
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
