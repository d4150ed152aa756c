"""``+diagnose=time`` end to end: train's test, eval and predict on a tiny TANet (real videos, Lightning, Hydra)."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest
import torch

from tanet_lightning.base.errors import ConfigError
from tanet_lightning.config.schema import groups, validate
from tanet_lightning.eval import evaluate
from tanet_lightning.predict import predict
from tanet_lightning.train import train
from tanet_lightning.training.diagnose import ORDERS, TimeDiagnostic, metric_names, time_metrics, video_orders

# a narrow TANet (ResNet-18 layout, widths 4-32) at the tiny set's T=4: one training step is enough here
TINY_TANET = ["+model.backbone_kwargs.channels=[4,8,16,32]", "+model.backbone_kwargs.stem_width=8",
              "trainer.limit_train_batches=1", "trainer.limit_val_batches=1"]
KEYS = ["time/top1_ordered", "time/top1_reversed", "time/top1_shuffled", "time/top1_frozen",
        "time/drop_reversed", "time/drop_shuffled", "time/drop_frozen",
        "time/changed_reversed", "time/changed_shuffled", "time/changed_frozen"]


def test_the_schema_is_the_diagnostics_arguments():
    params = set(inspect.signature(TimeDiagnostic.__init__).parameters) - {"self"}
    assert set(groups.Diagnose.__dataclass_fields__) == params
    assert metric_names() == KEYS


def test_the_metrics_from_predictions():
    labels = torch.tensor([0, 1, 2, 3])
    preds = {"ordered": torch.tensor([0, 1, 2, 0]), "reversed": torch.tensor([1, 0, 2, 0]),
             "frozen": torch.tensor([0, 1, 2, 0])}
    m = time_metrics(preds, labels)
    assert list(m) == metric_names(["ordered", "reversed", "frozen"])
    assert m["time/top1_ordered"] == 0.75 and m["time/top1_reversed"] == 0.25
    assert m["time/drop_reversed"] == 0.5 and m["time/changed_reversed"] == 0.5
    assert m["time/drop_frozen"] == 0.0 and m["time/changed_frozen"] == 0.0
    one = video_orders({"ordered": torch.tensor([0.1, 0.9]), "reversed": torch.tensor([0.7, 0.3])}, ["a", "b"])
    assert one == {"ordered": {"class": "b", "prob": 0.9}, "reversed": {"class": "a", "prob": 0.7, "changed": True}}


def test_orders_the_clip_length_cannot_have_are_refused(make_cfg):
    with pytest.raises(ConfigError, match=r"data.num_frames=2, \+diagnose=time: T=2 frames have no shuffle.*"
                                          r"give diagnose.orders=\[reversed,frozen\]"):
        validate(make_cfg(["ckpt_path=x.ckpt", "+diagnose=time", "data.num_frames=2"], name="eval"), "eval")
    with pytest.raises(ConfigError, match=r"diagnose.orders=\['backwards'\] must be one of \['reversed', 'shuffled'"):
        validate(make_cfg(["ckpt_path=x.ckpt", "+diagnose=time", "diagnose.orders=[backwards]"], name="eval"), "eval")
    assert TimeDiagnostic(["frozen"]).indices(2).keys() == {"ordered", "frozen"}
    with pytest.raises(ConfigError, match="T=2 frames have no shuffle"):
        TimeDiagnostic().indices(2)


def test_train_eval_and_predict_with_the_time_diagnostic(make_cfg, tmp_path):
    trained, objs = train(make_cfg([*TINY_TANET, "+diagnose=time"]))
    assert set(KEYS) <= set(trained) and trained["time/top1_ordered"] == trained["test/top1"]
    ckpt = objs["trainer"].checkpoint_callback.best_model_path

    # two clips per video (multi-view): every view is reordered, then the views are averaged
    metrics, ev = evaluate(make_cfg([f"ckpt_path={ckpt}", "+diagnose=time", "data.test_views=2x1"], name="eval"))
    written = json.loads((Path(ev["model"].scores_path).parent / "metrics.json").read_text())
    assert set(KEYS) <= set(written) and written["test/num_views"] == 2
    assert written["time/top1_ordered"] == pytest.approx(written["test/top1"])  # the test's own score, again
    for order in ORDERS[1:]:
        drop = written["time/top1_ordered"] - written[f"time/top1_{order}"]
        assert written[f"time/drop_{order}"] == pytest.approx(drop)
        assert 0 <= written[f"time/changed_{order}"] <= 1
    plain, _ = evaluate(make_cfg([f"ckpt_path={ckpt}", "data.test_views=2x1"], name="eval"))
    assert not any(k.startswith("time/") for k in plain) and plain["test/top1"] == metrics["test/top1"]

    out = tmp_path / "p.jsonl"
    videos = sorted(Path(ev["datamodule"].video_names("test")[0]).parent.glob("*.mp4"))[:3]
    predict(make_cfg([f"ckpt_path={ckpt}", f"inputs=[{','.join(map(str, videos))}]", f"out={out}", "topk=2",
                      "+diagnose=time", "progress=false"], name="predict", tiny=False))
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 3
    for row in rows:
        assert list(row["time"]) == list(ORDERS)
        assert row["time"]["ordered"]["class"] == row["classes"][0] and "changed" not in row["time"]["ordered"]
        assert all(isinstance(row["time"][o]["changed"], bool) for o in ORDERS[1:])
    predict(make_cfg([f"ckpt_path={ckpt}", f"inputs=[{videos[0]}]", f"out={out}", "progress=false"],
                     name="predict", tiny=False))
    assert "time" not in json.loads(out.read_text())  # the lines stay as they were without the switch


# the main job's recipe (ResNet-18 + TAM at 32 px, T=8, AdamW, cosine), shortened: half the training videos,
# 4 epochs. Measured: TANet 58.75 % ordered, 13.75 % reversed (71 % of its predictions change); C2D unmoved.
SHORT_MAIN_JOB = ["data.synthetic.train_per_class=40", "trainer.max_epochs=4", "trainer.enable_progress_bar=false",
                  "callbacks.model_summary=null", "+diagnose=time"]


@pytest.mark.slow  # two 4-epoch trainings on 320 videos (~40 s CPU each) + their data: 3.8 min wall, busy 2 cores
def test_a_trained_tanet_reads_the_direction_and_c2d_cannot(make_cfg):
    tanet, _ = train(make_cfg(SHORT_MAIN_JOB, tiny=False))
    c2d, _ = train(make_cfg([*SHORT_MAIN_JOB, "model/temporal=c2d"], tiny=False))
    # every class has its time-reversed twin: reversing the frames turns TANet's right answers into the twin
    assert tanet["time/top1_ordered"] >= 0.45
    assert tanet["time/top1_reversed"] <= tanet["time/top1_ordered"] - 0.25
    assert tanet["time/changed_reversed"] >= 0.4
    # C2D is a per-frame network with a mean over T: any order of the same frames, the same predictions
    for order in ("reversed", "shuffled"):
        assert c2d[f"time/changed_{order}"] == 0 and c2d[f"time/top1_{order}"] == c2d["time/top1_ordered"]
