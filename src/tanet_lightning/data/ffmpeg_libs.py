"""FFmpeg shared libraries for torchcodec, from the copy PyAV bundles.

torchcodec (``data.decoder=torchcodec``) loads FFmpeg's shared libraries by their plain names
(``libavcodec.so.62``...); PyAV's wheel bundles FFmpeg under hashed names (``libavcodec-5e6b81c2.so.62...``).
``python -m tanet_lightning.data.ffmpeg_libs`` makes a folder of links with the plain names and prints it,
for ``LD_LIBRARY_PATH`` (read by the dynamic loader when a process starts, so it is set before Python runs):

    export LD_LIBRARY_PATH=$(python -m tanet_lightning.data.ffmpeg_libs)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}

Both decoders then run the same FFmpeg build, so their frames are bit-identical.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import av

_SONAME = re.compile(r"(lib(?:av|sw)\w+)-[0-9a-f]+\.so\.(\d+)")
COMMAND = "python -m tanet_lightning.data.ffmpeg_libs"


def default_folder() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "tanet_lightning" / f"pyav-{av.__version__}-ffmpeg"


def pyav_ffmpeg_dir(folder: str | os.PathLike | None = None) -> Path | None:
    """A folder of links with the plain sonames (libavutil.so.60, ...) to the FFmpeg libraries PyAV bundles
    (and to their own dependencies, under their names); None when PyAV bundles none (a source build)."""
    libs = Path(av.__file__).resolve().parent.parent / "av.libs"
    if not libs.is_dir():
        return None
    folder = Path(folder) if folder is not None else default_folder()
    folder.mkdir(parents=True, exist_ok=True)
    for lib in libs.iterdir():
        m = _SONAME.match(lib.name)
        for name in [lib.name, *([f"{m.group(1)}.so.{m.group(2)}"] if m else [])]:
            link = folder / name
            if link.is_symlink() and Path(os.readlink(link)) != lib:
                link.unlink()  # another PyAV build since
            if not link.exists():
                link.symlink_to(lib)
    return folder


def main(argv: list[str]) -> int:
    folder = pyav_ffmpeg_dir(argv[0] if argv else None)
    if folder is None:
        print(f"PyAV {av.__version__} bundles no FFmpeg libraries here: install FFmpeg's shared libraries "
              "(major version 4-9) instead", file=sys.stderr)
        return 2
    print(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
