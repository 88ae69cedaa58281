import dataclasses

import pytest
import yaml

from hpstudy.config import DEFAULTS, ConfigError, TrainConfig
from hpstudy.expand import STUDY_ONLY_KEYS


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


def test_every_schema_range_is_what_the_dataclass_enforces(repo):
    """The schema owns the ranges: a value just outside any bound of the schema is refused
    by TrainConfig too (color_jitter, crop_padding and rotation_degrees once disagreed)."""
    schema = yaml.safe_load((repo / "workflow/schemas/train_config.schema.yaml").read_text())
    checked = 0
    for key, spec in schema["properties"].items():
        if key not in DEFAULTS:
            continue
        integer = "integer" in str(spec.get("type"))
        step = 1 if integer else 1e-9
        for name, outside in (
            ("minimum", -step),
            ("maximum", step),
            ("exclusiveMinimum", 0),
            ("exclusiveMaximum", 0),
        ):
            if name not in spec:
                continue
            value = spec[name] + outside
            value = int(value) if integer else float(value)
            base = {"model": "resnet18_imagenet"} if key == "upsample_size" else {}
            with pytest.raises(ConfigError, match=key):
                TrainConfig.from_dict({**base, key: value})
            checked += 1
    assert checked >= 20
    for key, value in (("color_jitter", 1.5), ("crop_padding", 65), ("rotation_degrees", 181)):
        with pytest.raises(ConfigError, match=key):
            TrainConfig.from_dict({key: value})


def test_model_names_have_one_owner(repo):
    from hpstudy.config import MODELS
    from hpstudy.models import MODEL_FACTORIES

    schema = yaml.safe_load((repo / "workflow/schemas/train_config.schema.yaml").read_text())
    assert list(schema["properties"]["model"]["enum"]) == list(MODELS)
    assert set(MODEL_FACTORIES) == set(MODELS)


def test_metric_names_and_directions_have_one_owner(repo):
    from hpstudy import metrics, stats

    schema = yaml.safe_load((repo / "workflow/schemas/study.schema.yaml").read_text())
    assert tuple(schema["properties"]["metric"]["enum"]) == metrics.METRIC_NAMES
    assert stats.LOWER_IS_BETTER is metrics.LOWER_IS_BETTER
    assert metrics.LOWER_IS_BETTER <= {f"test_{m}" for m in metrics.METRIC_NAMES}
    assert metrics.primary_metric("regression") == "test_r2"
    assert metrics.primary_metric("classification", "loss") == "test_loss"
    with pytest.raises(ValueError, match="not a regression metric"):
        metrics.primary_metric("regression", "accuracy")
