import dataclasses

import pytest
import yaml

from hpstudy.config import DEFAULTS, ConfigError, TrainConfig
from hpstudy.study import STUDY_ONLY_KEYS


def test_defaults_are_valid_and_hash_is_stable():
    cfg = TrainConfig()
    assert cfg.hash() == TrainConfig.from_dict(cfg.to_dict()).hash()
    assert cfg.hash() != dataclasses.replace(cfg, lr=1e-3).hash()
    assert len(cfg.hash()) == 10


def test_unknown_key_is_rejected_with_allowed_keys():
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['learning_rate'\].*allowed keys"):
        TrainConfig.from_dict({"learning_rate": 0.1}, where="study.yaml: base")


@pytest.mark.parametrize(
    "key, value",
    [
        ("batch_size", 0),
        ("lr", -1.0),
        ("optimizer", "lamb"),
        ("scheduler", "cyclic"),
        ("momentum", 1.5),
        ("grad_accum_steps", 0),
        ("augment", ["blur"]),
        ("batch_size", True),
        ("patience", 0),
    ],
)
def test_out_of_range_values_name_key_value_and_allowed(key, value):
    with pytest.raises(ConfigError) as err:
        TrainConfig.from_dict({key: value})
    assert key in str(err.value) and "expected" in str(err.value)


def test_schema_lists_exactly_the_config_fields(repo):
    schema = yaml.safe_load((repo / "workflow/schemas/train_config.schema.yaml").read_text())
    # the schema also has study-only keys that resolve into config fields
    assert set(schema["properties"]) == set(DEFAULTS) | set(STUDY_ONLY_KEYS)
    assert schema["additionalProperties"] is False
    # every enum in the schema is what the dataclass accepts
    for key in ("model", "optimizer", "scheduler", "data_path", "amp_dtype", "mix"):
        for value in schema["properties"][key]["enum"]:
            TrainConfig.from_dict(
                {key: value, **({"model": "resnet_shallow"} if key != "model" else {})}
            )
