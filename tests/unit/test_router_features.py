"""Every transparent feature fires on its cue, stays quiet without it, and moves the score the right way."""

from __future__ import annotations

import pytest

from deployments.engines.base import ChatMessage, ImageInput
from deployments.router.features import (
    FEATURE_NAMES,
    estimate_tokens,
    extract_features,
    joined_parts,
    non_english_share,
)
from deployments.router.routing_input import CUE_HEAD_CHARS, RoutingInput, from_messages
from deployments.router.scorers import FEATURE_WEIGHTS, FeatureScorer

pytestmark = pytest.mark.unit

NEUTRAL = "Tell me about the old lighthouse on the hill near our village."

# feature -> a prompt that carries the cue (same neutral sentence, cue added)
CUES = {
    "math": f"{NEUTRAL} Solve the equation 3x + 5 = 20 and compute the integral of x^2.",
    "code": f"{NEUTRAL} Implement it as a Python function:\n```\ndef f(x):\n    return x\n```",
    "multi_step": f"{NEUTRAL} First it cost 12, then 30 more, after that 7 and finally 15. How much in total?",
    "reasoning": f"{NEUTRAL} Explain why it matters, compare the alternatives and justify a recommendation.",
    "competition": f"{NEUTRAL} Find all positive integers n such that n divides 2^n + 1 (olympiad).",
    "non_english": "Quelle est l'histoire de cette vieille tour ? Est-ce une légende ou une histoire vraie ?",
    "systems": f"{NEUTRAL} Then build a distributed, fault-tolerant booking service for it from scratch.",
    "symbolic": f"{NEUTRAL} If its height h satisfies h^2 + 3h = 40 and f(h) = 2h, find f(h).",
}


def features_of(text: str, **kwargs) -> dict[str, float]:
    return extract_features(RoutingInput(query=text, **kwargs))


def test_feature_names_are_the_weighted_ones():
    assert set(FEATURE_WEIGHTS) == set(FEATURE_NAMES)


def test_every_value_lies_in_unit_interval():
    for text in (NEUTRAL, *CUES.values(), "hi", ""):
        values = features_of(text)
        assert all(0.0 <= values[name] <= 1.0 for name in FEATURE_NAMES), text


@pytest.mark.parametrize("feature", sorted(CUES))
def test_cue_fires_and_neutral_does_not(feature):
    assert features_of(NEUTRAL)[feature] == 0.0
    assert features_of(CUES[feature])[feature] >= 0.3


@pytest.mark.parametrize("feature", sorted(CUES))
def test_cue_raises_the_feature_score(feature):
    scorer = FeatureScorer()
    plain = scorer.score(RoutingInput(query=NEUTRAL)).difficulty
    cued = scorer.score(RoutingInput(query=CUES[feature])).difficulty
    assert cued > plain


def test_length_grows_with_tokens_and_saturates():
    short, medium, long_, huge = (features_of("word " * n)["length"] for n in (10, 400, 4000, 40000))
    assert 0 < short < medium < long_ < huge == 1.0


def test_length_counts_context_too():
    alone = features_of("Summarize.")["length"]
    with_context = features_of("Summarize.", context="a sentence of context " * 200)["length"]
    assert with_context > alone


def test_turns_count_user_turns_beyond_the_first():
    assert features_of(NEUTRAL)["turns"] == 0.0
    assert features_of(NEUTRAL, user_turns=3)["turns"] == pytest.approx(0.5)
    assert features_of(NEUTRAL, user_turns=9)["turns"] == 1.0


def test_images_count_and_saturate():
    assert features_of(NEUTRAL)["images"] == 0.0
    assert features_of(NEUTRAL, images=1)["images"] == pytest.approx(1 / 3)
    assert features_of(NEUTRAL, images=7)["images"] == 1.0
    assert features_of(NEUTRAL, images=2)["image_count"] == 2.0


def test_images_and_turns_raise_the_score():
    scorer = FeatureScorer()
    base = scorer.score(RoutingInput(query=NEUTRAL)).difficulty
    assert scorer.score(RoutingInput(query=NEUTRAL, images=2)).difficulty > base
    assert scorer.score(RoutingInput(query=NEUTRAL, user_turns=4)).difficulty > base


