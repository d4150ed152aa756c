"""The report reads a sweep with Hydra's public API only: the points it plans are the points Hydra's basic
sweeper launches (held side by side here, the one place that imports Hydra's private sweeper: a Hydra that
expands sweeps differently fails this test, not a report), and the experiments pages keep their hand-written
words when the report rewrites them."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser

from tanet_lightning.analysis.paper import RECIPES, TABLES
from tanet_lightning.analysis.report import write_page
from tanet_lightning.analysis.sweep_jobs import sweep_points

REPO = Path(__file__).resolve().parents[2]
CASES = {  # sweeper params + command line: what a user launches
    **{name: [f"{k}={v}" for k, v in t.sweep.items()] for name, t in TABLES.items()},
    "command line wins and keeps the key's place": ["model.position=a,b,c,d", "seed=0", "model.position=b,c"],
    "a range and a group option": ["seed=range(3)", "+model/arch=resnet34,resnet50", "~model.tam", "logger=csv"],
    "quoted and nested values": ["model.tam={alpha:2,beta:4},{alpha:1,beta:4}", "data.root='/a b/c'"],
    "choice()": ["model/temporal=choice(tam,tsm)", "+diagnose=time"],
}


def hydra_points(overrides: list[str]) -> list[list[str]]:
    parsed = OverridesParser.create().parse_overrides(overrides)
    return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]


@pytest.mark.parametrize("case", list(CASES))
def test_the_planned_points_are_the_points_hydra_launches(case):
    assert sweep_points(CASES[case]) == hydra_points(CASES[case])


def test_an_interval_is_refused_as_hydra_refuses_it():
    with pytest.raises(ValueError, match="model.tam.alpha: a basic sweep takes a list or range"):
        sweep_points(["model.tam.alpha=interval(0,1)"])


def test_the_package_imports_nothing_private_of_hydra():
    found = [str(p.relative_to(REPO)) for p in sorted((REPO / "src").rglob("*.py"))
             if "hydra._internal" in p.read_text()]
    assert not found, found


@pytest.mark.parametrize("name", [*TABLES, *RECIPES])
def test_a_rewritten_page_is_the_committed_page(tmp_path, name):
    """Up to what a sweep measured (a `report --page` run wrote it), the page is what the code writes, the
    page's own words on the preset's command included (ablation_position: the job that fails there)."""
    committed = (REPO / "experiments" / f"{name}.md").read_text()
    page = tmp_path / f"{name}.md"
    page.write_text(committed)
    write_page(page, name)
    assert page.read_text().split("## Measured")[0] == committed.split("## Measured")[0]


def test_a_pages_own_words_on_the_preset_command_are_kept(tmp_path):
    page = tmp_path / "ablation_kernel.md"
    write_page(page, "ablation_kernel")
    line = "python -m tanet_lightning.train +experiment=ablation_kernel +preset=synthetic    # the same sweep on " \
           "the embedded synthetic data, CPU"
    assert f"\n{line}\n" in page.read_text()
    page.write_text(page.read_text().replace(line, line + " (kernel 5 takes twice as long)"))
    write_page(page, "ablation_kernel")
    assert f"\n{line} (kernel 5 takes twice as long)\n" in page.read_text()
