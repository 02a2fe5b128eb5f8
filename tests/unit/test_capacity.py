"""`CapacityTracker`: per-size limits from ready replicas, admission slots, polling."""

import asyncio

import pytest

from cluster.config import parse_config
from deployments.engines.base import EngineOverloadedError
from deployments.openai.capacity import CapacityTracker, running_replicas

pytestmark = pytest.mark.unit


def make_config(ingress_replicas=1, colocate=False, **deployments):
    models = []
    for size, deployment in deployments.items():
        models.append({"size": size.replace("_", "."), "random_weights": True, "deployment": deployment})
    ingress = {"num_replicas": ingress_replicas, "colocate_single_size": colocate}
    return parse_config({"models": models, "serving": {"ingress": ingress}})


def test_limit_is_this_ingress_share_of_ready_replicas():
    config = make_config(
        ingress_replicas=2,
        **{"0_8b": {"num_replicas": 3, "max_ongoing_requests": 8, "max_queued_requests": 10}},
    )
    capacity = CapacityTracker(config)
    assert capacity.limit("0.8b") == 4  # unknown replica counts: one ready replica assumed
    capacity.ready = {"0.8b": 3}
    assert capacity.limit("0.8b") == 12  # 3 x 8 / 2 ingress replicas
    capacity.ready = {"0.8b": 0}
    assert capacity.limit("0.8b") == 5  # none ready: the handle queue's share, so a cold start queues


def test_colocated_replica_admits_for_its_own_engine():
    # One size served inside the ingress replicas: each replica has one engine of its own, so its
    # limit is that engine's max_ongoing_requests, whatever ingress.num_replicas says.
    config = make_config(
        ingress_replicas=2,
        colocate=True,
        **{"0_8b": {"num_replicas": 3, "max_ongoing_requests": 8, "max_queued_requests": 10}},
    )
    capacity = CapacityTracker(config)
    assert capacity.limit("0.8b") == 8
    assert capacity.queue_limit("0.8b") == 10


def test_unlimited_queue_and_minimum_of_one():
    config = make_config(
        ingress_replicas=4,
        **{
            "0_8b": {"num_replicas": 1, "max_ongoing_requests": 1, "max_queued_requests": -1},
            "2b": {"num_replicas": 1, "max_ongoing_requests": 1, "max_queued_requests": 1},
        },
    )
    capacity = CapacityTracker(config)
    assert capacity.limit("0.8b") == 1.0  # 1/4 rounds up to one request
    capacity.ready = {"0.8b": 0, "2b": 0}
    assert capacity.limit("0.8b") == float("inf")
    assert capacity.limit("2b") == 1.0


def test_admit_counts_slots_and_refuses_past_the_limit():
    config = make_config(**{"0_8b": {"num_replicas": 1, "max_ongoing_requests": 2}})
    capacity = CapacityTracker(config)
    first, second = capacity.admit("0.8b"), capacity.admit("0.8b")
    assert capacity.snapshot()["0.8b"].queue_full
    with pytest.raises(EngineOverloadedError):
        capacity.admit("0.8b")
    first.release()
    first.release()  # a second release must not free someone else's slot
    assert capacity.in_flight["0.8b"] == 1
    with capacity.admit("0.8b"):
        assert capacity.in_flight["0.8b"] == 2
    second.release()
    assert capacity.in_flight["0.8b"] == 0
    assert capacity.peak_in_flight["0.8b"] == 2
    assert not capacity.snapshot()["0.8b"].queue_full


def test_sizes_expected_up_leaves_out_scale_to_zero():
    config = make_config(
        **{
            "0_8b": {"num_replicas": 1},
            "2b": {"autoscaling_config": {"min_replicas": 0, "max_replicas": 2, "initial_replicas": 0}},
            "4b": {"num_replicas": 0},
        }
    )
    assert CapacityTracker(config).sizes_expected_up() == ["0.8b"]


