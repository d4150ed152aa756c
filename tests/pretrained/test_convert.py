"""convert_checkpoint against the peers' own TANet-R50 (tests/pretrained/peers.py), saved in their containers."""

from __future__ import annotations

import pytest
import torch
from peers import MMRecognizer2D, OfficialTSN, randomize

from tanet_lightning.models import CheckpointError, convert_checkpoint, create_video_model, to_peer_layout
from tanet_lightning.models.convert import convert


def _clip(t: int = 8, n: int = 2, size: int = 32) -> torch.Tensor:
    return torch.randn(n, t, 3, size, size, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


def _assert_same_logits(peer, ours, t=8):
    peer.double().eval()
    ours.double().eval()
    with torch.no_grad():
        x = _clip(t)
        want, got = peer(x), ours(x)
    assert want.abs().max() > 1e-3  # the random weights give non-trivial logits
    rel = ((got - want).abs().max() / want.abs().max()).item()
    assert rel <= 1e-6, rel


@pytest.mark.parametrize("peer_cls, source", [(OfficialTSN, "official"), (MMRecognizer2D, "mmaction2")])
def test_peer_checkpoint_gives_the_peer_model(tmp_path, peer_cls, source):
    peer = randomize(peer_cls(num_classes=10, t=8))
    path = tmp_path / "peer.pth"
    torch.save(peer.checkpoint(), path)

    converted = convert(path)  # source auto-detected
    assert converted.source == source
    assert converted.model_kwargs["backbone"] == "resnet50" and converted.model_kwargs["num_frames"] == 8
    ours = create_video_model("resnet50", "tam", num_classes=10, num_frames=8)
    ours.load_state_dict(convert_checkpoint(path), strict=True)
    assert len(converted.state_dict) == 544  # every key of TANet-R50 (counted in the official file)
    _assert_same_logits(peer, ours)


def test_mmaction2_k5_keeps_its_three_tap_local_conv(tmp_path):
    peer = randomize(MMRecognizer2D(num_classes=6, t=8, k=5, local_k=3))
    torch.save(peer.checkpoint(), tmp_path / "k5.pth")
    converted = convert(tmp_path / "k5.pth")
    mk = converted.model_kwargs  # the model.* keys: model.temporal and the paper's model.tam sweep keys
    assert mk["temporal"] == {"name": "tam", "local_kernel_size": 3}
    assert mk["tam"] == {"alpha": 2, "beta": 4, "kernel_size": 5}
    ours = create_video_model("resnet50", mk["temporal"], 6, 8, tam=mk["tam"])
    ours.load_state_dict(converted.state_dict, strict=True)
    _assert_same_logits(peer, ours)


@pytest.mark.parametrize("source", ["official", "mmaction2"])
def test_round_trip_is_bit_exact(source):
    model = randomize(create_video_model("resnet50", "tam", num_classes=7, num_frames=8))
    state = model.state_dict()
    peer_state = to_peer_layout(state, source)
    assert not set(peer_state) & {k for k in state if ".temporal." in k}  # really in the peer's names
    back = convert_checkpoint({"state_dict": peer_state}, source="auto")
    assert list(back) == list(state) or set(back) == set(state)
    assert all(torch.equal(back[k], v) for k, v in state.items())


def test_older_official_names_and_16_frames(tmp_path):
    """self_conv.conv_f/conv_g (older files) map to G/L; T is read off the weights and checked."""
    peer = randomize(OfficialTSN(num_classes=5, t=16))
    ckpt = peer.checkpoint()
    ckpt["state_dict"] = {k.replace(".tam.G.", ".self_conv.conv_f.").replace(".tam.L.", ".self_conv.conv_g."): v
                          for k, v in ckpt["state_dict"].items()}
    torch.save(ckpt, tmp_path / "old16.pth")
    assert convert(tmp_path / "old16.pth").model_kwargs["num_frames"] == 16
    with pytest.raises(CheckpointError, match="--num-frames 16"):
        convert(tmp_path / "old16.pth", num_frames=8)
    with pytest.raises(CheckpointError, match="174"):
        convert(tmp_path / "old16.pth", num_classes=400)


def test_unplaced_and_missing_keys_are_listed(tmp_path):
    state = to_peer_layout(create_video_model("resnet50", "tam", 4, 8).state_dict(), "mmaction2")
    state["backbone.layer1.0.extra.weight"] = torch.zeros(1)
    del state["backbone.layer2.1.tam.L.3.weight"]
    with pytest.raises(CheckpointError) as e:
        convert_checkpoint({"state_dict": state})
    msg = str(e.value)
    assert "backbone.layer1.0.extra.weight" in msg and "backbone.layer2.1.temporal.L.net.3.weight" in msg


def test_a_file_that_needs_unpickling_is_refused(tmp_path):
    torch.save({"state_dict": {}, "cfg": torch.nn.Identity()}, tmp_path / "pickled.pth")
    with pytest.raises(CheckpointError, match="arbitrary unpickling"):
        convert_checkpoint(tmp_path / "pickled.pth")


def test_a_legacy_torch_save_file_loads(tmp_path):
    """torch < 1.6 wrote bare pickles (the official TAM release): read, not mistaken for a text file."""
    from tanet_lightning.models import load_checkpoint_file

    torch.save({"state_dict": {"w": torch.ones(2)}}, tmp_path / "old.pth.tar", _use_new_zipfile_serialization=False)
    assert torch.equal(load_checkpoint_file(tmp_path / "old.pth.tar")["state_dict"]["w"], torch.ones(2))


def test_a_pretrained_path_that_is_no_weights_file_names_the_key(tmp_path):
    from tanet_lightning.models import create_backbone

    (tmp_path / "w.pth").write_text("<html>rate limited</html>")
    with pytest.raises(CheckpointError, match=r"model.pretrained_path=.*w.pth is not a PyTorch checkpoint"):
        create_backbone("resnet18", pretrained_path=str(tmp_path / "w.pth"))
