"""One model path and one fit check: the network's arguments go to ``create_video_model`` by name and
``model.tam`` is merged once; a checkpoint fits a run by T and by class *names* (eval reorders, resume
refuses, init_from fine-tunes), with one message per mismatch naming the setting to change."""

from __future__ import annotations

import inspect
import logging
from pathlib import Path

import pytest
import torch

from tanet_lightning.base.errors import CheckpointError, ConfigError
from tanet_lightning.models import create_video_model, temporal_options
from tanet_lightning.models.convert import load_init_weights
from tanet_lightning.models.fit import T_RULE, check_clip_length, check_fits
from tanet_lightning.models.load import NET_ARGS, Checkpoint, load_model
from tanet_lightning.training.module import MECHANICS, VideoClassificationModule

CKPT = Path(__file__).resolve().parents[1] / "fixtures" / "ckpt_v0_1.ckpt"  # T=2, the 8 synthetic classes
NAMES = ["move_left", "move_right", "move_up", "move_down", "rotate_cw", "rotate_ccw", "grow", "shrink"]


def randomize(net: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every parameter and BN buffer random (BN gammas too: timm zero-inits the last one of each block)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if t.is_floating_point():
                r = torch.rand(t.shape, generator=g) + 0.5 if name.endswith("running_var") else \
                    torch.randn(t.shape, generator=g) * 0.2
                t.copy_(r)
    return net


def test_the_module_does_not_restate_the_network_signature():
    own = set(inspect.signature(VideoClassificationModule.__init__).parameters)
    assert own & set(NET_ARGS) == {"num_classes"}  # the network's other arguments arrive as **net
    assert not set(MECHANICS) & set(NET_ARGS)
    with pytest.raises(ConfigError, match="model.alpah is not a model setting"):
        VideoClassificationModule(num_classes=3, backbone="resnet18", alpah=2)


def test_model_tam_is_merged_once_for_the_modules_that_take_it():
    assert temporal_options({"name": "tam", "kernel_size": 5}, {"alpha": 4, "kernel_size": 3}) == \
        ("tam", {"alpha": 4, "kernel_size": 5}, None)  # a key of model.temporal wins
    assert temporal_options({"name": "tsm", "fold_div": 4}, {"alpha": 4}) == ("tsm", {"fold_div": 4}, None)
    assert temporal_options({"name": "nl", "blocks": {"res3": [0]}}, {}) == ("nl", {}, {"res3": [0]})
    net = create_video_model("resnet18", {"name": "tam"}, 4, 4, tam={"alpha": 3, "beta": 2, "kernel_size": 5})
    g = net.backbone.layer1[0].temporal.G.net
    assert g[0].weight.shape == (3 * 4, 4) and g[3].weight.shape[0] == 5
    module = VideoClassificationModule(num_classes=4, backbone="resnet18", num_frames=4, temporal={"name": "tam"},
                                       tam={"alpha": 3, "beta": 2, "kernel_size": 5})
    assert module.net.state_dict().keys() == net.state_dict().keys()
    assert module.hparams["tam"] == {"alpha": 3, "beta": 2, "kernel_size": 5}  # flat, as checkpoints always were


def test_the_t_rule_is_one_message_everywhere():
    net = create_video_model("resnet18", "tam", 3, 4)
    with pytest.raises(ConfigError) as clip:
        net(torch.zeros(1, 3, 3, 32, 32))
    with pytest.raises(ConfigError) as frames:
        net.backbone.layer1[0].temporal(torch.zeros(6, 64, 8, 8))
    with pytest.raises(CheckpointError) as ckpt:
        check_fits(Checkpoint.read(CKPT), num_frames=4, class_names=NAMES, use="eval")
    for e in (clip, frames, ckpt):
        assert T_RULE in str(e.value)
    assert "set data.num_frames=4" in str(clip.value) and "set data.num_frames=2" in str(ckpt.value)
    check_clip_length(4, 4, what="x", fix="y")  # equal: nothing to say


def test_class_names_are_matched_by_name(caplog):
    ckpt = Checkpoint.read(CKPT)
    assert ckpt.class_names == NAMES
    assert check_fits(ckpt, num_frames=2, class_names=NAMES, use="resume").order is None
    reordered = sorted(NAMES)  # what a class-folder dataset of the same classes lists
    order = check_fits(ckpt, num_frames=2, class_names=reordered, use="eval").order
    assert [NAMES[i] for i in order] == reordered
    with pytest.raises(CheckpointError, match=r"another order \(\d+ moved: 'grow' is class 6 in the checkpoint, "
                                              r"0 in the data"):
        check_fits(ckpt, num_frames=2, class_names=reordered, use="resume")
    renamed = [*NAMES[:-1], "explode"]
    with pytest.raises(CheckpointError, match=r"only in the checkpoint \['shrink'\], only in the data \['explode'\]"
                                              r".*dataset it was trained on"):
        check_fits(ckpt, num_frames=2, class_names=renamed, use="eval")
    with pytest.raises(CheckpointError, match="model.init_from="):
        check_fits(ckpt, num_frames=2, class_names=renamed, use="resume")
    with caplog.at_level(logging.INFO, logger="tanet_lightning"):
        assert check_fits(ckpt, num_frames=2, class_names=renamed, use="init_from").restart
    assert "fine-tuning, the classifier starts afresh" in caplog.text


def test_checkpoints_without_class_names_are_matched_by_count(tmp_path, caplog):
    raw = torch.load(CKPT, map_location="cpu", weights_only=True)
    del raw["class_names"]
    torch.save(raw, tmp_path / "old.ckpt")
    ckpt = Checkpoint.read(tmp_path / "old.ckpt")
    with caplog.at_level(logging.INFO, logger="tanet_lightning"):
        assert check_fits(ckpt, num_frames=2, class_names=sorted(NAMES), use="eval").order is None
    assert "carries no class names" in caplog.text and "by count only" in caplog.text
    with pytest.raises(CheckpointError, match="has 8 classes but the data config gives 3: evaluate it on the dataset"):
        check_fits(ckpt, num_frames=2, class_names=NAMES[:3], use="eval")


def test_eval_scores_reordered_classes_in_the_data_order():
    ckpt = Checkpoint.read(CKPT)
    reordered = sorted(NAMES)
    plain = VideoClassificationModule.from_checkpoint(ckpt, num_frames=2, class_names=NAMES).eval()
    moved = VideoClassificationModule.from_checkpoint(ckpt, num_frames=2, class_names=reordered).eval()
    x = torch.randn(3, 2, 3, 32, 32)
    with torch.no_grad():
        want = plain(x)[:, [NAMES.index(n) for n in reordered]]
        torch.testing.assert_close(moved(x), want)
        torch.testing.assert_close(plain(x), load_model(CKPT)(x))


def test_init_from_reorders_the_same_classes_and_restarts_other_ones(tmp_path):
    base = randomize(create_video_model("resnet18", "tam", 4, 2))
    module = VideoClassificationModule(num_classes=4, backbone="resnet18", num_frames=2)
    names = ["a", "b", "c", "d"]
    raw = {"state_dict": {f"net.{k}": v for k, v in base.state_dict().items()}, "class_names": names,
           "hyper_parameters": dict(module.hparams)}
    torch.save(raw, tmp_path / "base.ckpt")

    reordered = randomize(create_video_model("resnet18", "tam", 4, 2), seed=1)
    assert load_init_weights(reordered, tmp_path / "base.ckpt", ["d", "c", "b", "a"]) == []
    torch.testing.assert_close(reordered.fc.weight, base.fc.weight.flip(0))
    torch.testing.assert_close(reordered.backbone.layer4[1].bn2.weight, base.backbone.layer4[1].bn2.weight)

    other = randomize(create_video_model("resnet18", "tam", 4, 2), seed=2)
    fresh_fc = other.fc.weight.clone()
    assert load_init_weights(other, tmp_path / "base.ckpt", ["w", "x", "y", "z"]) == ["fc.weight", "fc.bias"]
    torch.testing.assert_close(other.fc.weight, fresh_fc)  # same count, other classes: not loaded
    torch.testing.assert_close(other.backbone.conv1.weight, base.backbone.conv1.weight)


def test_a_bare_weights_file_is_not_a_project_checkpoint(tmp_path):
    torch.save(create_video_model("resnet18", "tam", 4, 2).state_dict(), tmp_path / "net.pth")
    with pytest.raises(CheckpointError, match=r"ckpt_path=.*net.pth is not a checkpoint of this project.*convert"):
        Checkpoint.read(tmp_path / "net.pth")
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        load_model(tmp_path / "missing.ckpt")


def test_a_data_config_that_reads_videos_otherwise_is_named(caplog):
    ckpt = Checkpoint.read(CKPT)
    with caplog.at_level(logging.WARNING, logger="tanet_lightning"):
        check_fits(ckpt, num_frames=2, class_names=NAMES, use="eval", protocol=ckpt.data_config)
        assert not caplog.text  # its own protocol: nothing to say
        check_fits(ckpt, num_frames=2, class_names=NAMES, use="eval",
                   protocol={**ckpt.data_config, "short_side": 40, "sampler": "dense", "test_views": "2x3"})
    assert "data.sampler: uniform in the checkpoint, dense here" in caplog.text
    assert "data.short_side: 32 in the checkpoint, 40 here" in caplog.text and "test_views" not in caplog.text
