"""Local comparison report of a sweep, no W&B needed (the ``report`` application writes it).

Reads every job directory of a Hydra multirun (``.hydra/overrides.yaml``, ``config_resolved.yaml``,
``metrics.json``; ``run.json`` says which job failed or was interrupted) and writes, into SWEEP_DIR:
``report.md`` (laid out like the paper's table, the paper's numbers beside ours when the experiment
has them, FLOPs/params from the complexity counter, a short hash of the test videos each number is of),
``report.csv`` and ``report.png`` (top-1 per setting, error bars over seeds). Unfinished and failed
jobs are listed as such.
``--page experiments/NAME.md`` also writes the experiment's page for the repository.

Three rooms, composed here: reading a sweep (sweep_jobs.py), the rows and their renderings (rows.py: the
markdown, CSV and picture), the experiments page (pages.py). Their names are importable from here too.

When the jobs logged to W&B (``logger=wandb``), the W&B comparison of the sweep is defined too
(``wandb_report.json``, see analysis/wandb_report.py); ``--wandb`` publishes it (a Report and a saved
workspace view). A sweep writes all of this by itself when its last job ends (tanet_lightning/sweep.py).
"""

from __future__ import annotations

from pathlib import Path

from ..base.errors import ConfigError
from . import wandb_report
from .pages import write_page
from .paper import RECIPES, TABLES
from .rows import (
    BLIND_LEVEL,
    Row,
    cost_words,
    data_label,
    facets,
    figure,
    group_rows,
    in_paper_setting,
    overlap_markdown,
    plot,
    setting_words,
    summary_markdown,
    table_markdown,
    title_of,
    write_csv,
)
from .sweep_jobs import Job, cfg_value, collect, experiment_of, find_sweep

# importable from here as before the split (the report application, sweep.py, the tests)
__all__ = ["Job", "Row", "collect", "facets", "figure", "find_sweep", "group_rows", "in_paper_setting",
           "overlap_markdown", "report", "table_markdown", "title_of", "write_csv", "write_page"]


def report(sweep_dir: Path, page: Path | None = None) -> Path:
    jobs = collect(sweep_dir)
    experiment = experiment_of(jobs)
    if page is not None and experiment not in TABLES and experiment not in RECIPES:  # before any file is written
        raise ConfigError(f"--page writes the experiments page of a paper experiment ({', '.join(sorted(TABLES))} "
                          f"or a recipe); {sweep_dir} is a sweep of {experiment!r}: drop --page")
    title = title_of(jobs, experiment)
    matched = in_paper_setting(jobs, experiment)
    per_facet = [(label, group_rows(part, experiment)) for label, part in facets(jobs, experiment)]
    rows = [r for _, rs in per_facet for r in rs]
    sections = []
    for label, facet_rows in per_facet:
        part = "\n\n".join(x for x in [
            f"### {label}" if label else "", table_markdown(facet_rows, experiment),
            (f"Intervals (mean ± std of test top-1) that overlap (=) or not (<, >: the row's lies below or above "
             f"the column's):\n\n{overlap_markdown(facet_rows)}") if overlap_markdown(facet_rows) else ""] if x)
        sections.append(part)
    table = "\n\n".join(sections)
    if len(per_facet) > 1:
        table = f"{summary_markdown(per_facet)}\n\n{table}"
    paper_note = ""
    if experiment in TABLES and not matched:
        paper_note = (f"The paper columns are the paper's own numbers ({TABLES[experiment].title}), another "
                      f"setting than this sweep's: listed for reference, not drawn in the picture.\n")
    cost = cost_words(jobs)
    md = (f"# {title}\n\nSweep: `{sweep_dir}` ({len(jobs)} jobs; {data_label(jobs)}).\n"
          f"Mean over seeds ± sample std where several seeds ran; top-1/top-5 on the test split, % .\n"
          f"{paper_note}{cost + chr(10) if cost else ''}\n{table}\n\n![top-1 per setting](report.png)\n")
    (sweep_dir / "report.md").write_text(md)
    write_csv(rows, sweep_dir / "report.csv")
    synthetic = all(cfg_value(j, "data.format") == "synthetic" for j in jobs)
    ylabel = f"test top-1 (%), {setting_words(jobs).split(', ')[0]}"  # the data; the title has the rest
    plot(per_facet, experiment, sweep_dir / "report.png", title, ylabel, matched,
         BLIND_LEVEL if synthetic else None)
    spec = wandb_report.definition(jobs, experiment, title, table, sweep_dir)
    if spec is not None:
        wandb_report.write(sweep_dir, spec)
    if page is not None:
        write_page(page, experiment, measured=(table, data_label(jobs), sweep_dir, title, cost))
    return sweep_dir / "report.md"
