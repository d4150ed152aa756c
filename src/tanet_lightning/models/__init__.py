"""Models: temporal modules (``temporal``), the block-insertion utility (``insertion``), backbones and
the video classifier (``video``)."""

from .backbones import STAGE_NAMES, create_backbone
from .insertion import POSITIONS, insert_temporal
from .temporal import TAM, TEMPORAL_MODULES, create_temporal
from .video import VideoClassifier, create_video_model

__all__ = [
    "POSITIONS",
    "STAGE_NAMES",
    "TAM",
    "TEMPORAL_MODULES",
    "VideoClassifier",
    "create_backbone",
    "create_temporal",
    "create_video_model",
    "insert_temporal",
]
