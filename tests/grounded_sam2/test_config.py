"""One configuration: flat options routed to the stage configs, validation, and the manifest
form (to_dict / from_dict) that records and rebuilds a pipeline."""

import dataclasses
import json

import pytest

import segmenter
from grounded_sam2.config import DeviceConfig, PipelineConfig
from grounded_sam2.errors import SettingsError
from grounded_sam2.filters import FilterConfig
from grounded_sam2.grounding import Florence2Config
from grounded_sam2.ontology import OntologyError
from grounded_sam2.segmentation import SegmenterConfig, model_source, weights_checksum

ONTOLOGY = {"dog": "dog", "puppy": "dog"}


def test_defaults_are_the_stage_configs_defaults():
    config = PipelineConfig.from_options(ONTOLOGY)
    assert config == PipelineConfig(ONTOLOGY)
    assert (config.grounder, config.filters, config.segmenter, config.placement) == (
        Florence2Config(), FilterConfig(), SegmenterConfig(), DeviceConfig())


def test_flat_options_go_to_the_config_that_has_them():
    config = PipelineConfig.from_options(
        ONTOLOGY, florence="some/florence", strategy="open_vocabulary", num_beams=3, batch_size=2, min_confidence=0.2,
        nms_threshold=None, class_agnostic_nms=True, min_box_area=9.0, sam2="sam2.1_hiera_tiny", tighten_boxes=True,
        device="cpu", bf16=False)
    assert config.grounder == Florence2Config("some/florence", "open_vocabulary", num_beams=3, batch_size=2)
    assert config.filters == FilterConfig(0.2, None, True, 9.0)
    assert config.segmenter == SegmenterConfig("sam2.1_hiera_tiny", tighten_boxes=True)
    assert config.placement == DeviceConfig("cpu", False)
    assert PipelineConfig.from_options(ONTOLOGY, grounder="florence2:other").grounder.checkpoint == "other"


@pytest.mark.parametrize("ontology, options, error, message", [
    ({}, dict(num_beams=0), OntologyError, "empty"),  # the ontology is checked first
    (ONTOLOGY, dict(colour="red"), SettingsError, "florence2 grounder has no option colour; its options: checkpoint"),
    (ONTOLOGY, dict(grounder="yolo"), SettingsError, "unknown grounding backend 'yolo'; known backends: florence2"),
    (ONTOLOGY, dict(num_beams=0), SettingsError, "num_beams must be at least 1"),
    (ONTOLOGY, dict(nms_threshold=1.5), SettingsError, "nms_threshold must be in"),
    (ONTOLOGY, dict(min_box_area=-1), SettingsError, "min_box_area"),
    (ONTOLOGY, dict(strategy=None), SettingsError, "strategy must be one of"),
], ids=["ontology first", "unknown option", "unknown backend", "bad grounder value", "bad nms", "bad area", "None"])
def test_bad_options(ontology, options, error, message):
    with pytest.raises(error, match=message):
        PipelineConfig.from_options(ontology, **options)


def test_to_dict_is_json_and_from_dict_rebuilds_the_same_config(tmp_path):
    checkpoint = tmp_path / "sam2.pt"
    checkpoint.write_bytes(b"")
    config = PipelineConfig.from_options(ONTOLOGY, sam2=str(checkpoint), num_beams=2, nms_threshold=None, device="cpu")
    settings = json.loads(json.dumps(config.to_dict()))
    assert settings == config.to_dict()
    assert PipelineConfig.from_dict(settings) == dataclasses.replace(
        config, segmenter=SegmenterConfig(str(checkpoint.resolve())))
    assert settings["grounder"]["backend"] == "florence2" and settings["filters"]["nms_threshold"] is None


def test_one_file_named_two_ways_records_the_same_settings(tmp_path, monkeypatch):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "sam2.pt").write_bytes(b"")
    (tmp_path / "models" / "florence2").mkdir()
    monkeypatch.chdir(tmp_path)
    relative = PipelineConfig.from_options(ONTOLOGY, sam2="./models/sam2.pt", florence="models/florence2")
    absolute = PipelineConfig.from_options(ONTOLOGY, sam2=str(tmp_path / "models" / "sam2.pt"),
                                           florence=str(tmp_path / "models/../models/florence2"))
    assert relative.to_dict() == absolute.to_dict()
    assert PipelineConfig.from_options(ONTOLOGY, sam2="facebook/sam2.1-hiera-tiny").to_dict()["segmenter"]["sam2"] == \
        "facebook/sam2.1-hiera-tiny"  # hub ids as given


def test_a_model_object_is_recorded_by_variant_and_weights_checksum(small_sam2):
    source = model_source(small_sam2)
    assert source == {"variant": "sam2.1_hiera_tiny", "image_size": 256,
                      "weights_sha256": weights_checksum(small_sam2.state_dict())}
    assert len(json.dumps(source)) < 200, "never the module's repr"
    other = dataclasses.replace(segmenter.resolve_config("sam2.1_hiera_tiny"), image_size=256)
    changed = segmenter.build_model(other).eval()
    changed.load_state_dict(segmenter.random_state_dict(other, seed=4))
    assert model_source(changed)["weights_sha256"] != source["weights_sha256"]
    settings = PipelineConfig.from_options(ONTOLOGY, sam2=small_sam2).to_dict()
    with pytest.raises(SettingsError, match="model object .*cannot be rebuilt"):
        PipelineConfig.from_dict(settings)
