"""TANet-En: ensemble eval score files: ``python -m tanet_lightning.ensemble a.npz b.npz [--mode prob]
[--weights 1 1]``.

Each file is an ``eval`` output (``scores.npz``); the matching and averaging are
``tanet_lightning.analysis.ensemble``. Prints the ensemble's top-1, top-5 and mean class accuracy as JSON.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from .analysis.ensemble import ensemble
from .base.errors import handle_user_errors
from .config import schema


@handle_user_errors
def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m tanet_lightning.ensemble", description=__doc__.splitlines()[0])
    p.add_argument("scores", nargs="+", help="scores.npz files from tanet_lightning.eval")
    p.add_argument("--mode", choices=["prob", "logits"], default="prob")
    p.add_argument("--weights", type=float, nargs="+")
    a = p.parse_args(argv)
    schema.validate_args(a, "ensemble")
    print(json.dumps(ensemble(a.scores, a.mode, a.weights), indent=1))


if __name__ == "__main__":
    main()
