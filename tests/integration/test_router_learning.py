"""The router learns from its own traffic, end to end on the demo profile (random weights: the labels
are noise, the sizes never agree, so the retrain learns "every answer is wrong"; what is checked is
the loop, not the quality): traffic -> shadow answers -> label files in S3 (moto) -> `router
retrain` (Ray Data) -> the gate -> the ingress reloads the calibration without a restart.

It deploys a third small app (`/learn`: 0.8b and 2b, the feature scorer) into the session's cluster
rather than a cluster of its own, to stay within the suite's time budget.
"""

from __future__ import annotations

import json
import time

import httpx
import pytest
import yaml

pytestmark = pytest.mark.integration

BUCKET = "router-labels"


@pytest.fixture(scope="module")
def learning_app(served, tmp_path_factory):
    from ray import serve

    from cluster.config import parse_config
    from deployments.app import build_app_from_config

    data = served.config.model_dump(mode="json")
    data["models"] = [m for m in data["models"] if m["size"] in ("0.8b", "2b")]
    for model in data["models"]:
        model["deployment"] = {
            "num_replicas": 1,
            "max_ongoing_requests": 8,
            "max_queued_requests": 8,
            "num_cpus": 0.25,
        }
    data["router"] = {
        "enabled": True,
        "scorer": "features",
        "shadow": {
            "enabled": True,
            "sample_rate": 1.0,
            "output": f"s3://{BUCKET}/shadow/",
            "max_buffer_s": 1.0,
            "check_interval_s": 0.5,
        },
        "reload": {"calibration_uri": f"s3://{BUCKET}/calibration.json", "interval_s": 1.0},
    }
    data["serving"].update(app_name="qwen-learn", route_prefix="/learn", default_model="auto")
    config = parse_config(data)
    config_file = tmp_path_factory.mktemp("learn") / "cluster.yaml"
    config_file.write_text(yaml.safe_dump(data))
    import boto3

    boto3.client("s3", endpoint_url=served.s3_endpoint, region_name="us-east-1").create_bucket(Bucket=BUCKET)
    serve.run(build_app_from_config(config), name="qwen-learn", route_prefix="/learn")
    try:
        yield served.base_url.removesuffix("/v1") + "/learn/v1", config_file
    finally:
        serve.delete("qwen-learn")


def label_keys(endpoint: str) -> list[str]:
    import boto3

    listed = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").list_objects_v2(
        Bucket=BUCKET, Prefix="shadow/"
    )
    return [item["Key"] for item in listed.get("Contents", [])]


def ask(http: httpx.Client, base: str, text: str) -> httpx.Response:
    body = {
        "model": "auto",
        "messages": [{"role": "user", "content": text}],
        "max_tokens": 6,
        "temperature": 0,
    }
    return http.post(f"{base}/chat/completions", json=body)


def test_traffic_labels_retrain_gate_and_hot_reload(served, learning_app):
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    from cluster.cli import main

    base, config_file = learning_app
    with httpx.Client(timeout=120) as http:
        before = ask(http, base, "hi there").json()["routing"]
        responses = [ask(http, base, f"hi number {i}") for i in range(16)]
        assert all(r.status_code == 200 for r in responses)
        # A streamed request is sampled too; its record is written after its last event was sent.
        streamed = http.post(
            f"{base}/chat/completions",
            json={
                "model": "auto",
                "messages": [{"role": "user", "content": "hi, streamed"}],
                "max_tokens": 6,
                "temperature": 0,
                "stream": True,
            },
        )
        assert streamed.status_code == 200 and streamed.text.rstrip().endswith("data: [DONE]")
        streamed_id = json.loads(streamed.text.split("data: ", 2)[1])["id"]
        sampled = sum(r.headers["x-qwen-routed-model"] == "qwen3.5-0.8b" for r in [*responses, streamed])
        sampled += before["model"] == "qwen3.5-0.8b"
        assert sampled >= 8, "easy prompts should go to 0.8b and be shadowed by 2b"

        # Every sampled request gives one record, in files that appear whole.
        s3 = pafs.S3FileSystem(endpoint_override=served.s3_endpoint, region="us-east-1")
        deadline, records = time.monotonic() + 90, []
        while time.monotonic() < deadline:
            keys = label_keys(served.s3_endpoint)
            records = [
                row for key in keys for row in pq.read_table(f"{BUCKET}/{key}", filesystem=s3).to_pylist()
            ]
            if len(records) >= sampled:
                break
            time.sleep(1)
        assert len(records) == sampled and len({r["record_id"] for r in records}) == sampled
        if streamed.headers["x-qwen-routed-model"] == "qwen3.5-0.8b":
            assert any(r["record_id"].startswith(streamed_id + "-") for r in records)
        assert all(r["prompt_text"] is None for r in records)
        assert all(key.split("/")[2].startswith("hour=") for key in keys)

        # The nightly job's command, on this cluster's Ray and the moto endpoint.
        status = main(
            [
                "router",
                "retrain",
                "--labels",
                f"s3://{BUCKET}/shadow/",
                "--config",
                str(config_file),
                "--s3-endpoint",
                served.s3_endpoint,
                "--holdout",
                "0.5",
                # One training row a size is enough to move a curve: how many of the sampled records
                # carry a verdict depends on the random-weight answers, and the test needs two.
                "--min-rows",
                "1",
            ]
        )
        assert status == 0
        body = json.loads(
            pafs.S3FileSystem(endpoint_override=served.s3_endpoint, region="us-east-1")
            .open_input_stream(f"{BUCKET}/calibration.json")
            .read()
        )
        gate = body["report"]["gate"]
        assert gate["heldout_log_loss_candidate"] < gate["heldout_log_loss_current"]

        # The ingress picks the calibration up without a restart: the same request's estimates move.
        deadline, after = time.monotonic() + 60, before
        while time.monotonic() < deadline and after["estimates"] == before["estimates"]:
            time.sleep(1)
            after = ask(http, base, "hi there").json()["routing"]
        assert after["estimates"]["0.8b"] < before["estimates"]["0.8b"]
