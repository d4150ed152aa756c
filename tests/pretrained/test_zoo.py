"""The ledger of released checkpoints: `zoo list` prints the table; `zoo eval` converts a file written here in
a peer's layout, evaluates it with eval's code path under the publisher's protocol and appends a row whose
measured number is eval's on the converted file."""

from __future__ import annotations

import json
import re

import pytest
import torch
from peers import MMRecognizer2D, OfficialTSN, randomize

from tanet_lightning import __version__, zoo
from tanet_lightning.analysis.paper import TABLES
from tanet_lightning.analysis.zoo import RELEASES, read_rows, release_of_file
from tanet_lightning.eval import evaluate
from tinyconf import TINY_SYNTHETIC

# the tiny synthetic set at T=8 (the releases' T), one view of 32 px: deviations from the publisher's
# protocol, which the row records
DATA = ["data=synthetic", *(a for a in TINY_SYNTHETIC if not a.startswith("data.num_frames")), "data.test_views=1x1",
        "trainer.enable_progress_bar=false"]


def test_zoo_list_prints_the_table(capsys):
    zoo.main(["list"])
    out = capsys.readouterr().out
    for r in RELEASES.values():
        line = next(ln for ln in out.splitlines() if ln.startswith(r.name + " "))
        assert r.layout in line and f"{r.top1:.2f}" in line and f"{r.top5:.2f}" in line and r.file in line
        assert (r.sha256_prefix or "not published") in line
        assert f"  {r.name}: {r.url}" in out
    assert len(RELEASES) == 16 and {r.layout for r in RELEASES.values()} == {"official", "mmaction2"}


def test_the_table_agrees_with_its_sources():
    """MMAction2's file names end with the published SHA-256 prefix; the official K400 8f numbers are the
    paper's TANet row (Table 2); every T, class count and protocol is one the project can evaluate."""
    for r in RELEASES.values():
        if r.layout == "mmaction2":
            assert r.file.endswith(f"-{r.sha256_prefix}.pth") and r.url.endswith(r.file) and r.view_average == "prob"
            assert release_of_file(f"/downloads/{r.file}").file == r.file
        else:
            assert r.sha256_prefix is None and r.file == "ckpt.best.pth.tar" and r.view_average == "logits"
        assert r.num_frames in (8, 16) and r.num_classes == (400 if r.dataset == "kinetics400" else 174)
        assert re.fullmatch(r"\d+x[13]", r.views)
        assert r.sampler == ("dense" if r.dataset == "kinetics400" else "uniform")
    assert (RELEASES["official_kinetics400_8f"].top1, RELEASES["official_kinetics400_8f"].top5) == \
        TABLES["temporal_modules"].numbers["TANet"]
    assert release_of_file("ckpt.best.pth.tar") is None  # every official release has that name


def _refused(args: list[str], capsys, caplog) -> str:
    """zoo.main's message for a refused command (printed, or logged where logging is configured: here)."""
    caplog.clear()
    with pytest.raises(SystemExit) as e:
        zoo.main(args)
    assert e.value.code == 2
    return capsys.readouterr().err + caplog.text


def test_zoo_eval_refuses_before_converting(tmp_path, capsys, caplog):
    assert "did you mean official_kinetics400_8f" in _refused(["eval", "official_k400_8f", "ckpt=x.pth"], capsys,
                                                             caplog)
    err = _refused(["eval", "official_sthv2_16f", f"ckpt={tmp_path / 'missing.pth.tar'}"], capsys, caplog)
    assert "no such file" in err and RELEASES["official_sthv2_16f"].url in err and "nothing is downloaded" in err
    mm = RELEASES["mmaction2_kinetics400_8f"]
    (tmp_path / mm.file).write_bytes(b"not the release")
    assert f"the published {mm.file}'s a34346bc" in _refused(["eval", mm.name, f"ckpt={tmp_path / mm.file}"], capsys,
                                                             caplog)


@pytest.mark.heavy  # two evaluations of a converted release
@pytest.mark.parametrize("release, peer", [
    ("official_sthv1_8f", OfficialTSN),  # class ids in sorted order: eval reorders the classifier rows
    pytest.param("mmaction2_kinetics400_8f", MMRecognizer2D, marks=pytest.mark.slow),  # 3-7 s more: budget
])
def test_zoo_eval_row_equals_eval_of_the_converted_file(make_cfg, tmp_path, release, peer, capsys, caplog):
    make_cfg()  # the working directory and the data location of a user's command
    ckpt = tmp_path / "release.pth"
    torch.save(randomize(peer(num_classes=8, t=8)).checkpoint(), ckpt)  # 8 synthetic classes, not the release's
    ledger = tmp_path / "ledger.jsonl"
    args = ["eval", release, f"ckpt={ckpt}", f"ledger={ledger}", *DATA]
    err = _refused(args, capsys, caplog)  # a file that is not the release's is refused, saying how it differs
    refusal = "its SHA-256 starts" if RELEASES[release].sha256_prefix else "classes 8 (the release: 174)"
    assert refusal in err and "force=true" in err

    zoo.main([*args, "force=true"])
    (row,) = read_rows(ledger)
    r = RELEASES[release]
    assert row["release"] == release and row["reported"] == {"top1": r.top1, "top5": r.top5}
    assert row["views"] == "1x1" and row["project_version"] == __version__ and row["date"][:4].isdigit()
    assert row["checksum"] == ("not published" if r.sha256_prefix is None else "mismatch") and len(row["sha256"]) == 64
    assert f"data.test_crop_size=32 (publisher: {r.crop})" in row["deviations"]
    assert ("data.test_views=1x1 (publisher: 10x3)" in row["deviations"]) == (r.views == "10x3")
    assert row["protocol"]["data.num_frames"] == 8 and row["protocol"]["view_average"] == r.view_average
    # the split fingerprint of the data evaluated on, where the data layer records one (eval's metrics.json)
    recorded = json.loads((tmp_path / row["eval_dir"] / "metrics.json").read_text()).get("data_fingerprint")
    assert row["split_fingerprint"] == ({"test": recorded["test"]} if recorded else None)
    md = ledger.with_suffix(".md").read_text()
    assert f"| {release} | {r.top1:.2f} / {r.top5:.2f} | {row['measured']['top1']:.2f} /" in md

    # eval on the converted file, with the same data and protocol: the same numbers
    metrics, _ = evaluate(make_cfg([*DATA, "data.num_frames=8", f"view_average={r.view_average}",
                                    f"ckpt_path={row['converted']}"], name="eval", tiny=False))
    assert row["measured"]["top1"] == 100 * metrics["test/top1"]
    assert row["measured"]["top5"] == 100 * metrics["test/top5"]
    assert row["measured"]["num_videos"] == metrics["test/num_videos"] == 8
    saved = json.loads((tmp_path / row["eval_dir"] / "metrics.json").read_text())
    assert saved["test/top1"] == metrics["test/top1"]
