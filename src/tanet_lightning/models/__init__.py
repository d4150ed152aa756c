"""Models: temporal modules (``temporal``), the block-insertion utility (``insertion``), backbones and
the video classifier (``video``); a project checkpoint -> a ready model (``load``) and whether it fits a
run (``fit``)."""

from .backbones import STAGE_NAMES, create_backbone
from .convert import convert_checkpoint, to_peer_layout
from .fit import check_clip_length, check_fits
from .insertion import POSITIONS, insert_temporal
from .load import Checkpoint, load_model
from .temporal import TAM, TEMPORAL_MODULES, create_temporal
from .video import VideoClassifier, create_video_model, temporal_options
from .weights_file import CheckpointError, load_checkpoint_file

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "POSITIONS",
    "STAGE_NAMES",
    "TAM",
    "TEMPORAL_MODULES",
    "VideoClassifier",
    "check_clip_length",
    "check_fits",
    "convert_checkpoint",
    "create_backbone",
    "create_temporal",
    "create_video_model",
    "insert_temporal",
    "load_checkpoint_file",
    "load_model",
    "temporal_options",
    "to_peer_layout",
]
