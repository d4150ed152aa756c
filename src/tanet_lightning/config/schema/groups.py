"""What each config group and application config may hold: one dataclass per node.

Choice lists come from the code that consumes the values (the temporal-module registry, the backbone
families, the data formats, the metrics the LightningModule logs), so a new module or format needs no
edit here. Keys not listed in an open group (optimizer, scheduler, trainer, callbacks, loggers) are
still checked against their `_target_`'s signature by ``fields.check_target_keys``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar

from ...data.datamodule import FORMATS
from ...data.settings import parse_views
from ...data.synthetic import TASKS as SYNTHETIC_TASKS
from ...models.backbones import STAGE_NAMES, backbone_family
from ...models.insertion import POSITIONS
from ...models.temporal import TEMPORAL
from ...training.diagnose import ORDERS
from ...training.module import accuracy_metrics
from .fields import spec

# What `callbacks.*.monitor` may name: the metrics VideoClassificationModule logs per epoch
ACCURACY = tuple(accuracy_metrics(2, "").keys())  # top1, top5, mean_class_acc
MONITORABLE = (*(f"val/{m}" for m in (*ACCURACY, "loss", "top1_best")),
               *(f"train/{m}" for m in (*ACCURACY, "loss", "loss_epoch")))
# Lightning's precisions that this project's float32 data pipeline and kernels run with (64 is not one)
PRECISIONS = ("32-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true", 32, 16, "32", "16", "bf16")
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")
SEED = dict(ge=0, le=2**32 - 1)  # what numpy's (and so Lightning's) seeding accepts


def _views(value) -> str | None:
    try:
        parse_views(value)
    except ValueError as e:
        return f"{e}: give clips x crops, e.g. 10x3, 2x3 or 1x1 (crops: 1 or 3)"
    return None


def _backbone(value) -> str | None:
    try:
        backbone_family(value)
    except ValueError as e:
        return str(e)
    return None


def _odd(value) -> str | None:
    return None if value % 2 == 1 else "a temporal kernel size must be odd (3, 5, ...)"


def _device(value) -> str | None:
    return None if re.fullmatch(r"cpu|cuda(:\d+)?|mps", value) else "give cpu, cuda, cuda:N or mps"


# ------------------------------------------------------------------------------------------------
# Groups


@dataclass
class Synthetic:
    seed: int = spec(**SEED)
    train_per_class: int = spec(ge=1)
    val_per_class: int = spec(ge=1)
    test_per_class: int = spec(ge=1)
    size: int = spec(ge=16)
    min_frames: int = spec(ge=1)
    max_frames: int = spec(ge=1)
    fps: int = spec(ge=1)
    qp: int = spec(ge=0, le=51)
    task: str = spec(choices=tuple(SYNTHETIC_TASKS))


@dataclass
class Data:  # VideoDataModule's arguments
    data_dir: str = spec()
    format: str = spec(choices=FORMATS)
    root: str | None = spec(give="DIR")
    train_ann: str | None = spec(give="FILE")
    val_ann: str | None = spec(give="FILE")
    test_ann: str | None = spec(give="FILE")
    classes: str | None = spec(give="FILE")
    num_frames: int = spec(ge=1)
    sampler: str = spec(choices=("uniform", "dense"))
    dense_window: int = spec(ge=1)
    short_side: int | None = spec(ge=1)
    crop_size: int = spec(ge=1)
    test_crop_size: int | None = spec(ge=1)
    test_views: str = spec(check=_views, give="10x3", why="clips x crops")
    scales: list[float] = spec(gt=0, le=1, nonempty=True)
    max_distort: int = spec(ge=0)
    flip: bool = spec()
    flip_label_map: dict[int, int] | None = spec()
    frame_template: str = spec()
    start_index: int = spec(ge=0)
    path_template: str = spec()
    max_bad_fraction: float = spec(ge=0, le=1)
    batch_size: int = spec(ge=1)
    test_batch_size: int | None = spec(ge=1)
    num_workers: int = spec(ge=0)
    persistent_workers: bool = spec()
    pin_memory: bool | None = spec()
    prefetch_factor: int | None = spec(ge=1)
    decoder: str = spec(choices=("pyav", "torchcodec"))
    decode_device: str = spec(choices=("cpu", "cuda"))
    cache_dir: str | None = spec(give="DIR", why="where a remote shard location's chunks are cached")
    cache_size: str | None = spec(give="100GB", why="the shard cache's size limit")
    synthetic: Synthetic | None = spec()
    val_fraction: float = spec(ge=0, lt=1)
    split_seed: int = spec(**SEED)


@dataclass
class Temporal:  # the name (one of TEMPORAL) and the module's options: schema/__init__.py's rule
    OPEN: ClassVar[bool] = True
    name: str = spec()


@dataclass
class Tam:
    alpha: int = spec(ge=1)
    beta: int = spec(ge=1)
    kernel_size: int = spec(ge=1, check=_odd)


@dataclass
class Model:  # VideoClassificationModule's arguments
    backbone: str = spec(check=_backbone)
    pretrained: bool = spec()
    pretrained_path: str | None = spec(give="FILE")
    backbone_kwargs: dict[str, Any] | None = spec()
    num_frames: int = spec(ge=1)
    position: str | None = spec(choices=POSITIONS, why="null: the module's own place")
    stages: list[str] = spec(choices=STAGE_NAMES, nonempty=True)
    temporal: Temporal = spec()
    tam: Tam = spec()
    dropout: float = spec(ge=0, lt=1)
    fc_lr_mult: float = spec(gt=0, why="the classifier's lr = optimizer.lr x fc_lr_mult; 1.0: the same lr")
    lr_scale_base_batch: int | None = spec(ge=1)
    view_average: str = spec(choices=("logits", "prob"))
    label_smoothing: float = spec(ge=0, lt=1)
    compile: bool = spec()
    channels_last: bool = spec()
    init_from: str | None = spec(give="CKPT", why="a project, converted, official TAM or MMAction2 checkpoint, "
                                                 "or a save_pretrained folder")
    freeze_bn: bool = spec()
    sync_bn: bool = spec()


@dataclass
class Optimizer:  # open: any other argument of the optimiser class
    lr: float = spec(gt=0)
    weight_decay: float = spec(ge=0)
    momentum: float = spec(ge=0, lt=1)
    dampening: float = spec(ge=0, lt=1)
    nesterov: bool = spec()
    betas: list[float] = spec(ge=0, lt=1)
    eps: float = spec(gt=0)
    fused: bool | None = spec()


@dataclass
class Scheduler:  # open
    T_max: int = spec(ge=1)
    eta_min: float = spec(ge=0)
    milestones: list[int] = spec(ge=0)
    gamma: float = spec(gt=0)
    factor: float = spec(gt=0, le=1)
    total_iters: int = spec(ge=0)


@dataclass
class Trainer:  # open: Lightning's Trainer arguments, checked against its signature
    default_root_dir: str | None = spec()
    max_epochs: int | None = spec()  # bounds depend on the application: schema/__init__.py
    min_epochs: int | None = spec(ge=0)
    max_steps: int = spec(ge=-1)
    accelerator: str = spec(choices=ACCELERATORS)
    devices: int | str | list[int] = spec()
    num_nodes: int = spec(ge=1)
    precision: int | str | None = spec(choices=PRECISIONS, why="the clips and TAM's kernels are float32: no 64-bit")
    gradient_clip_val: float | None = spec(ge=0)
    gradient_clip_algorithm: str | None = spec(choices=("norm", "value"))
    deterministic: bool | str | None = spec()
    benchmark: bool | None = spec()
    check_val_every_n_epoch: int | None = spec(ge=1)
    log_every_n_steps: int | None = spec(ge=1)
    num_sanity_val_steps: int | None = spec(ge=-1)
    enable_progress_bar: bool | None = spec()
    accumulate_grad_batches: int = spec(ge=1)
    limit_train_batches: int | float | None = spec(ge=0)
    limit_val_batches: int | float | None = spec(ge=0)
    limit_test_batches: int | float | None = spec(ge=0)
    overfit_batches: int | float = spec(ge=0)
    fast_dev_run: bool | int = spec(ge=0)
    sync_batchnorm: bool = spec()
    use_distributed_sampler: bool = spec()


@dataclass
class Callback:  # open: one entry of the callbacks group
    monitor: str | None = spec(choices=MONITORABLE, why="the metrics the model logs")
    mode: str = spec(choices=("min", "max"))
    save_top_k: int = spec(ge=-1)
    every_n_epochs: int | None = spec(ge=0)
    patience: int = spec(ge=0)
    logging_interval: str | None = spec(choices=("step", "epoch"))
    dirpath: str | None = spec()
    filename: str | None = spec()


@dataclass
class Logger:  # open: one entry of the logger group
    save_dir: str = spec()
    name: str | None = spec()


@dataclass
class Paths:
    root_dir: str = spec()
    data_dir: str = spec()
    log_dir: str = spec()
    output_dir: str = spec()


@dataclass
class Diagnose:  # +diagnose=time: TimeDiagnostic's arguments
    orders: list[str] = spec(choices=ORDERS[1:], why="`ordered` is always scored: the reference")
    shuffle_seed: int = spec(**SEED)


# ------------------------------------------------------------------------------------------------
# Application configs (their own keys; their groups are checked with the dataclasses above)


@dataclass
class Common:
    task_name: str = spec()
    experiment_name: str = spec()
    tags: list[Any] = spec()
    seed: int | None = spec(**SEED, give="N", why="null: no seeding")


@dataclass
class Train(Common):
    train: bool = spec()
    test: bool = spec()
    torch_threads: int | None = spec(ge=1)
    ckpt_path: str | None = spec(give="PATH", why="or last: resume this run")
    overwrite: bool = spec()  # the run lifecycle's key (issue 17 item 1), where it exists
    optimized_metric: str = spec(choices=MONITORABLE, why="what a sweeper (hparams_search=...) maximises")


@dataclass
class Eval(Common):
    ckpt_path: str = spec(give="PATH", why="a checkpoint written by train or convert, or a save_pretrained folder")
    view_average: str | None = spec(choices=("logits", "prob"))
    overwrite: bool = spec()  # the run lifecycle's key: evaluate again over a finished evaluation


@dataclass
class Predict(Common):
    ckpt_path: str = spec(give="PATH", why="a project checkpoint (train, convert) or a save_pretrained folder")
    inputs: str | list[str] = spec(give="[a.mp4,videos/]", why="video files and/or folders", nonempty=True)
    topk: int = spec(ge=1, give="5")
    out: str = spec()
    views: str | None = spec(check=_views, give="1x1", why="clips x crops; null: the checkpoint's")
    device: str = spec(check=_device)
    progress: bool = spec()


@dataclass
class Export(Common):
    ckpt_path: str = spec(give="PATH", why="a project checkpoint (train, convert) or a save_pretrained folder")
    format: str = spec(choices=("onnx", "hf"))
    out: str | None = spec(give="PATH", why="null: model.onnx / hf in the run directory")
    opset: int = spec(ge=7)
    video: str | None = spec()
    check: bool = spec()
    tolerance: float = spec(gt=0)
    repo_id: str | None = spec(give="OWNER/NAME", why="format=hf: upload the folder to the Hugging Face Hub")


@dataclass
class Visualize(Common):
    ckpt_path: str = spec(give="PATH", why="a TANet checkpoint from train")
    videos: str | list[str] = spec()
    video_root: str | None = spec()
    block: str = spec()
    i3d_ckpt_path: str | None = spec()
    i3d_norm: str = spec(choices=("l1", "none"))
    size: int | None = spec(ge=1)
    out_dir: str = spec()


@dataclass
class Prepare(Common):
    out: str = spec(give="DIR", why="the folder the prepared copy goes to")
    gop: int = spec(ge=1, why="a keyframe at least every gop frames")
    short_side: int | None = spec(ge=2, why="null: the source's size")
    crf: int = spec(ge=0, le=51, why="x264 quality: lower is better and bigger")
    workers: int | None = spec(ge=1, why="processes; null: one per core")
    progress: bool = spec()
    shards: bool = spec(why="true: the copy as LitData shards (data.root=OUT or its upload reads them)")
    chunk_bytes: str = spec(give="128MB", why="the size of one shard (LitData recommends 64-256 MB)")
    upload: str | None = spec(give="s3://BUCKET/PREFIX", why="shards=true: copy the shards to an object store")


# ------------------------------------------------------------------------------------------------
# argparse applications: the same fields, named by their flags


@dataclass
class ConvertArgs:
    src: str = spec()
    out: str = spec()
    source: str = spec(choices=("auto", "official", "mmaction2", "project"))
    num_frames: int | None = spec(ge=1)
    classes: str | None = spec()
    data: str | None = spec()


@dataclass
class EnsembleArgs:
    scores: list[str] = spec(nonempty=True)
    mode: str = spec(choices=("prob", "logits"))
    weights: list[float] | None = spec(ge=0)


@dataclass
class ComplexityArgs:
    backbone: str = spec(check=_backbone)
    frames: int = spec(ge=1)
    size: int | None = spec(ge=1)
    position: str | None = spec(choices=POSITIONS)
    stages: list[str] = spec(choices=STAGE_NAMES, nonempty=True)
    classes: int = spec(ge=1)
    rows: list[str] = spec(choices=tuple(s.paper_row for s in TEMPORAL.values() if s.paper or s.reported),
                           nonempty=True)
