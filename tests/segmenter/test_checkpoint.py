"""Loading Meta-format checkpoints: every variant strictly and auto-detected, and every way a
checkpoint can be wrong gives a clear CheckpointError/ConfigError."""

import os
from pathlib import Path

import pytest
import torch

import segmenter
from segmenter import CheckpointError, ConfigError
from segmenter.checkpoint import detect_variant, read_checkpoint, resolve_checkpoint

ALL_VARIANTS = list(segmenter.variants())


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    return segmenter.save_random_checkpoint(
        tmp_path_factory.mktemp("ckpt") / "sam2.1_hiera_tiny.pt", "sam2.1_hiera_tiny"
    )


@pytest.mark.parametrize("variant", ALL_VARIANTS)
def test_every_variant_loads_strictly_with_auto_detection(variant, tmp_path):
    path = segmenter.save_random_checkpoint(tmp_path / "ckpt.pt", variant, seed=3)
    try:
        model = segmenter.build_sam2(None, path, device="cpu")
        config = segmenter.resolve_config(variant)
        assert model.image_encoder.trunk.patch_embed.proj.weight.shape[0] == config.trunk.embed_dim
        assert len(model.image_encoder.trunk.blocks) == config.num_trunk_blocks
        assert hasattr(model, "no_obj_embed_spatial") == (config.version == "2.1")
        assert not model.training
        # the weights are the checkpoint's, not a fresh initialisation
        stored = torch.load(path, weights_only=True)["model"]
        assert torch.equal(model.sam_mask_decoder.iou_token.weight, stored["sam_mask_decoder.iou_token.weight"])
        # Meta's config name for the variant names the detected one (so build_sam2 accepts the pair)
        assert detect_variant(stored) == segmenter.resolve_config(config.aliases[0] + ".yaml") == config
    finally:
        path.unlink()


@pytest.mark.parametrize(
    "config_name, ckpt_variant",
    [("sam2_hiera_t.yaml", "sam2.1_hiera_tiny"), ("sam2.1_hiera_l.yaml", "sam2.1_hiera_tiny")],
    ids=["sam2 config, sam2.1 checkpoint", "large config, tiny checkpoint"],
)
def test_checkpoint_of_another_variant_is_refused(config_name, ckpt_variant, tmp_path):
    path = segmenter.save_random_checkpoint(tmp_path / "ckpt.pt", ckpt_variant)
    with pytest.raises(ConfigError, match=f"holds {ckpt_variant}"):
        segmenter.build_sam2(config_name, path, device="cpu")


def _edited_checkpoint(tmp_path, edit) -> Path:
    state = segmenter.random_state_dict("sam2.1_hiera_tiny")
    edit(state)
    path = tmp_path / "edited.pt"
    torch.save({"model": state}, path)
    return path


class _RunsCode:
    """Unpickling this runs os.system: a checkpoint must never do that."""

    def __reduce__(self):
        return (os.system, ("touch pwned",))


