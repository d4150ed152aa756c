"""A sweep's comparison in W&B, built as code with ``wandb-workspaces``: a Report and a saved workspace view.

Every job of a sweep logs to one W&B group (conf/logger/wandb.yaml: ``${experiment_name}-${now:...}``;
SweepCallback makes all jobs resolve the same time). At the end of a sweep ``definition`` gathers what
the comparison needs from the jobs' resolved configs (project, entity, group, the swept keys declared in
analysis/paper.py, the local table with the paper's numbers) into ``wandb_report.json`` in the sweep
directory. ``build_report``/``build_workspace`` turn that definition into wandb-workspaces objects and
``publish`` saves them: at once when the sweep ran online, else later with
``python -m tanet_lightning.report SWEEP_DIR --wandb`` (after ``wandb sync`` of the offline runs).

The Report (titled after the paper table) holds, for the runs of that one group: test top-1/top-5 per
run (runs are named after their overrides, i.e. the swept keys), a parallel-coordinates panel from the
swept keys to test top-1, val top-1 and train loss per epoch, GFLOPs and parameters per run, and the
local table (ours beside the paper's numbers). The workspace view shows every run of the experiment,
grouped by experiment and swept keys (mean over seeds).
"""

from __future__ import annotations

import json
from pathlib import Path

from .paper import TABLES

FILE = "wandb_report.json"
VERSION = 1
INSTALL = "pip install 'tanet-lightning[wandb]' (or: pip install wandb-workspaces)"


class PublishError(RuntimeError):
    """Publishing needs wandb-workspaces, a W&B login and network access; the message says which failed."""


def definition(jobs: list, experiment: str, title: str, table_md: str, sweep_dir: Path) -> dict | None:
    """What the W&B comparison of these jobs shows, as plain data; None when no job logged to W&B.

    ``jobs`` are report.Job objects. Jobs that died before saving their resolved config never started a
    W&B run and are left out of the filter, but stay in the table (as failed/unfinished)."""
    wandb_jobs = [j for j in jobs
                  if (j.path / "config_resolved.yaml").is_file() and "wandb" in (j.cfg.get("logger") or {})]
    if not wandb_jobs:
        return None
    wandb_cfgs = [j.cfg["logger"]["wandb"] for j in wandb_jobs]
    # what W&B itself left in the job directories says where the runs went: run-* synced as they ran,
    # offline-run-* wait for `wandb sync`; WANDB_MODE=disabled leaves neither
    online = [p for j in wandb_jobs for p in sorted((j.path / "wandb").glob("run-*"))]
    offline = [p for j in wandb_jobs for p in sorted((j.path / "wandb").glob("offline-run-*"))]
    first = wandb_cfgs[0]
    table = TABLES.get(experiment)
    if table:
        keys = list(table.keys)
    else:  # not a paper sweep: the command-line keys that vary (dotted config keys only)
        keys = sorted(k for k in {k for j in jobs for k in j.overrides}
                      if k != "seed" and "/" not in k and len({j.overrides.get(k) for j in jobs}) > 1)
    return {
        "version": VERSION,
        "experiment": experiment,
        "title": title[:128],  # W&B's limit on a report title
        "entity": first.get("entity"),
        "project": first["project"],
        # one group per launch; a sweep from before SweepCallback pinned the time may have one per job
        "groups": sorted({c["group"] for c in wandb_cfgs}),
        "keys": keys,
        "runs": sorted(c["name"] for c in wandb_cfgs),
        "online": bool(online) and not offline,
        "offline_runs": [str(p.resolve()) for p in offline],
        "sweep_dir": str(sweep_dir.resolve()),
        "table": table_md,
    }


def write(sweep_dir: Path, spec: dict) -> Path:
    path = sweep_dir / FILE
    path.write_text(json.dumps(spec, indent=1) + "\n")
    return path


def load(sweep_dir: Path) -> dict:
    path = sweep_dir / FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no W&B report definition (the sweep did not run with logger=wandb)")
    spec = json.loads(path.read_text())
    if spec.get("version") != VERSION:
        raise ValueError(f"{path}: definition version {spec.get('version')}, expected {VERSION}; "
                         f"re-run `python -m tanet_lightning.report {sweep_dir}` to rewrite it")
    return spec


def ran_online(spec: dict) -> bool:
    """The sweep's runs went to the W&B server as they ran (so the report can be published now)."""
    return spec["online"]


def _wr():
    try:
        import wandb_workspaces.reports.v2 as wr
        import wandb_workspaces.workspaces as ws
        from wandb_workspaces import expr
    except ImportError as e:
        raise PublishError(f"the W&B report is built with wandb-workspaces, which is not installed: {INSTALL}") from e
    return wr, ws, expr


