"""The ingress's Serve `user_config`: what it holds, what `reconfigure` accepts, and how it applies."""

import pytest

from cluster.config import parse_config
from cluster.shadow_config import RUNTIME_FIELDS, ShadowConfig, apply_user_config, ingress_user_config
from deployments.router import build_router
from deployments.shadow.setup import LearningLoop

pytestmark = pytest.mark.unit

BASE = ShadowConfig(enabled=True, sample_rate=0.01, output="s3://labels/shadow", store_text=True)


def test_the_user_config_holds_every_run_time_field_and_applies_back_to_the_same_settings():
    user_config = ingress_user_config(BASE)
    assert list(user_config) == ["shadow"] and set(user_config["shadow"]) == set(RUNTIME_FIELDS)
    assert apply_user_config(BASE, user_config) == BASE
    # From the fixed fields alone (what the rendered args carry), it gives the settings back whole.
    fixed_only = ShadowConfig.model_validate(BASE.model_dump(exclude=set(RUNTIME_FIELDS)))
    assert fixed_only.enabled is False and apply_user_config(fixed_only, user_config) == BASE


def test_a_user_config_changes_only_what_it_names_and_nothing_for_none():
    off = apply_user_config(BASE, {"shadow": {"enabled": False}})
    assert off.enabled is False and off.sample_rate == 0.01 and off.store_text is True
    assert apply_user_config(BASE, {"shadow": {"sample_rate": 0.2}}).sample_rate == 0.2
    assert apply_user_config(BASE, None) == BASE == apply_user_config(BASE, {})


@pytest.mark.parametrize(
    ("user_config", "problem"),
    [
        ({"shadwo": {"enabled": False}}, "holds only 'shadow'"),
        ({"shadow": ["enabled"]}, "must be a mapping"),
        ({"shadow": {"output": "s3://elsewhere/"}}, r"cannot change \['output'\] at run time"),
        ({"shadow": {"flush_rows": 10}}, "cannot change"),
        ({"shadow": {"sample_rate": 2.0}}, "sample_rate"),
        ({"shadow": {"sizes": "some"}}, "sizes"),
    ],
)
def test_a_user_config_reconfigure_cannot_apply_is_refused(user_config, problem):
    with pytest.raises(ValueError, match=problem):
        apply_user_config(BASE, user_config)


def learning_loop(shadow: dict) -> LearningLoop:
    config = parse_config(
        {
            "models": [{"size": "0.8b"}, {"size": "2b"}],
            "router": {"enabled": True, "scorer": "features", "shadow": shadow},
        }
    )
    router = build_router(config.router, ["0.8b", "2b"])
    return LearningLoop(config, {"0.8b": None, "2b": None}, None, router)


def test_reconfigure_applies_each_user_config_on_top_of_the_cluster_config(tmp_path):
    loop = learning_loop({"enabled": True, "sample_rate": 0.5, "output": str(tmp_path), "seed": 7})
    loop.reconfigure({"shadow": {"enabled": False}})
    assert loop.shadow.config.enabled is False and loop.shadow.config.sample_rate == 0.5
    # The next user_config is the whole desired state, not a patch on the last one: a replica
    # started after both updates must run what this one runs.
    loop.reconfigure({"shadow": {"sample_rate": 0.1}})
    assert loop.shadow.config.enabled is True and loop.shadow.config.sample_rate == 0.1
    assert loop.shadow.config.seed == 7 and loop.shadow.config.output == str(tmp_path)
    with pytest.raises(ValueError, match="cannot change"):
        loop.reconfigure({"shadow": {"output": str(tmp_path / "other")}})
    assert loop.shadow.config.sample_rate == 0.1  # a refused user_config changes nothing


def test_reconfigure_without_a_label_output_refuses_to_turn_sampling_on():
    loop = learning_loop({})
    assert loop.shadow is None
    loop.reconfigure(ingress_user_config(ShadowConfig()))  # the rendered default: off, accepted
    with pytest.raises(ValueError, match="output is required"):
        loop.reconfigure({"shadow": {"enabled": True}})
