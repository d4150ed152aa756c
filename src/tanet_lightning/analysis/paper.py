"""The paper experiments: what each sweep varies and which paper table it reproduces, in one place.

Every sweep of ``conf/experiment/`` is declared here once and read from here by everything else:
- Hydra launches ``sweep`` (the experiment file says ``hydra.sweeper.params: ${tanet.sweep:NAME}``);
- the local report (report.py), the W&B report and workspace view (analysis/wandb_report.py) and the
  experiment pages label runs by ``keys`` (the resolved-config keys the sweep varies) and put the
  paper's ``numbers`` beside them, row by row (``row(cfg)`` maps a job's resolved config to its row).

Accuracies are Kinetics-400 top-1/top-5 (%), re-typed from the paper's tables; FLOPs/params of
Table 2 live with the counter (complexity.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..models.temporal import TEMPORAL

# Table 2 comes from the temporal-module registry: each module's spec carries its row and numbers. The sweep
# adds the modules after TAM (TAda2D, TEA, GST: their own papers' numbers, not Table 2's) so that one
# sweep compares all of them; the paper columns stay Table 2's. It is the ResNet-50 comparison: modules whose
# papers report ViT numbers (ST-Adapter, AIM, TokShift, ATM) are not its rows (``TemporalSpec.resnet_row``).
MODULE_ROWS = {name: spec.paper_row for name, spec in TEMPORAL.items() if spec.resnet_row}
ARCH_NAMES = {
    "shufflenet_v2_x1_0": "ShuffleNet V2", "mobilenetv2_100": "MobileNet V2", "inception_v3": "Inception V3",
    "resnet50": "ResNet-50", "resnext50_32x4d": "ResNeXt-50", "resnet18": "ResNet-18", "resnet34": "ResNet-34",
    "resnet101": "ResNet-101",
}
# the paper's ablation setting (Kinetics-400 through its CSV annotations, ResNet-50, 8 frames)
K400 = {"data.format": "kinetics_csv"}
K400_R50 = {**K400, "model.backbone": "resnet50"}
K400_R50_8F = {**K400_R50, "data.num_frames": 8}
STAGE_LABELS = {("res5",): "res5", ("res4", "res5"): "res4-5", ("res3", "res4", "res5"): "res3-5",
                ("res2", "res3", "res4", "res5"): "res2-5"}


@dataclass(frozen=True)
class PaperTable:
    title: str
    row: Callable[[Any], str]  # resolved job config -> row name
    numbers: dict[str, tuple[float, float]]  # row -> (top-1, top-5)
    command: str
    sweep: dict[str, str]  # Hydra sweeper params: override key -> comma-separated values (one job each)
    keys: tuple[str, ...]  # the resolved-config keys those overrides set: run labels, W&B axes and groups
    # the paper's setting as resolved-config values: only a sweep run in it is drawn beside the paper's numbers
    setting: dict[str, Any] = field(default_factory=dict)
    # what the sweep pins on the synthetic data (+preset=synthetic), over the preset's ResNet-18: value
    # overrides, applied after every config file (a sweep's group overrides would come before the preset's)
    synthetic: dict[str, str] = field(default_factory=dict)

    def settings(self, cfg: Any) -> dict[str, Any]:
        """The swept keys' values in one job's resolved config (a nested dict)."""
        return {key: lookup(cfg, key) for key in self.keys}

    def in_setting(self, cfg: Any) -> bool:
        """Whether one job's resolved config ran in the paper's setting (its data, backbone, frames)."""
        for key, want in self.setting.items():
            try:
                got = lookup(cfg, key)
            except (KeyError, TypeError):
                return False
            if key == "model.backbone":  # timm's pretrained tag (resnet50.a1_in1k) is still the paper's net
                got = str(got).split(".")[0]
            if got != want:
                return False
        return True


def own_papers_markdown(table: PaperTable) -> str:
    """The swept modules that are not in the paper's table (TAda2D, TEA, GST) with their own papers' numbers:
    another dataset or protocol than the table's, so a table of their own."""
    swept = set(table.sweep.get("model/temporal", "").split(","))
    specs = [s for s in TEMPORAL.values() if s.reported is not None and s.name in swept]
    if not specs:
        return ""
    resnet = all(s.reported.backbone == "resnet50" for s in specs)
    lines = (["| module | results (ResNet-50, top-1 / top-5) | GFLOPs per view | source |", "|---|---|---|---|"]
             if resnet else ["| module | backbone | results (top-1 / top-5) | GFLOPs per view | source |",
                             "|---|---|---|---|---|"])
    for s in specs:
        r = s.reported
        results = "; ".join(f"{d} {_top1(a, resnet)}" + (f" / {b:.1f}" if b is not None else "")
                            for d, a, b in r.results)
        flops = f"{r.gflops:g} ({r.frames}x{r.size}²)" if r.gflops is not None else "–"
        where = "" if resnet else f" {r.backbone} |"
        lines.append(f"| {s.paper_row} |{where} {results} ({r.frames} frames) | {flops} | {r.source} |")
    return "\n".join(lines)