def test_polling_reads_counts_and_keeps_the_last_on_failure():
    config = make_config(**{"0_8b": {"num_replicas": 1}})
    answers = [{"0.8b": 1}, RuntimeError("controller restarting"), {"0.8b": 0}]
    polled = asyncio.Queue()

    async def counter():
        answer = answers.pop(0) if answers else {"0.8b": 0}
        await polled.put(answer)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def main():
        capacity = CapacityTracker(config, counter, refresh_s=3600)
        await capacity.refresh()
        assert capacity.ready == {"0.8b": 1}
        await capacity.refresh()
        assert capacity.ready == {"0.8b": 1}  # the failed read kept the last counts
        await capacity.refresh()
        assert capacity.ready == {"0.8b": 0}
        assert capacity.snapshot()["0.8b"].ready_replicas == 0
        for _ in range(3):
            polled.get_nowait()
        capacity.start()
        capacity.start()  # idempotent: one polling task
        assert await polled.get() == {"0.8b": 0}  # the background task polled
        await capacity.close()
        assert capacity._task is None
        assert polled.empty()

    asyncio.run(main())


def test_running_replicas_reads_the_controllers_details_dict():
    class State:  # Serve's ReplicaState enum, as the controller's dict carries it
        def __init__(self, value):
            self.value = value

    details = {
        "applications": {
            "qwen": {
                "deployments": {
                    "model-0_8b": {"replicas": [{"state": State("RUNNING")}, {"state": State("STARTING")}]},
                    "model-2b": {"replicas": [{"state": "RUNNING"}, {"state": "RUNNING"}]},
                    "model-4b": {"replicas": []},
                }
            }
        }
    }
    names = {"0.8b": "model-0_8b", "2b": "model-2b", "4b": "model-4b", "9b": "model-9b"}
    assert running_replicas(details, "qwen", names) == {"0.8b": 1, "2b": 2, "4b": 0}
    assert running_replicas(details, "other-app", names) == {}
    with pytest.raises(KeyError):  # a changed shape: the caller falls back to serve.status()
        running_replicas({"apps": {}}, "qwen", names)


def test_replica_counter_falls_back_to_serve_status_when_the_details_change_shape(monkeypatch, caplog):
    from types import SimpleNamespace

    import ray.serve.context
    from ray import serve

    from deployments.openai.capacity import serve_replica_counter

    class Client:
        def get_serve_details(self):
            return {"apps": {}}  # not the shape this Ray's controller sends

    status = SimpleNamespace(
        applications={
            "qwen": SimpleNamespace(
                deployments={"model-0_8b": SimpleNamespace(replica_states={"RUNNING": 2, "STARTING": 1})}
            )
        }
    )
    monkeypatch.setattr(ray.serve.context, "_get_global_client", lambda **_: Client())
    monkeypatch.setattr(serve, "status", lambda: status)
    count = serve_replica_counter("qwen", {"0.8b": "model-0_8b"})
    with caplog.at_level("WARNING"):
        assert asyncio.run(count()) == {"0.8b": 2}
        assert asyncio.run(count()) == {"0.8b": 2}
    assert sum("serve.status()" in r.getMessage() for r in caplog.records) == 1  # logged once


def test_refuse_if_full_refuses_what_acquire_would_refuse_at_once_and_takes_nothing():
    config = make_config(**{"0_8b": {"num_replicas": 1, "max_ongoing_requests": 1, "max_queued_requests": 1}})
    capacity = CapacityTracker(config)
    capacity.refuse_if_full("0.8b")  # a free slot: nothing to refuse
    assert capacity.in_flight["0.8b"] == 0
    held = capacity.admit("0.8b")

    async def scenario():
        # Full, and no slot came back lately: acquire refuses without waiting, and so does this.
        with pytest.raises(EngineOverloadedError):
            capacity.refuse_if_full("0.8b")
        with pytest.raises(EngineOverloadedError):
            await capacity.acquire("0.8b")
        # Slots coming back fast enough: both let the request wait in line instead.
        for _ in range(50):
            capacity.note_release("0.8b")
        capacity.refuse_if_full("0.8b")
        waiting = asyncio.create_task(capacity.acquire("0.8b"))
        await asyncio.sleep(0)
        assert len(capacity.waiting["0.8b"]) == 1
        with pytest.raises(EngineOverloadedError):  # the line (max_queued_requests 1) is full
            capacity.refuse_if_full("0.8b")
        held.release()
        (await waiting).release()

    asyncio.run(scenario())
    assert capacity.in_flight["0.8b"] == 0
