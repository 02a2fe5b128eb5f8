import pytest
import yaml

from cluster.config import ClusterConfig, ConfigError, load_config, parse_config

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("profile", ["demo", "cpu", "gpu"])
def test_shipped_profiles_load(profile):
    config = load_config(profile=profile)
    assert config.profile == profile
    assert config.enabled_models()
    sizes = [m.size for m in config.enabled_models()]
    assert sizes == sorted(sizes, key=["0.8b", "2b", "4b", "9b"].index)


def test_demo_profile_is_random_weights_on_transformers():
    config = load_config(profile="demo")
    assert [m.public_name for m in config.enabled_models()] == [
        "qwen3.5-0.8b",
        "qwen3.5-2b",
        "qwen3.5-4b",
        "qwen3.5-9b",
    ]
    assert all(m.random_weights and m.engine.kind == "transformers" for m in config.models)
    assert config.uses_random_weights


def test_gpu_profile_uses_vllm_and_gpus():
    config = load_config(profile="gpu")
    assert all(m.engine.kind == "vllm" and m.deployment.num_gpus > 0 for m in config.models)
    assert not config.uses_random_weights


def _minimal(**overrides):
    data = {"models": [{"size": "0.8b"}]}
    data.update(overrides)
    return data


def test_unknown_key_is_rejected_with_its_path():
    with pytest.raises(ConfigError, match=r"models\.0\.engine\.max_batchsize: Extra inputs"):
        parse_config({"models": [{"size": "0.8b", "engine": {"max_batchsize": 4}}]})


def test_bad_value_names_the_field():
    with pytest.raises(ConfigError, match=r"serving\.port"):
        parse_config(_minimal(serving={"port": 70000}))


def test_unknown_size_lists_valid_ones():
    with pytest.raises(ConfigError, match=r"models\.0\.size"):
        parse_config({"models": [{"size": "7b"}]})


def test_duplicate_sizes_rejected():
    with pytest.raises(ConfigError, match="repeated: 2b"):
        parse_config({"models": [{"size": "2b"}, {"size": "2b"}]})


def test_default_model_must_be_served():
    with pytest.raises(ConfigError, match="default_model 'qwen3.5-9b' is not served"):
        parse_config(_minimal(serving={"default_model": "qwen3.5-9b"}))


def test_autoscaling_bounds_checked():
    with pytest.raises(ConfigError, match="min_replicas must not exceed max_replicas"):
        parse_config(
            {
                "models": [
                    {
                        "size": "0.8b",
                        "deployment": {"autoscaling_config": {"min_replicas": 3, "max_replicas": 2}},
                    }
                ]
            }
        )
    with pytest.raises(ConfigError, match="either num_replicas or autoscaling_config"):
        parse_config(
            {"models": [{"size": "0.8b", "deployment": {"num_replicas": 1, "autoscaling_config": {}}}]}
        )


def test_serve_options_translate_autoscaling_and_resources():
    config = parse_config(
        {
            "models": [
                {
                    "size": "4b",
                    "deployment": {
                        "autoscaling_config": {
                            "min_replicas": 0,
                            "max_replicas": 3,
                            "target_ongoing_requests": 5,
                        },
                        "max_ongoing_requests": 20,
                        "max_queued_requests": 40,
                        "num_gpus": 1,
                        "accelerator_type": "L4",
                    },
                }
            ]
        }
    )
    options = config.models[0].deployment.serve_options()
    assert options["autoscaling_config"]["min_replicas"] == 0
    assert options["autoscaling_config"]["max_replicas"] == 3
    assert "num_replicas" not in options
    assert options["max_ongoing_requests"] == 20 and options["max_queued_requests"] == 40
    assert options["ray_actor_options"] == {"num_cpus": 1.0, "num_gpus": 1.0, "accelerator_type": "L4"}


def test_fixed_replicas_default_to_one():
    options = parse_config(_minimal()).models[0].deployment.serve_options()
    assert options["num_replicas"] == 1


def test_checkpoint_resolution(tmp_path):
    config = parse_config(
        {
            "models": [
                {"size": "2b"},
                {"size": "4b", "variant": "base"},
                {"size": "9b", "random_weights": True},
            ]
        }
    )
    by_size = {m.size: m for m in config.models}
    assert by_size["2b"].resolved_checkpoint(tmp_path) == "Qwen/Qwen3.5-2B"
    assert by_size["4b"].resolved_checkpoint(tmp_path) == "Qwen/Qwen3.5-4B-Base"
    assert by_size["9b"].resolved_checkpoint(tmp_path) == str(tmp_path / "demo-models" / "qwen3.5-9b")


def test_load_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="unknown profile 'huge'"):
        load_config(profile="huge")
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(listy)


def test_config_file_round_trip(tmp_path):
    config = load_config(profile="cpu")
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json")))
    assert load_config(path) == config
    assert isinstance(config, ClusterConfig)


def test_model_lookup_by_name_or_size():
    config = load_config(profile="cpu")
    assert config.model_by_name("qwen3.5-2b").size == "2b"
    assert config.model_by_name("2B").size == "2b"
    assert config.model_by_name("qwen3.5-9b") is None