def _top1(value: float, resnet: bool) -> str:
    return f"{value:.1f}" if resnet or round(value, 1) == value else f"{value:.2f}"  # TokShift's 77.28


def lookup(cfg: Any, dotted: str) -> Any:
    node = cfg
    for part in dotted.split("."):
        node = node[part]
    return node


def sweep_params(experiment: str, *, _root_: Any = None) -> dict[str, str]:
    """``hydra.sweeper.params`` of an experiment (the ``tanet.sweep`` resolver): jobs come from here. On the
    synthetic data (the job config ``_root_``, which OmegaConf passes to the resolver, reads
    ``data.format: synthetic``) the table's ``synthetic`` pins come with them."""
    if experiment not in TABLES:
        raise KeyError(f"tanet.sweep:{experiment}: no such sweep in tanet_lightning/analysis/paper.py "
                       f"(known: {', '.join(TABLES)})")
    table = TABLES[experiment]
    synthetic = _root_ is not None and _select(_root_, "data.format") == "synthetic"
    return {**table.sweep, **(table.synthetic if synthetic else {})}


def _select(cfg: Any, dotted: str) -> Any:
    try:
        return lookup(cfg, dotted)
    except (KeyError, TypeError, AttributeError):
        return None


def _arch(cfg) -> str:
    return ARCH_NAMES.get(str(cfg["model"]["backbone"]).split(".")[0], str(cfg["model"]["backbone"]))


TABLES: dict[str, PaperTable] = {
    "ablation_alpha_beta": PaperTable(
        "Table 1a: alpha and beta of TAM (Kinetics-400, ResNet-50, 8 frames)",
        lambda c: f"alpha={c['model']['tam']['alpha']}, beta={c['model']['tam']['beta']}",
        {"alpha=1, beta=4": (75.63, 92.10), "alpha=2, beta=4": (76.09, 92.30), "alpha=4, beta=4": (75.72, 92.14),
         "alpha=2, beta=2": (75.91, 92.38), "alpha=2, beta=8": (75.63, 92.20)},
        "python -m tanet_lightning.train +experiment=ablation_alpha_beta",
        {"model.tam": "{alpha:1,beta:4},{alpha:2,beta:4},{alpha:4,beta:4},{alpha:2,beta:2},{alpha:2,beta:8}"},
        ("model.tam.alpha", "model.tam.beta"),
        K400_R50_8F,
    ),
    "ablation_kernel": PaperTable(
        "Table 1b: kernel size K of Theta (Kinetics-400, ResNet-50)",
        lambda c: f"K={c['model']['tam']['kernel_size']}, {c['data']['num_frames']} frames",
        {"K=3, 8 frames": (76.09, 92.30), "K=5, 8 frames": (75.62, 92.14), "K=3, 16 frames": (76.87, 92.88),
         "K=5, 16 frames": (77.19, 93.17)},
        "python -m tanet_lightning.train +experiment=ablation_kernel",
        {"model.tam.kernel_size": "3,5", "data.num_frames": "8,16"},
        ("model.tam.kernel_size", "data.num_frames"),
        K400_R50,
    ),
    "temporal_modules": PaperTable(
        "Table 2: temporal modules (Kinetics-400, ResNet-50, 8 frames, single view)",
        lambda c: MODULE_ROWS.get(c["model"]["temporal"]["name"], c["model"]["temporal"]["name"]),
        {spec.paper_row: spec.paper[2:] for spec in TEMPORAL.values() if spec.paper},
        "python -m tanet_lightning.train +experiment=temporal_modules",
        {"model/temporal": ",".join(MODULE_ROWS)},
        ("model.temporal.name",),
        K400_R50_8F,
    ),
    "backbones": PaperTable(
        "Table 3: other backbones, without and with TAM (Kinetics-400, 10 clips x 3 crops)",
        lambda c: f"{_arch(c)} {'w/o' if c['model']['temporal']['name'] == 'c2d' else 'with'} TAM",
        {"ShuffleNet V2 w/o TAM": (62.1, 84.3), "ShuffleNet V2 with TAM": (67.3, 87.6),
         "MobileNet V2 w/o TAM": (64.1, 85.6), "MobileNet V2 with TAM": (71.6, 90.1),
         "Inception V3 w/o TAM": (71.4, 89.8), "Inception V3 with TAM": (75.6, 92.0),
         "ResNet-50 w/o TAM": (70.7, 88.9), "ResNet-50 with TAM": (76.1, 92.3),
         "ResNeXt-50 w/o TAM": (70.1, 88.8), "ResNeXt-50 with TAM": (76.4, 92.0)},
        "python -m tanet_lightning.train +experiment=backbones",
        {"+model/arch": "shufflenet_v2,mobilenet_v2,inception_v3,resnet50,resnext50", "model/temporal": "c2d,tam"},
        ("model.backbone", "model.temporal.name"),
        K400,
    ),
    "ablation_position": PaperTable(
        "Table 5a: position of TAM in the block (Kinetics-400, ResNet-50, 8 frames)",
        lambda c: f"TANet-{c['model']['position']}",
        {"TANet-a": (75.95, 92.18), "TANet-b": (76.09, 92.30), "TANet-c": (75.75, 92.13), "TANet-d": (75.20, 91.78)},
        "python -m tanet_lightning.train +experiment=ablation_position",
        {"model.position": "a,b,c,d"},
        ("model.position",),
        K400_R50_8F,
    ),
    "ablation_stages": PaperTable(
        "Table 5b: stages with TA-blocks (Kinetics-400, ResNet-50, 8 frames)",
        lambda c: STAGE_LABELS.get(tuple(c["model"]["stages"]), "+".join(c["model"]["stages"])),
        {"res5": (74.12, 91.45), "res4-5": (75.15, 92.04), "res3-5": (75.90, 92.22), "res2-5": (76.09, 92.30)},
        "python -m tanet_lightning.train +experiment=ablation_stages",
        {"model.stages": "[res5],[res4,res5],[res3,res4,res5],[res2,res3,res4,res5]"},
        ("model.stages",),
        K400_R50_8F,
    ),
}

