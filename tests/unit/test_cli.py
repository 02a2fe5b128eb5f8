import pytest

from cluster.cli import build_parser, main

pytestmark = pytest.mark.unit


def test_every_command_is_registered():
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    assert {"up", "status", "demo-models", "router", "batch", "render"} <= set(commands)


def test_usage_errors_exit_1_not_2(capsys):
    # 2 is reserved for "a batch job wrote error rows", so schedulers can tell them apart.
    with pytest.raises(SystemExit) as info:
        main(["up", "--no-such-flag"])
    assert info.value.code == 1
    assert "unrecognized arguments" in capsys.readouterr().err


def test_invalid_config_exits_1_naming_the_field(tmp_path, capsys):
    bad = tmp_path / "cluster.yaml"
    bad.write_text("models:\n  - size: 0.8b\n    engine: {kind: tpu}\n")
    assert main(["demo-models", "--config", str(bad)]) == 1
    assert "models.0.engine.kind" in capsys.readouterr().err


def test_demo_models_command_writes_checkpoints(tmp_path, capsys):
    assert main(["demo-models", "--cache-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "RANDOM WEIGHTS" in out
    assert (tmp_path / "demo-models" / "qwen3.5-9b" / "config.json").is_file()
