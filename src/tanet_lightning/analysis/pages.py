"""The experiments page of one experiment (``experiments/NAME.md``): how to reproduce it, the paper's numbers
and what this project measured (the report's table, ``report --page``; ``report --init-pages`` writes the
paper-only pages).

Two parts of a page are written by hand and kept when the page is rewritten: its ``## Notes`` section, and
the words after the generated comment of its ``+preset=synthetic`` command, which tell what a user of
the preset meets that the paper's setting does not (e.g. a job that cannot run on ResNet-18, and the
exit status the sweep ends with; the documented-commands test holds the command to what they say).
"""

from __future__ import annotations

from pathlib import Path

from .paper import RECIPES, TABLES, own_papers_markdown

# CPU benchmarks of a sweep on the synthetic preset: experiment -> (extra overrides, what it runs, its measured
# cost). Their command is documented beside the sweep's with that cost, as one not run here (it takes too long).
BENCHMARKS = {
    "temporal_modules": ("seed=0,1,2 data.synthetic.task=motion,order +diagnose=time",
                         "every module x 3 seeds x 2 synthetic tasks, with the time diagnostic",
                         "43 min on 2 idle cores"),  # measured: experiments/temporal_modules.md
    # the ViT rows of that benchmark: a ViT-Ti from scratch, end to end (experiments/temporal_modules_vit.md)
    "temporal_modules_vit": ("model.freeze_backbone=false model/temporal=c2d,tokshift,tam,st_adapter,atm seed=0,1,2 "
                             "data.synthetic.task=motion,order +diagnose=time",
                             "the ViT rows (ViT-Ti from scratch) x 3 seeds x 2 synthetic tasks, with the time "
                             "diagnostic", "30 jobs of ~5.5 min on 2 shared cores"),  # measured: 330 s on average
}
NOTES = "## Notes"  # a page's hand-written section: kept when the report rewrites the page


def kept_words(page_text: str, generated: str) -> str:
    """What a page says after the generated start of one command line (its hand-written words), else ''."""
    line = next((line for line in page_text.splitlines() if line.startswith(generated)), "")
    return line[len(generated):]


def write_page(page: Path, experiment: str, measured: tuple | None = None) -> None:
    """experiments/NAME.md: the command, the paper's numbers, and what this project measured. An existing
    page's ``## Notes`` section (what the numbers mean, written by hand) and its own words on the preset's
    command are kept."""
    before = page.read_text() if page.is_file() else ""
    notes = f"{NOTES}\n" + before.split(f"\n{NOTES}\n", 1)[1] if f"\n{NOTES}\n" in before else ""
    page.parent.mkdir(parents=True, exist_ok=True)
    if experiment in TABLES:
        t = TABLES[experiment]
        paper = "\n".join(["| setting | top-1 | top-5 |", "|---|---|---|",
                           *(f"| {k} | {a:.2f} | {b:.2f} |" for k, (a, b) in t.numbers.items())])
        own = own_papers_markdown(t)
        if own:
            paper += ("\n\nThe modules after TAM in this sweep, as their own papers report them (other datasets "
                      f"and protocols than the table above):\n\n{own}")
        title, command = t.title, t.command
        swept = " x ".join(f"`{k}={v}`" for k, v in t.sweep.items())
    else:
        title, top1, top5 = RECIPES[experiment]
        paper = f"| setting | top-1 | top-5 |\n|---|---|---|\n| {title} | {top1} | {top5} |"
        command = f"python -m tanet_lightning.train +experiment={experiment}"
        swept = ""
    sweep = experiment in TABLES
    synthetic = f"the same {'sweep' if sweep else 'recipe'} on the embedded synthetic data, CPU"
    note = kept_words(before, f"{command} +preset=synthetic    # {synthetic}")
    bench = ""
    if experiment in BENCHMARKS:
        extra, what, cost = BENCHMARKS[experiment]
        bench = f"{command} +preset=synthetic {extra}    # the CPU benchmark: {what} ({cost}: not run here)\n"
    text = (f"# {title}\n\n## Reproduce\n\n```bash\n{command}                      # the paper's recipe "
            f"(needs the dataset, GPUs)\n{command} +preset=synthetic    # {synthetic}{note}\n{bench}"
            + (f"python -m tanet_lightning.report {experiment}    # report.md/.csv/.png of the newest sweep\n"
               if sweep else "")
            + "```\n\n"
            + (f"Sweeps {swept} (one job per combination; declared in `src/tanet_lightning/analysis/paper.py`). With "
               f"`logger=wandb` (the default here) the sweep also defines its W&B report: `wandb_report.json` "
               f"in the sweep directory, published at once when online, else by `python -m "
               f"tanet_lightning.report {experiment} --wandb`.\n\n" if swept else "")
            + f"## Paper\n\n{paper}\n\n## Measured\n\n")
    if measured is None:
        text += "Full-data run: not yet run.\n"
    else:
        table, label, sweep_dir, *more = measured
        what, cost = (more + [None, ""])[:2]
        text += (f"Full-data run: not yet run.\n\n{what or 'Synthetic data on CPU'} ({label}; generated by "
                 f"`python -m tanet_lightning.report {sweep_dir.name}`). The synthetic task is not Kinetics: "
                 f"compare settings with each other, not with the paper's numbers.{' ' + cost if cost else ''}"
                 f"\n\n{table}\n")
    if notes:
        text += "\n" + notes
    page.write_text(text)
