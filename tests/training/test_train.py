"""The Hydra application end to end on tiny real data: compose, train, test, eval, ensemble, resume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from tanet_lightning.analysis import ensemble as ens
from tanet_lightning.base.errors import ConfigError
from tanet_lightning.config import config_dir
from tanet_lightning.eval import evaluate
from tanet_lightning.models.temporal import TEMPORAL
from tanet_lightning.train import train
from tanet_lightning.training.module import VideoClassificationModule, average_views

SMALL = ["model.backbone=resnet18", "model.pretrained=false"]


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (Path(config_dir()) / group).glob("*.yaml"))


@pytest.mark.parametrize("temporal", group_options("model/temporal"))
def test_every_temporal_option_composes_and_instantiates(make_cfg, temporal):
    vit_only = not TEMPORAL[temporal].cnn  # ST-Adapter, AIM, TokShift: on the tiny ViT
    arch = ["+model/arch=vit_tiny"] if vit_only else SMALL
    cfg = make_cfg([f"model/temporal={temporal}", "model=tanet", *arch])
    if temporal in ("i3d", "nl"):  # bottlenecks to inflate / res3 has 4 blocks for NL's {0, 2}
        cfg.model.backbone = "resnet50"
    model = instantiate(cfg.model, num_classes=8)
    assert isinstance(model, VideoClassificationModule)
    assert model(torch.randn(1, 4, 3, 32, 32)).shape == (1, 8)


@pytest.mark.parametrize("group", ["optimizer", "scheduler", "trainer", "callbacks", "logger", "debug",
                                   "model", "data"])
def test_every_group_option_composes_and_instantiates(make_cfg, group, tmp_path):
    for option in group_options(group):
        if group == "trainer" and option in ("gpu", "ddp"):
            cfg = make_cfg([f"trainer={option}"])
            assert cfg.trainer.precision == "bf16-mixed"  # composes; instantiating needs a GPU
            continue
        # the tiny-run overrides disable one default callback, which callbacks=none does not have
        tiny = group not in ("callbacks", "data") or option == "synthetic"
        extra = SMALL if group == "model" else ["trainer.max_epochs=4"] if group == "scheduler" else []  # warm-ups
        cfg = make_cfg([f"{group}={option}", *extra], tiny=tiny)
        if group == "optimizer":
            opt = instantiate(cfg.optimizer)([torch.nn.Parameter(torch.zeros(1))])
            assert isinstance(opt, torch.optim.Optimizer)
        elif group == "scheduler":
            opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
            instantiate(cfg.scheduler)(opt)
        elif group == "trainer":
            instantiate(cfg.trainer)
        elif group in ("callbacks", "logger"):
            for entry in (cfg.get(group) or {}).values():
                instantiate(entry)
        elif group == "model":
            instantiate(cfg.model, num_classes=8)
        elif group == "data":
            if option != "synthetic":  # real datasets are not here: a clear error, naming the key
                with pytest.raises(Exception, match=r"data\.\w+_ann|annotation|data\.root"):  # video_folder: root
                    instantiate(cfg.data)
            else:
                assert instantiate(cfg.data).num_classes == 8


def test_fast_dev_run_through_train(make_cfg, tmp_path):
    cfg = make_cfg(["debug=fdr"])
    metrics, objects = train(cfg)
    assert "test/top1" in metrics and 0.0 <= metrics["test/top1"] <= 1.0
    out = Path(cfg.paths.output_dir)  # the default: ./logs/<task>/runs/<overrides>__seed-<seed>
    assert out.parent == tmp_path / "logs" / "debug" / "runs" and out.name.endswith("__seed-0")
    assert (out / "config_resolved.yaml").is_file() and (out / "metrics.json").is_file()


@pytest.mark.parametrize("override, key", [
    (["model.num_frames=8"], "data.num_frames=4 has T=4 frames but the model has T=8"),
    (["model.backbone=resnet9000"], "model.backbone"),
    (["model.position=e"], "model.position"),
    (["model.temporal.name=tam9"], "model/temporal='tam9'"),
    (["ckpt_path=/no/such.ckpt"], "ckpt_path=/no/such.ckpt"),
])
def test_bad_configs_fail_before_training(make_cfg, override, key):
    with pytest.raises(ConfigError, match=key):
        train(make_cfg(override))


def test_train_then_eval_multiview_equals_manual_view_average(make_cfg, tmp_path):
    metrics, objects = train(make_cfg(["trainer.max_epochs=1", "test=false"]))
    ckpt = objects["trainer"].checkpoint_callback.best_model_path
    cfg = make_cfg([f"ckpt_path={ckpt}", "data.test_views=2x3"], name="eval")
    out = Path(cfg.paths.output_dir)
    metrics, objects = evaluate(cfg)
    with np.load(out / "scores.npz") as f:
        scores, video_idx, labels, names = f["scores"], f["video_idx"], f["labels"], f["video_names"]
    assert all(str(n).endswith(".mp4") for n in names)
    dm, model = objects["datamodule"], objects["model"].eval()
    assert metrics["test/num_views"] == 6 and len(video_idx) == dm.num_classes * 1
    # the manual average: every view of every video through the model, one at a time
    manual = {}
    with torch.no_grad():
        for item in dm.datasets["test"]:
            video = dm.on_after_batch_transfer({"video": item["video"].unsqueeze(0)}, 0)["video"]
            manual.setdefault(int(item["video_idx"]), []).append(model(video)[0])
    for i, v in enumerate(video_idx):
        views = torch.stack(manual[int(v)])
        assert len(views) == 6
        torch.testing.assert_close(torch.from_numpy(scores[i]), views.mean(0), atol=1e-4, rtol=1e-4)
    top1 = (scores.argmax(1) == labels).mean()
    assert metrics["test/top1"] == pytest.approx(top1, abs=1e-6)
    # ensembling a run with itself changes nothing
    res = ens.ensemble([str(out / "scores.npz")] * 2, mode="logits")
    assert res["ensemble/top1"] == pytest.approx(top1, abs=1e-6)


def test_average_views_removes_ddp_repeats():
    video = torch.tensor([0, 0, 1, 1, 0])  # the last item repeats video 0 view 0 (sampler padding)
    view = torch.tensor([0, 1, 0, 1, 0])
    labels = torch.tensor([3, 3, 1, 1, 3])
    logits = torch.tensor([[1.0, 0], [3, 0], [0, 2], [0, 4], [1, 0]])
    r = average_views(video, view, labels, logits, "logits")
    assert r["video_idx"].tolist() == [0, 1] and r["num_views"].tolist() == [2, 2]
    torch.testing.assert_close(r["scores"], torch.tensor([[2.0, 0], [0, 3]]))
    assert r["labels"].tolist() == [3, 1]


def test_wandb_offline_run_has_group_name_and_config(make_cfg, tmp_path, monkeypatch):
    import wandb

    wandb.finish()  # earlier in-process W&B use (a run, or settings made under WANDB_MODE=disabled)
    wandb.teardown()  # would otherwise be reused by this run
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    cfg = make_cfg(["logger=wandb", "debug=fdr", "experiment_name=wbtest", "tags=[unit]"])
    try:
        train(cfg)
        run = wandb.run
        assert run is not None and run.offline
        assert run.group.startswith("wbtest-") and run.job_type == cfg.task_name == "debug"
        assert run.name == cfg.logger.wandb.name and run.name.endswith("__seed-0")
        assert run.config["model"]["tam"]["alpha"] == 2 and run.config["data"]["num_frames"] == 4
        assert "unit" in run.tags
        run_dir = Path(run.dir).parent
    finally:
        wandb.finish()
    assert run_dir.name.startswith("offline-run-") and list(run_dir.glob("*.wandb"))


@pytest.mark.heavy
def test_two_process_ddp_multiview_test_counts_every_video_once(make_cfg, tmp_path):
    """gloo DDP on CPU: test views are sharded over 2 ranks, gathered, and each video counted once."""
    single, objects = train(make_cfg(["trainer.max_epochs=1", "test=false"]))
    ckpt = objects["trainer"].checkpoint_callback.best_model_path
    n_videos = objects["datamodule"].num_classes  # 1 test video per class
    runs = {}
    for trainer in ("default", "ddp_cpu"):
        cfg = make_cfg([f"ckpt_path={ckpt}", "data.test_views=1x3", "data.batch_size=5", f"trainer={trainer}",
                        "trainer.accelerator=cpu", "trainer.enable_progress_bar=false"],
                       name="eval")
        runs[trainer], _ = evaluate(cfg)
    ddp = runs["ddp_cpu"]
    assert ddp["test/num_videos"] == n_videos and ddp["test/num_views"] == 3
    for key in ("test/top1", "test/top5", "test/mean_class_acc"):
        assert ddp[key] == pytest.approx(runs["default"][key], abs=1e-6), key
