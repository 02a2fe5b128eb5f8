"""The vectorised sampler: penalties, logit bias, top logprobs, seeded noise, top-k fast path."""

import pytest
import torch

from deployments.engines.sampling import (
    RowSampling,
    SamplingBatch,
    apply_penalties,
    exponential_noise,
    sample_batch,
)

pytestmark = pytest.mark.unit


def batch(*rows, top_logprobs=0, seeds=None):
    return SamplingBatch.from_rows(list(rows), seeds or list(range(len(rows))), top_logprobs)


def row(temperature=1.0, top_p=1.0, top_k=0, min_p=0.0, presence=0.0, frequency=0.0, bias=None):
    return RowSampling(temperature, top_p, top_k, min_p, presence, None, frequency, bias)


def test_frequency_penalty_scales_with_count_and_presence_does_not():
    counts = torch.tensor([[0.0, 1.0, 3.0]])
    logits = torch.zeros(1, 3)
    out = apply_penalties(logits, counts, batch(row(presence=0.5, frequency=1.0)))
    assert out[0].tolist() == [0.0, -1.5, -3.5]


def test_logit_bias_per_row():
    logits = torch.zeros(2, 4)
    out = apply_penalties(logits, None, batch(row(bias={2: 5.0}), row(bias={0: -100.0})))
    assert out.tolist() == [[0.0, 0.0, 5.0, 0.0], [-100.0, 0.0, 0.0, 0.0]]


def test_top_logprobs_are_the_raw_distribution():
    logits = torch.tensor([[3.0, 1.0, 2.0, 0.0]])
    result = sample_batch(
        logits, batch(row(temperature=0.0), top_logprobs=3), torch.zeros(1, dtype=torch.long)
    )
    expected = torch.log_softmax(logits, -1)[0]
    assert result.top_ids[0].tolist() == [0, 2, 1]
    assert result.top_logprobs[0].tolist() == pytest.approx(expected[[0, 2, 1]].tolist(), abs=1e-6)
    assert result.logprobs[0].item() == pytest.approx(expected[0].item(), abs=1e-6)


def test_noise_is_a_function_of_seed_and_step_only():
    seeds, steps = torch.tensor([5, 9]), torch.tensor([3, 3])
    first = exponential_noise(seeds, steps, 50)
    again = exponential_noise(torch.tensor([9]), torch.tensor([3]), 50)
    assert torch.equal(first[1], again[0])
    assert not torch.equal(first[0], first[1])
    assert not torch.equal(first[0], exponential_noise(torch.tensor([5]), torch.tensor([4]), 50)[0])


@pytest.mark.parametrize("top_k", [0, 3])
def test_sampling_follows_the_distribution(top_k):
    # 4000 rows sampled at once with distinct seeds: frequencies match the softmax (top-k path and
    # full-vocabulary path alike).
    probs = torch.tensor([0.5, 0.3, 0.2, 0.0])
    logits = torch.log(probs.clamp(min=1e-12)).repeat(4000, 1)
    rows = [row(top_k=top_k)] * 4000
    result = sample_batch(logits, batch(*rows, seeds=list(range(4000))), torch.zeros(4000, dtype=torch.long))
    freq = torch.bincount(result.tokens, minlength=4).float() / 4000
    assert freq.tolist() == pytest.approx(probs.tolist(), abs=0.03)


def test_top_k_and_top_p_in_one_batch_with_greedy_rows():
    logits = torch.tensor([[4.0, 3.0, 2.0, 1.0]]).repeat(3, 1)
    rows = [row(temperature=0.0), row(top_k=1), row(top_p=0.01)]
    result = sample_batch(logits, batch(*rows), torch.zeros(3, dtype=torch.long))
    assert result.tokens.tolist() == [0, 0, 0]