# --- temporal modules on ViTs: a sweep of its own, not a table of the TANet paper -------------
# The image model alone (C2D-ViT), TokShift, TAM on the patch tokens, ST-Adapter, AIM, ATM on a CLIP ViT-B/16,
# each frozen (model.freeze_backbone=true: only the new modules and the classifier train) and end to end.
# Paper numbers: AIM's K400 result is the one with top-1 and top-5 for this setting (frozen CLIP ViT-B/16,
# 8 frames); the others (ST-Adapter: top-1 only; TokShift: ImageNet-21k ViT, end to end; ATM: its best
# models, EVA02-CLIP ViT-L/14, end to end) are in the
# own-papers table of the page. The synthetic preset trains a ViT-Ti (8x8 patches at 32 px) from scratch.
VIT_MODULES = ("c2d", "tokshift", "tam", "st_adapter", "aim", "atm")
VIT_ROW_NAMES = {"c2d": "C2D-ViT", "tokshift": "TokShift", "tam": "TAM on tokens", "st_adapter": "ST-Adapter",
                 "aim": "AIM", "atm": "ATM"}
VIT_TINY = {"model.backbone": "vit_tiny_patch16_224", "+model.backbone_kwargs.img_size": "32",
            "+model.backbone_kwargs.patch_size": "8"}  # conf/model/arch/vit_tiny.yaml, as value overrides


def _vit_row(c) -> str:
    name = c["model"]["temporal"]["name"]
    return f"{VIT_ROW_NAMES.get(name, name)}, {'frozen' if c['model']['freeze_backbone'] else 'end to end'}"


TABLES["temporal_modules_vit"] = PaperTable(
    "Temporal modules on a CLIP ViT-B/16, frozen and end to end (Kinetics-400, 8 frames, 3 clips x 1 crop)",
    _vit_row,
    {"AIM, frozen": (83.9, 96.3)},
    "python -m tanet_lightning.train +experiment=temporal_modules_vit",
    {"model/temporal": ",".join(VIT_MODULES), "model.freeze_backbone": "true,false"},
    ("model.temporal.name", "model.freeze_backbone"),
    {**K400, "model.backbone": "vit_base_patch16_clip_224", "data.num_frames": 8},
    VIT_TINY,
)

# single-run recipes: experiment -> (title, paper top-1, top-5)
RECIPES: dict[str, tuple[str, float, float]] = {
    "k400_tanet_r50_8f": ("Kinetics-400, TANet-50, 8 frames, 10 clips x 3 crops", 76.1, 92.3),
    "k400_tanet_r50_16f": ("Kinetics-400, TANet-50, 16 frames, 4 clips x 3 crops", 76.9, 92.9),
    "sthv1_tanet_r50_8f": ("Something-Something V1, TANet-50, 8 frames, 1 clip x centre crop", 46.5, 75.8),
    "sthv1_tanet_r50_16f": ("Something-Something V1, TANet-50, 16 frames, 1 clip x centre crop", 47.6, 77.7),
    "sthv2_tanet_r50_8f": ("Something-Something V2, TANet-50, 8 frames, 2 clips x 3 crops", 62.7, 88.0),
    "sthv2_tanet_r50_16f": ("Something-Something V2, TANet-50, 16 frames, 2 clips x 3 crops", 64.6, 89.5),
}