@pytest.mark.parametrize(
    "text",
    [
        "¿Cuál es la capital de Perú y qué idioma se habla allí?",
        "Was ist die Hauptstadt von Österreich und wie ist das Wetter dort?",
        "水的沸点是多少摄氏度？",
        "Привет! Как у тебя дела сегодня?",
        "Quelle est la meilleure façon d'apprendre une langue ?",
    ],
)
def test_non_english_is_recognised(text):
    assert non_english_share(text) >= 0.5


@pytest.mark.parametrize(
    "text",
    [
        "Pour the water into a pot and bring it to a boil, then add the pasta.",
        "My son met the team in Los Angeles and Las Vegas last week.",
        "The café served a naïve but tasty dessert.",
    ],
)
def test_english_with_foreign_looking_words_is_not_flagged(text):
    assert non_english_share(text) < 0.35


def test_estimate_tokens():
    assert estimate_tokens("abcd" * 100) == 100
    assert estimate_tokens("你好" * 30) == 40
    assert estimate_tokens("") == 0


def test_long_text_is_scanned_head_and_tail_only():
    middle_cue = "x" * CUE_HEAD_CHARS + " explain why " + "y" * 10_000
    tail_cue = "x" * 20_000 + " explain why"
    assert features_of(middle_cue)["reasoning"] == 0.0
    assert features_of(tail_cue)["reasoning"] > 0.0


def test_query_comes_from_the_last_user_turn():
    request = from_messages(
        [
            ChatMessage(role="system", content=["You are terse."]),
            ChatMessage(role="user", content=["Prove Fermat's little theorem."]),
            ChatMessage(role="assistant", content=["Sure."]),
            ChatMessage(role="user", content=["thanks!", ImageInput(data=b"png")]),
        ]
    )
    assert request.query == "thanks!"
    assert "Prove Fermat" in request.context
    assert request.user_turns == 2
    assert request.images == 1


def test_feature_scorer_orders_the_sizes():
    scorer = FeatureScorer()
    greeting = scorer.score(RoutingInput(query="Hey! How's it going?")).difficulty
    summary = scorer.score(
        RoutingInput(query="Summarize this paragraph in two sentences: " + NEUTRAL * 6)
    ).difficulty
    proof = scorer.score(
        RoutingInput(query="Prove rigorously that there are infinitely many primes of the form 4k+3.")
    ).difficulty
    assert greeting < summary < proof
    assert greeting >= 0.0 and proof <= 1.0


def test_unknown_feature_weight_is_rejected():
    with pytest.raises(ValueError, match="unknown feature weights"):
        FeatureScorer(weights={"sparkle": 1.0})


@pytest.mark.parametrize(
    "text",
    [
        "What is the remainder when 100 is divided by 7?",
        "This memo will show that the new process saves time for the whole team.",
        "Find all the names mentioned in the paragraph above.",
        "Seat the guests such that the maximum of two people share a table, for which I need a plan.",
        "Draw it:\n```mermaid\ngraph LR\n  a --> b --> c\n```",
    ],
)
def test_cues_do_not_fire_on_ordinary_prose(text):
    from deployments.router.features import extract_features

    features = extract_features(RoutingInput(query=text))
    assert features["competition"] == 0.0 and features["code"] < 0.5


def test_every_size_is_reachable_with_the_feature_scorer():
    from cluster.catalog import SIZES
    from deployments.router.scorers import FeatureScorer, level_probabilities

    scorer = FeatureScorer()
    prompts = [
        "How ya doing?",
        "Why do cats purr?",
        "Implement a thread-safe LRU cache in Python and explain its complexity.",
        "Prove that there are infinitely many primes p such that p^2 + 2 is not prime; find all positive integers n with n^2 + 1 | n^3 + 5.",
    ]
    levels = [
        max(range(4), key=level_probabilities(scorer.score(RoutingInput(query=p)).difficulty).__getitem__)
        for p in prompts
    ]
    assert [SIZES[k] for k in levels] == list(SIZES)


