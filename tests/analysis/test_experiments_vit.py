"""The ViT experiments: the frozen-CLIP recipes compose with their papers' protocol, every point of
the temporal_modules_vit sweep builds its network (paper: CLIP ViT-B/16; +preset=synthetic: a ViT-Ti from
scratch) with the swept module and freezing, the report plans the jobs Hydra launches, and the warm-up schedule."""

from __future__ import annotations

import math

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.utils import instantiate
from omegaconf import OmegaConf, read_write

from tanet_lightning.analysis.paper import TABLES, VIT_MODULES, sweep_params
from tanet_lightning.analysis.sweep_jobs import planned_overrides
from tanet_lightning.config import config_dir
from tanet_lightning.models.insertion_vit import TemporalViTBlock
from tanet_lightning.models.temporal import TEMPORAL
from tanet_lightning.training.schedules import warmup_cosine, warmup_cosine_factor

SWEEP = "temporal_modules_vit"
CLIP = "vit_base_patch16_clip_224.openai"
# recipe -> (module, position, lr, weight decay, epochs, warm-up, base batch, views, stride or None: uniform)
RECIPES_VIT = {
    "k400_st_adapter_vit_b16_8f": ("st_adapter", "before_mlp", 1e-3, 1e-2, 12, 2, 256, "3x1", 16),
    "sthv2_st_adapter_vit_b16_8f": ("st_adapter", ["before_attn", "before_mlp"], 1e-3, 1e-2, 50, 2, 256, "1x3", None),
    "k400_aim_vit_b16_8f": ("aim", None, 3e-4, 0.05, 30, 2.5, 64, "3x1", 16),
    "sthv2_aim_vit_b16_8f": ("aim", None, 3e-4, 0.05, 50, 2.5, 64, "1x3", None),
}


def hydra_cfg(overrides: list[str]):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        return compose("train", overrides=overrides, return_hydra_config=True)


def jobs(cfg, cli: list[str]) -> list[list[str]]:
    """What Hydra's basic sweeper launches: the config's params (resolved, as the sweeper reads them) first,
    then the command line."""
    params = OmegaConf.to_container(cfg.hydra.sweeper, resolve=True)["params"]
    parsed = OverridesParser.create().parse_overrides([*(f"{k}={v}" for k, v in params.items()), *cli])
    return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]


def check_network(module, name: str, frozen: bool) -> None:
    """The swept module is in the built network, and exactly the new parameters train when frozen."""
    net = module.net
    spec = TEMPORAL[name]
    blocks = list(net.backbone.blocks)
    if spec.placement == "none":
        assert not any(isinstance(b, TemporalViTBlock) for b in blocks)
    elif spec.placement == "replace_block":
        assert all(type(b).__module__.endswith(f"temporal.{name}") for b in blocks), type(blocks[0])
    else:  # every block, or the module's own ones (ATM: the 7th)
        patched = [i for i, b in enumerate(blocks) if isinstance(b, TemporalViTBlock)]
        assert patched == (list(spec.vit_blocks) if spec.vit_blocks else list(range(len(blocks))))
        kinds = {type(m) for i in patched for m in blocks[i].temporal.values()}
        assert kinds == {type(spec.factory(net.backbone.embed_dim, net.num_frames))}, kinds
    trained = {n for n, p in net.named_parameters() if p.requires_grad}
    everything = {n for n, _ in net.named_parameters()}
    if frozen:
        assert trained == everything - set(net.image_parameters)
        assert {"fc.weight", "fc.bias"} <= trained and not trained & set(net.image_parameters)
    else:
        assert trained == everything


@pytest.mark.heavy
def test_every_point_of_the_sweep_builds_on_clip_vit_b16(make_cfg):
    cfg = hydra_cfg([f"+experiment={SWEEP}"])
    assert cfg.hydra.mode.name == "MULTIRUN" and cfg.experiment_name == SWEEP
    points = jobs(cfg, [])
    assert len(points) == 2 * len(VIT_MODULES) == len({tuple(j) for j in points})
    seen = set()
    for job in points:
        job_cfg = make_cfg([f"+experiment={SWEEP}", *job, "model.pretrained=false"], tiny=False)
        assert job_cfg.model.backbone == CLIP and job_cfg.data.format == "kinetics_csv"
        assert job_cfg.data.num_frames == 8 and job_cfg.data.dense_window // 8 == 16
        assert job_cfg.data.test_views == "3x1" and job_cfg.data.test_crop_size == 224
        name, frozen = job_cfg.model.temporal.name, job_cfg.model.freeze_backbone
        with torch.device("meta"):  # shapes only: no weights are allocated or downloaded
            module = instantiate(job_cfg.model, num_classes=400)
        assert module.net.backbone.patch_embed.grid_size == (14, 14)
        check_network(module, name, frozen)
        seen.add(TABLES[SWEEP].row(job_cfg))
    assert seen == {f"{r}, {f}" for r in ("C2D-ViT", "TokShift", "TAM on tokens", "ST-Adapter", "AIM", "ATM")
                    for f in ("frozen", "end to end")}
    assert TABLES[SWEEP].in_setting(OmegaConf.to_container(job_cfg, resolve=True))


