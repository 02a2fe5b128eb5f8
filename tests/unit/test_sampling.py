import pytest
import torch

from deployments.engines.sampling import (
    RowSampling,
    SamplingBatch,
    apply_penalties,
    count_tokens,
    filter_logits,
    make_generator,
    sample_batch,
)

pytestmark = pytest.mark.unit


def row(temperature=1.0, top_p=1.0, top_k=0, min_p=0.0, presence_penalty=0.0, seed=0):
    return RowSampling(temperature, top_p, top_k, min_p, presence_penalty, make_generator(seed))


def sample_rows(logits: torch.Tensor, generated: torch.Tensor, rows: list[RowSampling]):
    """One sampling step as the decode loop takes it: counts of what each row generated, then sample."""
    batch = SamplingBatch.from_rows(rows, [r.draw_seed() for r in rows])
    steps = torch.full((len(rows),), generated.shape[1], dtype=torch.long)
    result = sample_batch(logits, batch, steps, count_tokens(generated, logits.shape[-1]))
    return result.tokens, result.logprobs


def test_top_k_and_top_p_masks():
    logits = torch.tensor([[4.0, 3.0, 2.0, 1.0], [4.0, 3.0, 2.0, 1.0]])
    out = filter_logits(logits, torch.tensor([2, 0]), torch.tensor([1.0, 0.5]), torch.tensor([0.0, 0.0]))
    assert torch.isfinite(out[0]).tolist() == [True, True, False, False]
    # top_p 0.5: the first token alone holds ~64% of the mass.
    assert torch.isfinite(out[1]).tolist() == [True, False, False, False]


def test_min_p_masks_relative_to_top():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    out = filter_logits(logits, torch.tensor([0]), torch.tensor([1.0]), torch.tensor([0.2]))
    assert torch.isfinite(out[0]).tolist() == [True, True, True, False]


def test_presence_penalty_hits_generated_tokens_only():
    logits = torch.zeros(1, 5)
    batch = SamplingBatch.from_rows([row(presence_penalty=1.5)], [0])
    out = apply_penalties(logits, count_tokens(torch.tensor([[1, 1, 3]]), 5), batch)
    assert out[0].tolist() == [0.0, -1.5, 0.0, -1.5, 0.0]


def test_rows_keep_their_own_parameters():
    logits = torch.tensor([[1.0, 5.0, 0.0], [1.0, 5.0, 0.0]])
    tokens, logprobs = sample_rows(
        logits, torch.zeros(2, 0, dtype=torch.long), [row(temperature=0.0), row(temperature=1.0, top_k=1)]
    )
    assert tokens.tolist() == [1, 1]
    assert logprobs[0].item() == pytest.approx(torch.log_softmax(logits[0], -1)[1].item())


def test_seeded_rows_are_reproducible():
    logits = torch.randn(1, 50)
    draws = lambda: [sample_rows(logits, torch.zeros(1, 0, dtype=torch.long), [row(seed=7)])[0].item()]  # noqa: E731
    first = [
        sample_rows(logits, torch.zeros(1, 0, dtype=torch.long), [r])[0].item() for r in [row(seed=7)] * 1
    ]
    assert first == draws()


def test_greedy_respects_presence_penalty():
    logits = torch.tensor([[2.0, 1.9]])
    tokens, _ = sample_rows(logits, torch.tensor([[0]]), [row(temperature=0.0, presence_penalty=1.0)])
    assert tokens.tolist() == [1]


def test_a_batch_no_row_reads_log_probabilities_of_skips_them_and_samples_the_same():
    logits = torch.randn(3, 50, generator=torch.Generator().manual_seed(3))
    rows = [row(temperature=0.0), row(temperature=0.8, seed=5), row(temperature=1.2, top_k=4, seed=9)]
    steps = torch.zeros(3, dtype=torch.long)
    seeds = [11, 12, 13]
    read = sample_batch(logits, SamplingBatch.from_rows(rows, seeds), steps)
    skipped = sample_batch(logits, SamplingBatch.from_rows(rows, seeds, chosen_logprobs=False), steps)
    assert torch.equal(read.tokens, skipped.tokens)
    assert read.logprobs is not None and skipped.logprobs is None
    # Top alternatives asked for need the log-sum-exp too, so they bring the chosen token's back.
    top = sample_batch(
        logits, SamplingBatch.from_rows(rows, seeds, top_logprobs=2, chosen_logprobs=False), steps
    )
    assert torch.allclose(top.logprobs, read.logprobs)
