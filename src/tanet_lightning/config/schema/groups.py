"""What each config group and application config may hold: one pydantic model per node.

``Data`` and ``Model`` are not written here: they are the models of the constructors that take those keys
(``VideoDataModule`` with ``ClipSettings``, ``create_video_model`` with ``VideoClassificationModule``),
read off their signatures, where the types and ranges are stated once and checked on every call. The
other groups describe third-party classes (optimisers, Lightning's Trainer and callbacks, loggers) and
the applications' own keys. Choice lists come from the code that consumes the values (the temporal-module
registry, the backbone families, the metrics the LightningModule logs). Keys not listed in an open group
(optimizer, scheduler, trainer, callbacks, loggers) are still checked against their `_target_`'s signature.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from ...base.typed import OPEN, STRICT, Count, Fix, Seed, check, model_of, settings_of
from ...data.datamodule import VideoDataModule
from ...data.settings import views
from ...models.temporal import TEMPORAL
from ...models.video import Backbone, Position, Stages, create_video_model
from ...training.diagnose import ORDERS
from ...training.module import VideoClassificationModule, accuracy_metrics

# What `callbacks.*.monitor` may name: the metrics VideoClassificationModule logs per epoch
ACCURACY = tuple(accuracy_metrics(2, "").keys())  # top1, top5, mean_class_acc
MONITORABLE = (*(f"val/{m}" for m in (*ACCURACY, "loss", "top1_best")),
               *(f"train/{m}" for m in (*ACCURACY, "loss", "loss_epoch")))
# Lightning's precisions that this project's float32 data pipeline and kernels run with (64 is not one)
PRECISIONS = ("32-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true", 32, 16, "32", "16", "bf16")
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")
VIEW_AVERAGES = ("logits", "prob")

NonNegative = Annotated[float, Field(ge=0)]
NonNegativeInt = Annotated[int, Field(ge=0)]
Positive = Annotated[float, Field(gt=0)]
Fraction = Annotated[float, Field(ge=0, lt=1)]  # [0, 1)


def _views(value: str) -> str | None:
    try:
        views(value)
    except ValueError as e:
        return str(e)
    return None


def _odd(value: int) -> str | None:
    return None if value % 2 == 1 else "a temporal kernel size must be odd (3, 5, ...)"


def _device(value: str) -> str | None:
    return None if re.fullmatch(r"cpu|cuda(:\d+)?|mps", value) else "give cpu, cuda, cuda:N or mps"


Views = Annotated[str, check(_views)]


class Closed(BaseModel):
    model_config = STRICT


class Open(BaseModel):  # any other key (of the `_target_`'s signature: checked apart)
    model_config = OPEN


# ------------------------------------------------------------------------------------------------
# Groups


Data = settings_of(VideoDataModule)  # VideoDataModule's arguments and ClipSettings' fields


class Temporal(Open):  # the name (one of TEMPORAL) and the module's options: schema/__init__.py's rule
    name: str


class Tam(Closed):
    alpha: Count
    beta: Count
    kernel_size: Annotated[int, Field(ge=1), check(_odd)]


# VideoClassificationModule's arguments: the network's (create_video_model's signature) and the module's own,
# whose ranges its signature does not state (yet)
Model = model_of(
    create_video_model, VideoClassificationModule.__init__, name="Model",
    skip=("num_classes", "optimizer", "scheduler"), temporal=Temporal, tam=Tam,
    fc_lr_mult=Annotated[Positive, Fix(why="the classifier's lr = optimizer.lr x fc_lr_mult; 1.0: the same lr")],
    lr_scale_base_batch=Count | None, view_average=Literal[VIEW_AVERAGES], label_smoothing=Fraction,
    init_from=Annotated[str | None, Fix(give="CKPT", why="a project, converted, official TAM or MMAction2 checkpoint, "
                                                          "or a save_pretrained folder")])


class Optimizer(Open):  # any other argument of the optimiser class
    lr: Positive
    weight_decay: NonNegative
    momentum: Fraction
    dampening: Fraction
    nesterov: bool
    betas: list[Fraction]
    eps: Positive
    fused: bool | None


class Scheduler(Open):
    T_max: Count
    eta_min: NonNegative
    milestones: list[NonNegativeInt]
    gamma: Positive
    factor: Annotated[float, Field(gt=0, le=1)]
    total_iters: NonNegativeInt


Limit = Annotated[int | float, Field(ge=0)]  # a number of batches or a fraction of them


class Trainer(Open):  # Lightning's Trainer arguments, checked against its signature
    default_root_dir: str | None
    max_epochs: int | None  # bounds depend on the application: schema/__init__.py
    min_epochs: NonNegativeInt | None
    max_steps: Annotated[int, Field(ge=-1)]
    accelerator: Literal[ACCELERATORS]
    devices: int | str | list[int]
    num_nodes: Count
    precision: Annotated[Literal[PRECISIONS] | None, Fix(why="the clips and TAM's kernels are float32: no 64-bit")]
    gradient_clip_val: NonNegative | None
    gradient_clip_algorithm: Literal["norm", "value"] | None
    deterministic: bool | str | None
    benchmark: bool | None
    check_val_every_n_epoch: Count | None
    log_every_n_steps: Count | None
    num_sanity_val_steps: Annotated[int, Field(ge=-1)] | None
    enable_progress_bar: bool | None
    accumulate_grad_batches: Count
    limit_train_batches: Limit | None
    limit_val_batches: Limit | None
    limit_test_batches: Limit | None
    overfit_batches: Limit
    fast_dev_run: bool | NonNegativeInt
    sync_batchnorm: bool
    use_distributed_sampler: bool


class Callback(Open):  # one entry of the callbacks group
    monitor: Annotated[Literal[MONITORABLE] | None, Fix(why="the metrics the model logs")]
    mode: Literal["min", "max"]
    save_top_k: Annotated[int, Field(ge=-1)]
    every_n_epochs: NonNegativeInt | None
    patience: NonNegativeInt
    logging_interval: Literal["step", "epoch"] | None
    dirpath: str | None
    filename: str | None


class Logger(Open):  # one entry of the logger group
    save_dir: str
    name: str | None


class Paths(Closed):
    root_dir: str
    data_dir: str
    log_dir: str
    output_dir: str


class Diagnose(Closed):  # +diagnose=time: TimeDiagnostic's arguments
    orders: Annotated[list[Literal[ORDERS[1:]]], Fix(why="`ordered` is always scored: the reference")]
    shuffle_seed: Seed


# ------------------------------------------------------------------------------------------------
# Application configs (their own keys; their groups are checked with the models above)


class Common(Closed):
    task_name: str
    experiment_name: str
    tags: list[Any]
    seed: Annotated[Seed | None, Fix(give="N", why="null: no seeding")]


Checkpoint = Annotated[str, Fix(give="PATH", why="a project checkpoint (train, convert) or a save_pretrained folder")]


class Train(Common):
    train: bool
    test: bool
    torch_threads: Count | None
    ckpt_path: Annotated[str | None, Fix(give="PATH", why="or last: resume this run")]
    overwrite: bool  # the run lifecycle's key, where it exists
    optimized_metric: Annotated[Literal[MONITORABLE], Fix(why="what a sweeper (hparams_search=...) maximises")]


class Eval(Common):
    ckpt_path: Annotated[str, Fix(give="PATH", why="a checkpoint written by train or convert, or a save_pretrained "
                                                    "folder")]
    view_average: Literal[VIEW_AVERAGES] | None
    overwrite: bool  # the run lifecycle's key: evaluate again over a finished evaluation


class Predict(Common):
    ckpt_path: Checkpoint
    inputs: Annotated[str | Annotated[list[str], Field(min_length=1)],
                      Fix(give="[a.mp4,videos/]", why="video files and/or folders")]
    topk: Annotated[Count, Fix(give="5")]
    out: str
    views: Annotated[Views | None, Fix(give="1x1", why="clips x crops; null: the checkpoint's")]
    device: Annotated[str, check(_device)]
    progress: bool


class Export(Common):
    ckpt_path: Checkpoint
    format: Literal["onnx", "hf"]
    out: Annotated[str | None, Fix(give="PATH", why="null: model.onnx / hf in the run directory")]
    opset: Annotated[int, Field(ge=7)]
    video: str | None
    check: bool
    tolerance: Positive
    repo_id: Annotated[str | None, Fix(give="OWNER/NAME", why="format=hf: upload the folder to the Hugging Face Hub")]


class Visualize(Common):
    ckpt_path: Annotated[str, Fix(give="PATH", why="a TANet checkpoint from train")]
    videos: str | list[str]
    video_root: str | None
    block: str
    i3d_ckpt_path: str | None
    i3d_norm: Literal["l1", "none"]
    size: Count | None
    out_dir: str


class Prepare(Common):
    out: Annotated[str, Fix(give="DIR", why="the folder the prepared copy goes to")]
    gop: Annotated[Count, Fix(why="a keyframe at least every gop frames")]
    short_side: Annotated[Annotated[int, Field(ge=2)] | None, Fix(why="null: the source's size")]
    crf: Annotated[int, Field(ge=0, le=51), Fix(why="x264 quality: lower is better and bigger")]
    workers: Annotated[Count | None, Fix(why="processes; null: one per core")]
    progress: bool
    shards: Annotated[bool, Fix(why="true: the copy as LitData shards (data.root=OUT or its upload reads them)")]
    chunk_bytes: Annotated[str, Fix(give="128MB", why="the size of one shard (LitData recommends 64-256 MB)")]
    upload: Annotated[str | None, Fix(give="s3://BUCKET/PREFIX", why="shards=true: copy the shards to an object store")]


# ------------------------------------------------------------------------------------------------
# argparse applications: the same fields, named by their flags


class ConvertArgs(Closed):
    src: str
    out: str
    source: Literal["auto", "official", "mmaction2", "project"]
    num_frames: Count | None
    classes: str | None
    data: str | None


class EnsembleArgs(Open):
    scores: Annotated[list[str], Field(min_length=1)]
    mode: Literal["prob", "logits"]
    weights: list[NonNegative] | None


class ComplexityArgs(Open):
    backbone: Backbone
    frames: Count
    size: Count | None
    position: Position
    stages: Stages
    classes: Count
    rows: Annotated[list[Literal[tuple(s.paper_row for s in TEMPORAL.values() if s.paper or s.reported)]],
                    Field(min_length=1)]

