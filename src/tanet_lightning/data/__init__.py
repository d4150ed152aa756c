"""Video data pipeline: PyAV clip decoding, the paper's samplers and augmentations, annotation formats,
the embedded synthetic motion dataset and the LightningDataModule that ties them together."""

from .datamodule import VideoDataModule
from .datasets import AnnotationError, DatasetNotFoundError, TooManyBadFilesError, VideoClipDataset, VideoRecord
from .io import VideoDecodeError, probe_num_frames, read_video_frames
from .protocol import TestProtocol
from .sampling import ClipSampler
from .synthetic import SyntheticSpec, ensure_synthetic
from .transforms import normalize_on_device

__all__ = [
    "AnnotationError",
    "ClipSampler",
    "DatasetNotFoundError",
    "SyntheticSpec",
    "TestProtocol",
    "TooManyBadFilesError",
    "VideoClipDataset",
    "VideoDataModule",
    "VideoDecodeError",
    "VideoRecord",
    "ensure_synthetic",
    "normalize_on_device",
    "probe_num_frames",
    "read_video_frames",
]
