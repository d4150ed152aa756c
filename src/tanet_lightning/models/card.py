"""The model card (``README.md``) of a save_pretrained folder, written from its ``config.json``.

Every field the project knows is named with its value: dataset and split fingerprint, test protocol
and views, top-1/top-5, GFLOPs, parameters, T, alpha, beta, K, position, stages, the training command and
the project version. A field it does not know says "not recorded"; a field that does not apply (alpha
of a TSM) is left out. Nothing is left for a person to fill in.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

NOT_RECORDED = "not recorded"
TITLES = {"tam": "TANet", "tanet_r": "TANet-R", "c2d": "C2D", "tsm": "TSM", "i3d": "I3D 3x1x1", "nl": "NL C2D",
          "teinet": "TEINet"}
CITATION = """@inproceedings{liu2021tam,
  title={TAM: Temporal Adaptive Module for Video Recognition},
  author={Liu, Zhaoyang and Wang, Limin and Wu, Wayne and Qian, Chen and Lu, Tong},
  booktitle={Proceedings of the IEEE/CVF International Conference on Computer Vision (ICCV)},
  pages={13708--13718},
  year={2021}
}"""


def _percent(value) -> str:
    return f"{float(value):.2f} %"


def _views(n: int) -> str:
    return f"{n} view" if n == 1 else f"{n} views"


def _short(value, width: int = 16) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text if len(text) <= width or " " in text else text[:width] + "…"


def fingerprint_text(fingerprint) -> str:
    """One line per split of a ``{split: {field: value}}`` fingerprint (hashes shortened)."""
    if not fingerprint:
        return NOT_RECORDED
    if not isinstance(fingerprint, Mapping):
        return _short(fingerprint, 64)
    parts = []
    for split, fields in fingerprint.items():
        if isinstance(fields, Mapping):
            parts.append(f"{split}: " + ", ".join(f"{k} {_short(v)}" for k, v in fields.items()))
        else:
            parts.append(f"{split}: {_short(fields, 64)}")
    return "; ".join(parts)


def card_sections(config: Mapping) -> list[tuple[str, list[tuple[str, str]]]]:
    """(section, [(field, value), ...]) of the card, in order."""
    arch, model = config.get("architecture") or {}, config.get("model") or {}
    options = arch.get("options") or {}
    size = config.get("complexity") or {}
    protocol = config.get("test_protocol") or {}
    results = config.get("results") or {}
    training = config.get("training") or {}

    net = [("backbone", str(arch.get("backbone", model.get("backbone", NOT_RECORDED)))),
           ("temporal module", str(arch.get("temporal", NOT_RECORDED))),
           ("T (frames per clip)", str(model.get("num_frames", NOT_RECORDED)))]
    for key, field in (("alpha", "alpha"), ("beta", "beta"), ("kernel_size", "K (temporal kernel size)")):
        if key in options:
            net.append((field, str(options[key])))
    if "position" in arch:
        net.append(("position", str(arch["position"])))
    if "stages" in arch:
        net.append(("stages", ", ".join(arch["stages"])))
    if isinstance(arch.get("blocks"), Mapping):  # non-local blocks: stage -> indices
        net.append(("blocks", ", ".join(f"{k} {v}" for k, v in arch["blocks"].items())))
    elif "blocks" in arch:  # ViT block indices (null: every block)
        blocks = arch["blocks"]
        net.append(("blocks", "every block" if blocks is None else ", ".join(str(b) for b in blocks)))
    others = {k: v for k, v in options.items() if k not in ("alpha", "beta", "kernel_size") and v is not None}
    if others:
        net.append(("other module options", ", ".join(f"{k}={v}" for k, v in others.items())))
    net.append(("classes", str(model.get("num_classes", NOT_RECORDED))))
    if size:
        net.append(("parameters", f"{size['params']:,} ({size['params'] / 1e6:.2f} M)"))
        if size.get("params_trained") is not None and size["params_trained"] != size["params"]:  # freeze_backbone
            trained = size["params_trained"]
            net.append(("trained parameters", f"{trained:,} ({trained / 1e6:.2f} M, {trained / size['params']:.1%}; "
                                              "the image backbone frozen)"))
        shape = "x".join(str(v) for v in size.get("clip", []))
        net.append(("GFLOPs", f"{size['gflops_per_view']:.2f} per view ({shape} clip, one multiply-add = one FLOP); "
                              f"{size['gflops_per_video']:.2f} per video ({_views(size.get('views', 1))})"))
    else:
        net += [("parameters", NOT_RECORDED), ("GFLOPs", NOT_RECORDED)]

    data = [("dataset", str(config.get("dataset") or protocol.get("dataset") or NOT_RECORDED)),
            ("split fingerprint", fingerprint_text(config.get("data_fingerprint")))]

    if protocol:
        mean = ", ".join(f"{v:.4g}" for v in protocol.get("mean", []))
        std = ", ".join(f"{v:.4g}" for v in protocol.get("std", []))
        sampler = protocol.get("sampler", NOT_RECORDED)
        if sampler == "dense":
            sampler = f"dense ({protocol.get('dense_window')}-frame window)"
        elif sampler == "uniform":
            sampler = "uniform (TSN segments)"
        test = [("test protocol", f"{sampler} sampling of {protocol.get('num_frames')} frames, short side "
                                  f"{protocol.get('short_side') or 'native'}, crop {protocol.get('crop_size')}, "
                                  f"normalisation mean ({mean}) std ({std}) on 0-1 RGB"),
                ("views", f"{protocol.get('test_views')} (clips x crops), scores averaged as "
                          f"{config.get('view_average', 'logits')}")]
    else:
        test = [("test protocol", NOT_RECORDED), ("views", NOT_RECORDED)]

    res = []
    for key, field in (("top1", "top-1"), ("top5", "top-5"), ("mean_class_acc", "mean class accuracy")):
        if key in results or key != "mean_class_acc":
            res.append((field, _percent(results[key]) if key in results else NOT_RECORDED))
    if results:
        measured = [f"{results['split']} split" if results.get("split") else "",
                    f"{results['num_videos']:,} videos" if results.get("num_videos") else "",
                    f"views {results['views']}" if results.get("views") else "",
                    f"checkpoint {results['checkpoint']}" if results.get("checkpoint") else ""]
        res.append(("source", ", ".join(p for p in [results.get("source", "measured"), *measured] if p)))

    command = training.get("command")
    converted = training.get("converted_from")
    if command:
        how = f"`{command}`"
    elif converted:
        how = (f"not run here: converted from {converted.get('file')} ({converted.get('source')} layout) with "
               "`python -m tanet_lightning.convert`")
    else:
        how = NOT_RECORDED
    train = [("training command", how), ("project version", f"tanet-lightning {config.get('project_version')}")]
    return [("Model", net), ("Data", data), ("Test protocol", test), ("Results", res), ("Training", train)]


def card_fields(config: Mapping) -> dict[str, str]:
    """Every field of the card and its value."""
    return {field: value for _, rows in card_sections(config) for field, value in rows}


def render_card(config: Mapping) -> str:
    arch, model = config.get("architecture") or {}, config.get("model") or {}
    temporal = arch.get("temporal", "")
    name = TITLES.get(temporal, temporal)
    dataset = config.get("dataset") or (config.get("test_protocol") or {}).get("dataset")
    title = f"{name} ({arch.get('backbone', model.get('backbone', ''))}, {model.get('num_frames')} frames" + \
            (f", {dataset})" if dataset else ")")
    tags = ["video-classification", "tanet-lightning", arch.get("backbone"), temporal]
    lines = ["---", "library_name: tanet-lightning", "pipeline_tag: video-classification", "tags:",
             *(f"- {t}" for t in dict.fromkeys(t for t in tags if t)), "---", "", f"# {title}", "",
             f"A video classifier built and saved with tanet-lightning {config.get('project_version')}: a 2-D "
             "backbone applied per frame with a temporal module inserted into its blocks, a linear classifier, "
             "and the mean of the frame scores. Input: normalised clips (batch, T, 3, crop, crop); output: "
             f"logits over {model.get('num_classes')} classes (their names are in config.json).", ""]
    for section, rows in card_sections(config):
        lines += [f"## {section}", "", "| field | value |", "|---|---|",
                  *(f"| {field} | {value.replace('|', '/')} |" for field, value in rows), ""]
    if not config.get("test_protocol"):
        lines += ["This folder carries no test protocol: predict and eval need one (export it from a checkpoint "
                  "that has one, e.g. one written by train or convert).", ""]
    lines += ["## Use", "", "```python", "from tanet_lightning.predict import Predictor", "",
              'predictor = Predictor.from_pretrained("THIS_FOLDER_OR_REPO_ID")  # reads videos with the protocol above',
              'print(predictor.predict("video.mp4", topk=5))', "```", "",
              "or `python -m tanet_lightning.predict ckpt_path=THIS_FOLDER inputs=[video.mp4]`; "
              "`python -m tanet_lightning.eval ckpt_path=THIS_FOLDER data=...` tests it.", ""]
    if temporal.startswith(("tam", "tanet")):
        lines += ["## Citation", "", "```bibtex", CITATION, "```", ""]
    return "\n".join(lines)