def _file(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _write_malicious(path: Path) -> None:
    torch.save({"model": {"x": torch.zeros(1)}, "payload": _RunsCode()}, path)


BAD_CHECKPOINTS = {
    "missing keys are listed": (
        lambda p: _edited_checkpoint(p, lambda s: s.pop("sam_mask_decoder.iou_token.weight")),
        CheckpointError, "missing keys: sam_mask_decoder.iou_token.weight",
    ),
    "extra keys are listed": (
        lambda p: _edited_checkpoint(p, lambda s: s.__setitem__("head.extra", torch.zeros(2))),
        CheckpointError, "unexpected keys: head.extra",
    ),
    "wrong shapes are listed": (
        lambda p: _edited_checkpoint(p, lambda s: s.__setitem__("no_mem_embed", torch.zeros(1, 1, 3))),
        CheckpointError, r"wrong shapes: no_mem_embed \(1, 1, 3\) \(expected \(1, 1, 256\)\)",
    ),
    "not a SAM 2 state dict": (
        lambda p: (torch.save({"model": {"a": torch.zeros(1)}}, p / "x.pt"), p / "x.pt")[1],
        CheckpointError, "not a SAM 2 checkpoint",
    ),
    "no 'model' entry": (
        lambda p: (torch.save({"state_dict": {}}, p / "x.pt"), p / "x.pt")[1],
        CheckpointError, "expected a dict with a 'model' state dict",
    ),
    "zero-byte file": (lambda p: _file(p / "x.pt", b""), CheckpointError, "not a readable"),
    "text file": (lambda p: _file(p / "x.pt", b"hello"), CheckpointError, "not a readable"),
    "pickle that runs code": (
        lambda p: (_write_malicious(p / "x.pt"), p / "x.pt")[1], CheckpointError, "never done",
    ),
    "missing file": (lambda p: p / "nope.pt", CheckpointError, "not found"),
    "directory": (lambda p: p, CheckpointError, "is a directory"),
}


@pytest.mark.parametrize("case", list(BAD_CHECKPOINTS), ids=str)
def test_bad_checkpoints_give_clear_errors(case, tmp_path, monkeypatch):
    make, error, message = BAD_CHECKPOINTS[case]
    monkeypatch.chdir(tmp_path)
    path = make(tmp_path)
    with pytest.raises(error, match=message):
        segmenter.build_sam2(None, path, device="cpu")
    assert not (tmp_path / "pwned").exists()


def test_truncated_checkpoint(tiny_checkpoint, tmp_path):
    data = tiny_checkpoint.read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        read_checkpoint(truncated)


def test_offline_hub_id_says_how_to_download():
    with pytest.raises(CheckpointError) as info:
        segmenter.build_sam2(None, "facebook/sam2.1-hiera-large", device="cpu")
    message = str(info.value)
    assert "facebook/sam2.1-hiera-large" in message
    assert "download_ckpts.sh" in message
    assert "https://dl.fbaipublicfiles.com/segment_anything_2/092824/sam2.1_hiera_large.pt" in message


def test_hub_id_is_read_from_the_huggingface_cache(tiny_checkpoint, monkeypatch, tmp_path):
    """A checkpoint already in the hub cache loads offline through the hub id."""
    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    repo = cache / "models--facebook--sam2.1-hiera-tiny"
    revision = "0" * 40
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    (snapshot / "sam2.1_hiera_tiny.pt").write_bytes(tiny_checkpoint.read_bytes())

    assert resolve_checkpoint("facebook/sam2.1-hiera-tiny").read_bytes() == tiny_checkpoint.read_bytes()
    model = segmenter.build_sam2_hf("facebook/sam2.1-hiera-tiny", device="cpu")
    expected = read_checkpoint(tiny_checkpoint)["no_mem_embed"]
    assert torch.equal(model.no_mem_embed, expected)


def test_random_state_dict_is_deterministic_and_not_degenerate():
    a = segmenter.random_state_dict("sam2_hiera_tiny", seed=5)
    b = segmenter.random_state_dict("sam2_hiera_tiny", seed=5)
    c = segmenter.random_state_dict("sam2_hiera_tiny", seed=6)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["image_encoder.trunk.pos_embed"], c["image_encoder.trunk.pos_embed"])
    assert a["image_encoder.trunk.pos_embed"].abs().mean() > 0.01  # exercises the bicubic resize
    gains = a["image_encoder.trunk.blocks.0.norm1.weight"]
    assert 0.5 < float(gains.mean()) < 1.5 and float(gains.std()) > 0.01


def test_a_checkpoint_may_name_its_input_size(tmp_path):
    """Meta's files hold only "model"; a tiny smoke-test file may also name its input size, which
    the model is built at (the weights fit every size); a bad size is refused."""
    path = segmenter.save_random_checkpoint(tmp_path / "small.pt", "sam2.1_hiera_tiny", image_size=256)
    model = segmenter.build_sam2(None, path)
    assert model.image_size == 256 and segmenter.build_sam2("sam2.1_hiera_t.yaml", path).image_size == 256
    assert segmenter.build_sam2(None, segmenter.save_random_checkpoint(tmp_path / "meta.pt", "sam2.1_hiera_tiny")
                                ).image_size == 1024
    torch.save({**torch.load(path, weights_only=True), "image_size": 100}, tmp_path / "bad.pt")
    with pytest.raises(segmenter.CheckpointError, match="image_size must be a positive multiple of 16, got 100"):
        segmenter.build_sam2(None, tmp_path / "bad.pt")