def test_the_synthetic_preset_runs_the_sweep_on_a_vit_tiny(make_cfg):
    """+preset=synthetic swaps the backbone for the ResNet-18; this sweep pins a ViT-Ti (8x8 patches, 32 px)
    instead, with value overrides, which come after every config file whatever their order."""
    cfg = hydra_cfg([f"+experiment={SWEEP}", "+preset=synthetic"])
    points = jobs(cfg, ["+preset=synthetic"])
    assert len(points) == 2 * len(VIT_MODULES)
    for job in points:
        job_cfg = make_cfg([f"+experiment={SWEEP}", *job])
        assert job_cfg.model.backbone == "vit_tiny_patch16_224" and not job_cfg.model.pretrained
        assert job_cfg.data.format == "synthetic" and job_cfg.trainer.max_epochs == 1  # the tiny run's
        assert job_cfg.scheduler._target_.endswith("CosineAnnealingLR")  # the preset's, whole
        with torch.device("meta"):
            module = instantiate(job_cfg.model, num_classes=8)
        assert module.net.backbone.patch_embed.grid_size == (4, 4) and module.net.backbone.embed_dim == 192
        check_network(module, job_cfg.model.temporal.name, job_cfg.model.freeze_backbone)
    # the paper sweep pins nothing: the synthetic pins come with the synthetic data only
    assert sweep_params(SWEEP) == TABLES[SWEEP].sweep
    assert sweep_params(SWEEP, _root_=OmegaConf.create({"data": {"format": "synthetic"}})) == {
        **TABLES[SWEEP].sweep, **TABLES[SWEEP].synthetic}
    assert sweep_params("temporal_modules", _root_=OmegaConf.create({"data": {"format": "synthetic"}})) == \
        TABLES["temporal_modules"].sweep  # the ResNet sweeps: the preset's ResNet-18


@pytest.mark.parametrize("preset", [[], ["+preset=synthetic"]])
def test_the_report_plans_the_jobs_hydra_launches(tmp_path, preset):
    """report.py reads the plan from multirun.yaml without the resolver: it must add the synthetic pins too,
    or every launched job of the synthetic sweep would be unplanned and every planned one 'not started'."""
    cfg = hydra_cfg([f"+experiment={SWEEP}", *preset])
    cli = [f"+experiment={SWEEP}", *preset, "seed=0,1"]
    with read_write(cfg.hydra):
        cfg.hydra.overrides.task = cli
    OmegaConf.save(cfg, tmp_path / "multirun.yaml")  # as Hydra writes it: params unresolved
    assert "${tanet.sweep:" in (tmp_path / "multirun.yaml").read_text()
    launched = jobs(cfg, cli)
    assert len(launched) == 2 * 2 * len(VIT_MODULES)
    assert planned_overrides(tmp_path) == launched


@pytest.mark.parametrize("name", list(RECIPES_VIT))
def test_vit_recipes_compose_with_their_papers_protocol(make_cfg, name):
    module, position, lr, wd, epochs, warmup, base, views, stride = RECIPES_VIT[name]
    cfg = make_cfg([f"+experiment={name}", "model.pretrained=false"], tiny=False)
    assert cfg.model.backbone == CLIP and cfg.model.freeze_backbone and cfg.model.temporal.name == module
    assert (list(cfg.model.position) if isinstance(position, list) else cfg.model.position) == position
    assert cfg.optimizer._target_ == "torch.optim.AdamW" and cfg.optimizer.lr == lr
    assert cfg.optimizer.weight_decay == wd and cfg.model.fc_lr_mult == 1.0
    assert cfg.trainer.max_epochs == epochs and cfg.scheduler.warmup_epochs == warmup
    assert cfg.scheduler.max_epochs == epochs and cfg.model.lr_scale_base_batch == base
    assert cfg.model.view_average == "prob" and cfg.trainer.gradient_clip_val is None
    assert cfg.data.num_frames == 8 == cfg.model.num_frames and cfg.data.test_views == views
    assert cfg.data.crop_size == cfg.data.test_crop_size == cfg.data.short_side == 224
    if stride:
        assert cfg.data.format == "kinetics_csv" and cfg.data.sampler == "dense"
        assert cfg.data.dense_window // cfg.data.num_frames == stride and cfg.data.flip
    else:
        assert cfg.data.format == "sthv2_json" and cfg.data.sampler == "uniform" and not cfg.data.flip
    if module == "aim":
        assert cfg.model.backbone_kwargs.drop_path_rate == 0.2
        assert cfg.model.temporal.num_tadapter == (2 if name.startswith("sthv2") else 1)
        assert cfg.model.label_smoothing == (0.1 if name.startswith("sthv2") else 0.0)
    with torch.device("meta"):
        net = instantiate(cfg.model, num_classes=400).net
    assert sum(p.requires_grad for p in net.parameters()) and not any(
        p.requires_grad for n, p in net.named_parameters() if n in set(net.image_parameters))


def test_warmup_cosine_is_the_papers_schedule_at_epoch_midpoints():
    """ST-Adapter's K400 schedule (2 warm-up epochs of 12), one value per epoch: the per-iteration schedule at
    each epoch's midpoint. A real optimizer steps through it."""
    factors = [warmup_cosine_factor(e, 2, 12) for e in range(12)]
    assert factors[:2] == [0.25, 0.75]
    assert factors[2] == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.05)))
    assert all(a > b for a, b in zip(factors[2:], factors[3:], strict=False)) and 0 < factors[-1] < 0.01
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=1e-3)
    sched = warmup_cosine(opt, 2.5, 30)
    seen = []
    for _ in range(30):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen[0] == pytest.approx(1e-3 * 0.5 / 2.5) and seen[2] == pytest.approx(1e-3)  # epoch 2: t = 2.5, the peak
    assert max(seen) <= 1e-3
    with pytest.raises(ValueError, match="warmup_epochs=12 must lie in"):
        warmup_cosine(opt, 12, 12)
