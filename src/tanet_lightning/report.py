"""A sweep's local report (and W&B report definition): ``python -m tanet_lightning.report SWEEP_DIR|EXPERIMENT``.

Writes ``report.md``/``.csv``/``.png`` into the sweep directory (``tanet_lightning.analysis.report``);
``--wandb`` publishes the W&B Report and workspace view; ``--page`` writes an experiments/ page.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from .analysis import wandb_report
from .analysis.paper import RECIPES, TABLES
from .analysis.report import find_sweep, report, write_page
from .base.errors import handle_user_errors


@handle_user_errors
def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("sweep", nargs="?", help="a Hydra multirun directory, or an experiment name (its newest sweep)")
    p.add_argument("--page", type=Path, help="also write this experiments/NAME.md page")
    p.add_argument("--wandb", action="store_true",
                   help="publish the sweep's W&B Report and workspace view (needs `wandb login`; run "
                        "`wandb sync` on the offline runs first)")
    p.add_argument("--entity", help="W&B entity to publish to (default: the sweep's, else your default entity)")
    p.add_argument("--init-pages", type=Path, metavar="DIR",
                   help="write a paper-only page for every experiment that has no page in DIR yet")
    a = p.parse_args(argv)
    if a.init_pages:
        for name in [*TABLES, *RECIPES]:
            if not (a.init_pages / f"{name}.md").exists():
                write_page(a.init_pages / f"{name}.md", name)
    if a.sweep:
        try:
            sweep_dir = find_sweep(a.sweep)
        except FileNotFoundError as e:
            p.error(str(e))
        print(report(sweep_dir, a.page).read_text())
        if a.wandb:
            try:
                urls = wandb_report.publish(wandb_report.load(sweep_dir), a.entity)
            except (wandb_report.PublishError, FileNotFoundError) as e:
                p.exit(2, f"{p.prog}: error: W&B report of {sweep_dir} not published: {e}\n")
            print("W&B report: {}\nW&B workspace view: {}".format(*urls))
    elif not a.init_pages:
        p.error("give a SWEEP_DIR or an experiment name (or --init-pages DIR)")




if __name__ == "__main__":
    main()