def test_demand_counts_higher_order_verbs_in_any_language_once():
    short_hard = [
        "Reconstruct Kant's argument as numbered premises and defend a reply.",
        "Analiza críticamente la postura de Hume y evalúa sus objeciones.",
        "Build a compiler for a small language in C.",
    ]
    for text in short_hard:
        assert features_of(text)["demand"] > 0.0, text
    # "recommend" is a reasoning word: it counts there, not a second time as demand.
    assert features_of("Can you recommend a good book?")["demand"] == 0.0
    assert features_of("Who was Simone de Beauvoir?")["demand"] == 0.0
    # A story's verbs set its question up; only the question asks.
    story = "James is building a hall of mirrors. Three walls will be glass. How many square feet of glass?"
    assert features_of(story)["demand"] == 0.0
    assert features_of("James is building a hall. Design its mirrors.")["demand"] > 0.0
    setup = "Lucas wants a dog. His parents argue that he has too many pets."
    assert features_of(f"{setup} How many pet beds does he have?")["reasoning"] == 0.0
    assert features_of(f"{setup} Why do they argue?")["reasoning"] > 0.0
    # A thing's weight is a quantity, not an ask to weigh options.
    assert features_of("Mildred weighs 59 pounds. Carol weighs 9 pounds. How much heavier is Mildred?")["demand"] == 0.0


def test_demand_and_parts_read_the_instruction_not_a_pasted_page():
    page = "Critically evaluate, design, build and justify; weigh, contrast, and derive. " * 20
    request = RoutingInput(query="Summarise this page.", context=page)
    features = extract_features(request)
    assert features["demand"] == 0.0 and features["parts"] == 0.0


def test_a_request_of_several_parts_scores_above_one_part():
    from deployments.router.scorers import FeatureScorer

    scorer = FeatureScorer()
    one = scorer.score(RoutingInput(query="Implement a thread-safe LRU cache in Python.")).difficulty
    three = scorer.score(
        RoutingInput(
            query="Implement a thread-safe LRU cache in Python, explain the complexity and the trade-offs "
            "of the locking design."
        )
    ).difficulty
    assert three > one


PAGE = "\n\n".join(
    [
        "Quarterly report of the facilities team",
        "Costs rose from 80,000 to 95,000 euros, although the table lists 91,000; 12 rooms, 4 floors, "
        "3 lifts.",
        "We must analyse, evaluate and compare the distributed, scalable database index options in detail.",
        "The committee approved 12,400 euros for repairs, then 3,100 more, and finally 950 for paint.",
    ]
)


@pytest.mark.parametrize(
    "layout",
    [
        "Summarise this in three bullet points:\n\n{page}",
        "{page}\n\nTL;DR?",
        "Fasse den Text zusammen:\n\n{page}",
    ],
)
def test_a_pasted_page_is_material_not_cues(layout):
    pasted = features_of(layout.format(page=PAGE))
    for cue in ("math", "multi_step", "reasoning", "demand", "parts", "systems"):
        assert pasted[cue] == 0.0, cue
    assert pasted["material"] > 0.15
    # The page still counts towards the request's size (tokens) and reads as long material.
    assert pasted["tokens"] > features_of("Summarise this in three bullet points:")["tokens"] + 50


def test_summarising_a_page_scores_below_analysing_it():
    scorer = FeatureScorer()
    summary = scorer.score(RoutingInput(query=f"Summarise this page in three bullet points:\n\n{PAGE}"))
    analysis = scorer.score(
        RoutingInput(
            query="Using only the report below, reconstruct the timeline of decisions, identify which "
            f"figures are inconsistent with each other and justify an estimate of the true cost.\n\n{PAGE}"
        )
    )
    assert summary.difficulty < analysis.difficulty


@pytest.mark.parametrize(
    "text",
    [
        "I want to return the shoes I bought last week. What should I write to the store?",
        "What is the function of the mitochondria in a cell?",
        "We import coffee from Brazil; import duties rose this year. Define the terms.",
        "Notice: a fee of 25 euros applies to late returns after the second reminder.",
        "My yoga class starts at nine; remind me to lock the door before I go.",
        "Book a table for two and ask whether the library cafe has a dress code.",
        "What does the index at the back of a history book list?",
    ],
)
def test_code_keywords_in_prose_are_not_code(text):
    # Words that are code and English alike ("function", "class", "table", "lock") count only in
    # text that is about code.
    assert features_of(text)["code"] == 0.0


@pytest.mark.parametrize(
    "text",
    [
        "Write a function to find the highest common ancestor of two nodes in a binary tree.",
        "Implement an LRU cache class with O(1) get and put.",
        "Fix this function: it crashes when the input file is empty.",
        "Add an index to the orders table so the query runs faster in SQL Server.",
        "Why is this SQL query slow on a big table?",
    ],
)
def test_code_words_count_where_the_text_is_about_code(text):
    assert features_of(text)["code"] >= 0.25