def panels(spec: dict) -> dict[str, list]:
    """The panels of the comparison, by section (the Report shows them in one grid, the view in sections)."""
    wr, _, _ = _wr()
    keys = spec["keys"]
    w, h = 12, 8  # a 24-column grid: two panels a row
    return {
        "Test accuracy": [
            wr.BarPlot(title="test top-1 and top-5 per run (runs named after the swept keys)",
                       metrics=["test/top1", "test/top5"], orientation="v",
                       layout=wr.Layout(x=0, y=0, w=w, h=h)),
            wr.ParallelCoordinatesPlot(
                title="swept keys -> test top-1",
                columns=[*(wr.ParallelCoordinatesPlotColumn(wr.Config(k)) for k in keys),
                         wr.ParallelCoordinatesPlotColumn(wr.SummaryMetric("test/top1"))],
                layout=wr.Layout(x=w, y=0, w=w, h=h)),
        ],
        "Training curves": [
            wr.LinePlot(title="val top-1 per epoch", x="epoch", y=["val/top1"], layout=wr.Layout(x=0, y=h, w=w, h=h)),
            wr.LinePlot(title="train loss per epoch", x="epoch", y=["train/loss_epoch"],
                        layout=wr.Layout(x=w, y=h, w=w, h=h)),
        ],
        "Complexity": [
            wr.BarPlot(title="GFLOPs per clip", metrics=["model/gflops"], orientation="v",
                       layout=wr.Layout(x=0, y=2 * h, w=w, h=h)),
            wr.BarPlot(title="parameters", metrics=["model/params"], orientation="v",
                       layout=wr.Layout(x=w, y=2 * h, w=w, h=h)),
        ],
    }


def group_filter(spec: dict, expr) -> list:
    group = expr.Metric("Group")
    return [group == spec["groups"][0]] if len(spec["groups"]) == 1 else [group.isin(spec["groups"])]


def build_report(spec: dict, entity: str):
    """The W&B Report of one sweep: its group's runs, the panels, and the table beside the paper."""
    wr, _, expr = _wr()
    runset = wr.Runset(entity=entity, project=spec["project"], name=", ".join(spec["groups"]),
                       filters=group_filter(spec, expr))
    keys = ", ".join(f"`{k}`" for k in spec["keys"]) or "none"
    return wr.Report(
        entity=entity, project=spec["project"], title=spec["title"],
        description=f"Sweep `{spec['experiment']}`, W&B group {', '.join(spec['groups'])}; swept keys: {keys}.",
        blocks=[
            wr.P(f"Runs of W&B group {', '.join(spec['groups'])} (sweep directory {spec['sweep_dir']}), one per "
                 f"setting of {keys}. Accuracies are fractions in the charts, % in the table."),
            wr.PanelGrid(runsets=[runset], panels=[p for ps in panels(spec).values() for p in ps]),
            wr.H2("Ours beside the paper"),
            wr.MarkdownBlock(spec["table"]),
        ],
    )


def build_workspace(spec: dict, entity: str):
    """A saved workspace view: every run of the experiment, grouped by experiment and swept keys."""
    wr, ws, expr = _wr()
    return ws.Workspace(
        entity=entity, project=spec["project"], name=f"{spec['experiment']} by {', '.join(spec['keys']) or 'run'}",
        sections=[ws.Section(name=name, panels=ps, is_open=True) for name, ps in panels(spec).items()],
        settings=ws.WorkspaceSettings(x_axis="epoch"),
        runset_settings=ws.RunsetSettings(
            filters=[expr.Config("experiment_name") == spec["experiment"]],
            groupby=[expr.Config("experiment_name"), *(expr.Config(k) for k in spec["keys"])]),
    )


def publish(spec: dict, entity: str | None = None) -> tuple[str, str]:
    """Save the Report and the workspace view to W&B; returns their URLs."""
    _wr()
    import wandb

    try:
        api = wandb.Api()
        entity = entity or spec.get("entity") or api.default_entity
    except Exception as e:  # no API key, or the server is not reachable
        raise PublishError(f"W&B is not available ({type(e).__name__}: {e}); run `wandb login`, "
                           f"`wandb sync` the offline runs, then publish again") from e
    report, view = build_report(spec, entity), build_workspace(spec, entity)
    try:
        report.save()
        view.save()
    except Exception as e:
        raise PublishError(f"saving to W&B {entity}/{spec['project']} failed ({type(e).__name__}: {e})") from e
    return report.url, view.url

