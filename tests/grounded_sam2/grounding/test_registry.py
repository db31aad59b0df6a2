"""The grounding backends' registry: specs, options and the manifest form, for every backend."""

import dataclasses

import pytest

from grounded_sam2.errors import SettingsError
from grounded_sam2.grounding import GROUNDERS, grounder_config, grounder_config_from_dict


@pytest.mark.parametrize("name", list(GROUNDERS))
def test_every_backend_has_valid_defaults_and_round_trips_through_its_dict(name):
    config = grounder_config(name)
    assert isinstance(config, GROUNDERS[name].config) and config.backend == name and config.checkpoint
    settings = config.to_dict()
    assert (list(settings)[0] == "backend"
            and set(settings) == {"backend"} | {f.name for f in dataclasses.fields(config)})
    assert grounder_config_from_dict(settings) == config


@pytest.mark.parametrize("name", list(GROUNDERS))
def test_a_spec_names_the_checkpoint(name):
    assert grounder_config(f"{name}:org/model").checkpoint == "org/model"
    assert grounder_config(f"{name}:C:/models/x").checkpoint == "C:/models/x"  # only the first colon splits


@pytest.mark.parametrize("spec, options, message", [
    ("nope", {}, "unknown grounding backend 'nope'"),
    ("florence2", {"box_threshold": 0.3}, "florence2 grounder has no option box_threshold"),
])
def test_bad_specs_and_options(spec, options, message):
    with pytest.raises(SettingsError, match=message):
        grounder_config(spec, **options)