@pytest.mark.parametrize(
    "snippet",
    [
        "def area(r):\n    return 3.14 * r * r",
        "function add(a, b) { return a + b; }",
        "import numpy as np\nfrom os import path",
        "if (x) return y;",
    ],
)
def test_code_keywords_in_code_are_code(snippet):
    assert features_of(f"Why does this not work?\n\n{snippet}")["code"] >= 0.5


def test_pasted_code_still_makes_a_coding_request():
    snippet = "```python\ndef total(items):\n    return sum(i.price for i in items)\n```"
    assert features_of(f"Why does this fail on an empty list?\n\n{snippet}")["code"] >= 0.5


@pytest.mark.parametrize(
    "text",
    [
        "67 + 66 = ?",
        "Send an e-mail to Bob, e.g. about the k-means run.",
        "It's what I'd do, don't you think?",
        "Meet me at 5 p.m. in room b, then go to the x-ray lab.",
        # One letter by an operator is not algebra by itself: the text must be mathematical.
        "Take route b = the coast road, it is nicer.",
    ],
)
def test_symbolic_needs_variables_in_mathematical_text(text):
    assert features_of(text)["symbolic"] == 0.0


@pytest.mark.parametrize(
    "text",
    [
        "Let f be a function from the reals to the reals with f(x + y) = f(x)f(y). Determine all such f.",
        "求所有正整数 n，使得 n^2 + 1 能被 n + 1 整除。",
    ],
)
def test_symbolic_fires_on_algebra_in_any_language(text):
    assert features_of(text)["symbolic"] > 0.3


@pytest.mark.parametrize(
    "text",
    [
        "Rustで小さな言語のコンパイラを実装してください。",
        "Schreib einen verteilten Schlüssel-Wert-Speicher von Grund auf.",
    ],
)
def test_systems_cue_in_other_languages(text):
    assert features_of(text)["systems"] > 0.3


@pytest.mark.parametrize(
    "text",
    [
        "Find the number of subsets of {1, 2, ..., 12} whose sum is a multiple of 3.",
        "Let n be the least positive integer such that n^2 + 1 is divisible by 5^4. Find n.",
        "Triangle ABC has AB = 5 and BC = 7; the angle bisector from B meets AC at D. Find the circumradius.",
    ],
)
def test_competition_vocabulary_counts_in_mathematical_text(text):
    assert features_of(text)["competition"] >= 0.5


@pytest.mark.parametrize(
    "text",
    [
        "Write an HTTP/2 server from sockets up.",
        "Implement a key-value store with a write-ahead log in Go.",
        "Rustでロックフリーのキューを実装してください。",
    ],
)
def test_one_line_build_asks_carry_the_systems_cue(text):
    assert features_of(text)["systems"] >= 0.5


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("compare rust, go and zig.", 2),
        ("cover the causes, the course and the consequences of the war.", 2),
        # A comma after one opening word sets off an interjection or an opener, not a part.
        ("hi, how are you?", 0),
        ("hola, ¿qué tal?", 0),
        ("thanks, bye! and good luck.", 0),
        ("first, list the steps. then explain them and compare.", 1),
        # A story and its question: the story's clauses set the question up; the ask is one part.
        ("tom had 5 apples, and he gave 2 to ann, 1 to bob and 1 to cy. how many are left?", 0),
        ("tom had 5 apples and 3 pears. how many apples and pears does he have?", 1),
        # One question alone keeps its parts, and so does text that does not end in a question.
        ("what is a mutex, and how does it differ from a semaphore?", 2),
        ("i use postgres, redis and kafka. compare them, and pick one.", 4),
        # A leading condition sets the ask up too, up to the comma that closes it.
        ("if she sells 12 cups and keeps 3, how many cups and plates are left?", 1),
        ("tom has 3 apples. if he eats one, how many are left?", 0),
        ("if possible, explain tcp, compare it with udp, and give an example.", 3),
        # A decimal point ends no sentence.
        ("what is x, and what is 3.5 times 2?", 2),
        ("a pen costs 2.50, and a pad 1.20. how much are 3 pens and 2 pads?", 1),
    ],
)
def test_joined_parts_count_only_the_parts_of_the_ask(text, parts):
    assert joined_parts(text) == parts


def test_two_prices_are_not_a_formula_but_inline_maths_is():
    prices = features_of("Lizzy had $30. She loaned $15 to her friend. How much does she have now?")
    formula = features_of("Solve $x^2 + 1 = 0$ over the complex numbers.")
    assert prices["math"] == 0.0
    assert formula["math"] > 0.0
