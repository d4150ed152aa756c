"""ONNX export: the plain-ops aggregation equals the custom op, and onnxruntime reproduces PyTorch on a real clip."""

from __future__ import annotations

import pytest
import torch

from tanet_lightning.convert import main as convert_main
from tanet_lightning.models import create_video_model
from tanet_lightning.models.temporal import plain_aggregation, temporal_aggregate, temporal_aggregate_plain
from tinyconf import tiny_synthetic_dir

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


@pytest.mark.parametrize("k", [1, 3, 5])
def test_plain_aggregation_equals_the_custom_op(k):
    g = torch.Generator().manual_seed(k)
    x = torch.randn(2, 4, 6, 5, 5, generator=g, dtype=torch.float64)
    coeff = torch.randn(2, 4, 6, k, generator=g, dtype=torch.float64)
    torch.testing.assert_close(temporal_aggregate_plain(x, coeff), temporal_aggregate(x, coeff), rtol=0, atol=1e-12)
    model = create_video_model("resnet18", "tam", 5, 4, tam={"kernel_size": k}).double().eval()
    clip = torch.randn(2, 4, 3, 32, 32, generator=g, dtype=torch.float64)
    with torch.no_grad():
        default = model(clip)
        with plain_aggregation():
            plain = model(clip)
    torch.testing.assert_close(plain, default, rtol=0, atol=1e-10)


def test_onnx_export_matches_pytorch_on_a_real_clip(tmp_path, data_dir):
    from tanet_lightning.export import check_onnx, export_onnx
    from tanet_lightning.predict import Predictor

    # a checkpoint made the way a user makes one from a bare state dict: convert --data synthetic
    net = create_video_model("resnet18", "tam", 8, 4)
    torch.save(net.state_dict(), tmp_path / "net.pth")
    convert_main([str(tmp_path / "net.pth"), "--out", str(tmp_path / "m.ckpt"), "--data", "synthetic"])
    predictor = Predictor.from_checkpoint(tmp_path / "m.ckpt")
    assert predictor.data_config["num_frames"] == 4 and predictor.data_config["crop_size"] == 32

    path = export_onnx(predictor, tmp_path / "m.onnx")
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert "Conv" in ops and not any("tanet" in o.lower() for o in ops)
    video = str(tiny_synthetic_dir(data_dir) / "videos" / "test" / "rotate_cw_0000.mp4")
    assert check_onnx(path, predictor, video) <= 1e-4
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 3):  # the batch axis is dynamic
        x = torch.randn(batch, 4, 3, 32, 32)
        got = session.run(None, {"video": x.numpy()})[0]
        with torch.no_grad():
            assert abs(got - predictor.model(x).numpy()).max() <= 1e-4


VIT_KW = {"img_size": 32, "patch_size": 8, "depth": 2}  # conf model/arch vit_tiny, 2 of its 12 blocks


@pytest.mark.parametrize("temporal", ["tam", "st_adapter", "aim"])
def test_vit_tanet_converts_predicts_and_exports(tmp_path, data_dir, temporal):
    """A ViT network (TAM on tokens, ST-Adapter, AIM) as a user gets one out of training: its save_pretrained
    folder -> convert --data synthetic -> a checkpoint predict reads -> ONNX that onnxruntime reproduces."""
    from tanet_lightning.export import check_onnx, export_onnx
    from tanet_lightning.predict import Predictor
    from weights import randomized

    torch.manual_seed(0)
    net = create_video_model("vit_tiny_patch16_224", temporal, 8, 4, backbone_kwargs=VIT_KW)
    randomized(net, scale=0.2)  # the zero-initialised adapters too: an identity would hide them in the graph
    net.save_pretrained(tmp_path / "folder", class_names=[f"class{i}" for i in range(8)],
                        protocol={"crop_size": 32, "num_frames": 4})
    convert_main([str(tmp_path / "folder"), "--out", str(tmp_path / "m.ckpt"), "--data", "synthetic"])
    predictor = Predictor.from_checkpoint(tmp_path / "m.ckpt")
    assert predictor.data_config["crop_size"] == 32 and predictor.data_config["num_frames"] == 4
    state = predictor.model.state_dict()
    assert set(state) == set(net.state_dict()) and all(torch.equal(state[k], v) for k, v in net.state_dict().items())
    video = str(tiny_synthetic_dir(data_dir) / "videos" / "test" / "rotate_cw_0000.mp4")
    top = predictor.predict(video, topk=3)
    with torch.no_grad():  # predict's scores are the network's on the video's test views
        want = net.eval()(predictor.protocol.normalize(predictor.clip_views(video))).mean(0).softmax(-1)
    assert top.indices == want.topk(3).indices.tolist()
    path = export_onnx(predictor, tmp_path / "m.onnx")
    diff = check_onnx(path, predictor, video)
    print(f"{temporal} on ViT: onnxruntime - PyTorch max |logit diff| {diff:.2e}")
    assert diff <= 1e-4


def test_a_folder_saved_without_class_names_converts_with_index_names(tmp_path):
    """save_pretrained without class names wrote ``class_names: null``; convert stopped with a TypeError."""
    net = create_video_model("resnet18", "tam", 3, 4, stages=["res5"])
    net.save_pretrained(tmp_path / "folder")
    convert_main([str(tmp_path / "folder"), "--out", str(tmp_path / "m.ckpt"), "--data", "synthetic"])
    assert torch.load(tmp_path / "m.ckpt", weights_only=True)["class_names"] == ["0", "1", "2"]
