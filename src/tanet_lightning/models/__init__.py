"""Models: temporal modules (``temporal``), the block-insertion utility (``insertion``), backbones and
the video classifier (``video``)."""

from .backbones import STAGE_NAMES, create_backbone
from .checkpoint import CheckpointError, load_checkpoint_file
from .convert import convert_checkpoint, to_peer_layout
from .insertion import POSITIONS, insert_temporal
from .temporal import TAM, TEMPORAL_MODULES, create_temporal
from .video import VideoClassifier, create_video_model

__all__ = [
    "CheckpointError",
    "POSITIONS",
    "STAGE_NAMES",
    "TAM",
    "TEMPORAL_MODULES",
    "VideoClassifier",
    "convert_checkpoint",
    "create_backbone",
    "create_temporal",
    "create_video_model",
    "insert_temporal",
    "load_checkpoint_file",
    "to_peer_layout",
]
