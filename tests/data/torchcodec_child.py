"""Run by tests/data/test_data_torchcodec.py in a process started with LD_LIBRARY_PATH pointing at FFmpeg (the
dynamic loader reads it at start, so the pytest process itself cannot load torchcodec's FFmpeg later).

``python torchcodec_child.py SPEC.json OUT.json``: SPEC {"videos": {name: path}, "bad": {name: path},
"device": "cpu"}. For each video, with and without its index entry, every sampler's train/val/test indices
are read with data.decoder=pyav and =torchcodec; OUT gets per video the frame counts each sampler saw, the
largest pixel difference at native size, and the mean/max difference of a resized (short side 32) read.
For each bad file, the error type and message torchcodec's reader raised.
"""

from __future__ import annotations

import json
import sys
import warnings

import numpy as np

from tanet_lightning.data.decoders import FrameReader
from tanet_lightning.data.io import EncodedVideo
from tanet_lightning.data.sampling import ClipSampler
from tanet_lightning.data.transcode import index_file


def compare(path: str, device: str) -> dict:
    pyav, tc = FrameReader("pyav"), FrameReader("torchcodec", device)
    out = {"seen": [], "max_diff": 0, "mean_diff": 0.0, "resized_mean": 0.0, "resized_max": 0, "device": None,
           "bytes_max_diff": 0}
    for entry in (None, index_file(path)):
        for kind in ("dense", "uniform"):
            sampler = ClipSampler(kind, 4, window=8)
            for fn in (lambda n: sampler.train(n, np.random.default_rng(5)), sampler.val,  # noqa: B023
                       lambda n: sampler.test(n, 3).reshape(-1)):  # noqa: B023
                seen: list[int] = []
                a = pyav.read(path, lambda n: seen.append(n) or fn(n), index_entry=entry)  # noqa: B023
                b = tc.read(path, lambda n: seen.append(n) or fn(n), index_entry=entry)  # noqa: B023
                out["device"] = str(b.device)
                out["seen"].append(seen)
                a, b = a.numpy().astype(np.int16), b.cpu().numpy().astype(np.int16)
                same = a.shape == b.shape
                out["max_diff"] = max(out["max_diff"], int(np.abs(a - b).max()) if same else 999)
                out["mean_diff"] = max(out["mean_diff"], float(np.abs(a - b).mean()) if same else 999.0)
        # a streamed shard's sample (data/shards.py): the file's bytes in memory, read as the file is
        data = EncodedVideo(open(path, "rb").read(), "sample")
        a = pyav.read(path, [1, 0, 2], index_entry=entry).numpy().astype(np.int16)
        b = tc.read(data, [1, 0, 2], index_entry=entry).cpu().numpy().astype(np.int16)
        out["bytes_max_diff"] = max(out["bytes_max_diff"], int(np.abs(a - b).max()) if a.shape == b.shape else 999)
        a = pyav.read(path, [3, 0, 3], 32, index_entry=entry).numpy().astype(np.int16)
        b = tc.read(path, [3, 0, 3], 32, index_entry=entry).cpu().numpy().astype(np.int16)
        if a.shape != b.shape:
            out["resized_max"] = 999
            continue
        out["resized_mean"] = max(out["resized_mean"], float(np.abs(a - b).mean()))
        out["resized_max"] = max(out["resized_max"], int(np.abs(a - b).max()))
    return out


def main(spec_path: str, out_path: str) -> None:
    spec = json.loads(open(spec_path).read())
    device = spec.get("device", "cpu")
    result: dict = {"videos": {}, "bad": {}, "warnings": []}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for name, path in spec["videos"].items():
            result["videos"][name] = compare(path, device)
    result["warnings"] = [str(w.message) for w in caught if "NVDEC" in str(w.message)]
    for name, path in spec.get("bad", {}).items():
        try:
            FrameReader("torchcodec", device).read(path, [0])
            result["bad"][name] = None
        except Exception as e:  # the type is what the test checks
            result["bad"][name] = [type(e).__name__, str(e)]
    with open(out_path, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main(*sys.argv[1:3])
