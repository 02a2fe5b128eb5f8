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


@pytest.mark.parametrize(
    "argv",
    [["batch", "--input", "x", "--output", "y", "--task", "nope"], ["router", "--bogus"], ["render"]],
)
def test_every_sub_command_shares_the_exit_code_policy(argv, capsys):
    # Sub-command parsers are the root's CliParser too: a usage error anywhere exits 1.
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 1


def test_config_arguments_fall_back_to_the_command_default(tmp_path):
    import argparse

    from cluster.cli import add_config_arguments, config_from_args

    parser = argparse.ArgumentParser()
    add_config_arguments(parser, default_profile="cpu")
    assert config_from_args(parser.parse_args([])).profile == "cpu"
    assert config_from_args(parser.parse_args(["--profile", "demo"])).profile == "demo"


def test_up_on_a_held_port_says_so_in_one_line(capsys, monkeypatch):
    import signal
    import socket

    from cluster import local, local_haproxy

    # Only the port check of `start_ray` (the rest starts Ray, and this process may hold one already).
    monkeypatch.setattr(
        local,
        "start_ray",
        lambda config: local_haproxy.check_port_free(config.serving.host, config.serving.port),
    )
    shut_down = []
    monkeypatch.setattr(local, "shutdown", shut_down.append)
    monkeypatch.setattr(signal, "signal", lambda *args: None)  # keep pytest's own Ctrl-C handler
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        assert main(["up", "--profile", "cpu", "--port", str(port)]) == 1
    err = capsys.readouterr().err
    assert f"serving port 127.0.0.1:{port} is not free" in err and "--port" in err
    assert "Traceback" not in err
    assert len(shut_down) == 1  # and whatever had started is torn down


def test_batch_on_a_local_input_that_is_not_there_exits_1(tmp_path, capsys):
    # A wrong local path must not be an empty, successful night (an S3 prefix with no objects is one).
    missing = tmp_path / "no-such-folder"
    assert (
        main(["batch", "--input", str(missing), "--output", str(tmp_path / "out"), "--task", "summarize"])
        == 1
    )
    assert f"input {missing} does not exist" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_batch_with_storage_unreachable_says_so_in_one_line(tmp_path, capsys, monkeypatch):
    # Credentials set, so the S3 client goes straight to the endpoint instead of asking a metadata service.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    argv = ["batch", "--input", "s3://bucket/docs/", "--output", str(tmp_path / "out"), "--task", "summarize"]
    assert main([*argv, "--s3-endpoint", "http://127.0.0.1:9"]) == 1  # the discard port: nothing listens
    err = capsys.readouterr().err
    assert err.startswith("batch: job stopped: OSError:") and "running it again resumes" in err
    assert "Traceback" not in err


def test_demo_checkpoints_that_cannot_be_written_are_one_line(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert main(["demo-models", "--cache-dir", str(blocker / "cache")]) == 1
    err = capsys.readouterr().err
    assert f"cannot write the demo checkpoints under {blocker / 'cache'}" in err and "Traceback" not in err
