"""Video data pipeline: PyAV clip decoding, the paper's samplers and augmentations, the dataset formats
(one table of readers), the test-time protocol, the embedded synthetic motion dataset and the
LightningDataModule that ties them together."""

from .datamodule import VideoDataModule
from .datasets import TooManyBadFilesError, VideoClipDataset
from .files import VIDEO_EXTENSIONS, find_videos
from .fingerprint import SplitFingerprint
from .formats import FORMATS, AnnotationError, DatasetNotFoundError, VideoRecord, read_video_list
from .io import VideoDecodeError, probe_num_frames, read_video_frames
from .protocol import TestProtocol
from .sampling import ClipSampler
from .settings import ClipSettings, Views, parse_views
from .synthetic import SyntheticSpec, ensure_synthetic, synthetic_dir
from .transforms import normalize_on_device

__all__ = [
    "FORMATS",
    "VIDEO_EXTENSIONS",
    "AnnotationError",
    "ClipSampler",
    "ClipSettings",
    "DatasetNotFoundError",
    "SplitFingerprint",
    "SyntheticSpec",
    "TestProtocol",
    "TooManyBadFilesError",
    "VideoClipDataset",
    "VideoDataModule",
    "VideoDecodeError",
    "VideoRecord",
    "Views",
    "ensure_synthetic",
    "find_videos",
    "normalize_on_device",
    "parse_views",
    "probe_num_frames",
    "read_video_frames",
    "read_video_list",
    "synthetic_dir",
]
