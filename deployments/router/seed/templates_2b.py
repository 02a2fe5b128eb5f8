"""Templates labeled 2b: paragraph-level rewriting and extraction, one-step word problems, short code,
simple explanations, describing or reading one image, non-English facts, e-mails, casual multi-turn."""

from __future__ import annotations

from random import Random
from typing import Any

from deployments.router.seed.fillers import (
    CITIES,
    COLORS,
    COUNTRIES,
    ITEMS,
    LANGUAGES,
    OBJECTS,
    PEOPLE,
    TOPICS,
    WEEKDAYS,
    paragraph,
    pick,
)
from deployments.router.seed.template import Template

Row = dict[str, Any]


def _summarize(rng: Random) -> Row:
    text = paragraph(rng, rng.randint(4, 7))
    ask = pick(
        rng,
        (
            "Summarize this in two sentences:",
            "Give me a one-paragraph summary of the text below.",
            "TL;DR of this, please:",
            "Condense this into three bullet points:",
        ),
    )
    return {"prompt": f"{ask}\n\n{text}"}


def _rewrite_audience(rng: Random) -> Row:
    audience = pick(
        rng,
        (
            "a ten-year-old",
            "a formal business letter",
            "a tweet",
            "a friendly newsletter",
            "someone who reads very little English",
        ),
    )
    return {"prompt": f"Rewrite the following for {audience}:\n\n{paragraph(rng, rng.randint(3, 6))}"}


def _extract_json(rng: Random) -> Row:
    person, total = pick(rng, PEOPLE), rng.randint(5, 400)
    receipt = (
        f"Store #{rng.randint(10, 99)} - {pick(rng, CITIES)}\nCustomer: {person}\n"
        f"Date: 2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}\n"
        f"{rng.randint(1, 5)} x {pick(rng, ITEMS)}\nTotal: ${total}.{rng.randint(0, 99):02d}"
    )
    return {
        "prompt": pick(
            rng,
            (
                f"Extract the customer name, date and total from this receipt as JSON:\n{receipt}",
                f"Turn this receipt into a JSON object with keys name, date, total.\n\n{receipt}",
            ),
        )
    }


def _extract_cities(rng: Random) -> Row:
    return {
        "prompt": f"List every person and city mentioned in this paragraph:\n\n{paragraph(rng, rng.randint(3, 5))}"
    }


def _word_problem_one_step(rng: Random) -> Row:
    person, item, a, b = pick(rng, PEOPLE), pick(rng, ITEMS), rng.randint(3, 40), rng.randint(2, 30)
    return {
        "prompt": pick(
            rng,
            (
                f"{person} has {a} {item}. They buy {b} more. How many {item} do they have now?",
                f"{person} had {a + b} {item} and gave away {b}. How many are left?",
                f"There are {a} {item} in each box. How many {item} are in {b % 9 + 2} boxes?",
            ),
        )
    }


def _unit_price(rng: Random) -> Row:
    item, price, n = pick(rng, ITEMS), rng.randint(2, 15), rng.randint(3, 12)
    return {"prompt": f"One pack of {item} costs ${price}. What do {n} packs cost?"}


def _code_short(rng: Random) -> Row:
    task = pick(
        rng,
        (
            "reverses a string",
            "returns the largest number in a list",
            "checks whether a word is a palindrome",
            "counts the vowels in a string",
            "converts Celsius to Fahrenheit",
            "removes duplicates from a list",
            "returns the sum of the even numbers in a list",
            "capitalizes the first letter of each word",
        ),
    )
    return {
        "prompt": pick(
            rng,
            (
                f"Write a {pick(rng, LANGUAGES)} function that {task}.",
                f"Short {pick(rng, LANGUAGES)} snippet that {task}?",
            ),
        )
    }


def _code_explain_line(rng: Random) -> Row:
    snippet = pick(
        rng,
        (
            "squares = [x * x for x in range(10)]",
            "const total = items.reduce((a, b) => a + b, 0);",
            "names = sorted(set(names))",
            "if not os.path.exists(path): os.makedirs(path)",
            "let evens: Vec<i32> = v.iter().filter(|x| *x % 2 == 0).cloned().collect();",
            "print(len(words))",
            "s = s.strip().lower()",
            "x = a if a > b else b",
            "document.getElementById('title').textContent = 'Hi';",
        ),
    )
    return {"prompt": f"What does this line do? `{snippet}`"}


def _explain_simple(rng: Random) -> Row:
    topic = pick(rng, TOPICS)
    return {
        "prompt": pick(
            rng,
            (
                f"Explain {topic} in simple terms.",
                f"What is {topic}, briefly, for a beginner?",
                f"Can you give me a short, easy explanation of {topic}?",
            ),
        )
    }


def _image_describe(rng: Random) -> Row:
    return {
        "prompt": pick(
            rng,
            (
                "Describe this image in detail.",
                "Read the text on the sign in this photo.",
                "Write a caption for this picture for my blog.",
                "What is happening in this scene?",
                "Transcribe the handwritten note in the image.",
            ),
        ),
        "images": 1,
    }


def _image_receipt(rng: Random) -> Row:
    return {
        "prompt": pick(
            rng,
            (
                "What's the total on this receipt?",
                "Which shop is this receipt from, and what date?",
                "How much tax was charged on this receipt?",
                "List the items on this receipt.",
                "What time was this receipt printed?",
                "Was this paid by card or cash?",
            ),
        ),
        "images": 1,
    }


def _foreign_fact(rng: Random) -> Row:
    country = pick(rng, COUNTRIES)
    return {
        "prompt": pick(
            rng,
            (
                f"¿Cuál es la capital de {country} y qué idioma se habla allí?",
                f"Quelle est la capitale de {country} et combien d'habitants y a-t-il ?",
                f"Was ist die Hauptstadt von {country} und wie ist das Klima dort?",
                f"Qual é a capital de {country} e qual é a moeda do país?",
                "水的沸点是多少摄氏度？为什么高山上会更低？",
                "日本で一番高い山は何ですか？その高さも教えてください。",
                f"Puoi riassumere in due frasi la storia di {country}?",
            ),
        )
    }


def _casual_multi_turn(rng: Random) -> Row:
    city = pick(rng, CITIES)
    return {
        "messages": [
            {"role": "user", "content": f"I'm visiting {city} next week."},
            {
                "role": "assistant",
                "content": f"That sounds great! {city} has a lot to see. What do you enjoy?",
            },
            {
                "role": "user",
                "content": pick(
                    rng,
                    (
                        "Mostly food and walking. Any ideas?",
                        "Museums, I think. Suggestions?",
                        "What should I pack?",
                        "Is it rainy there this time of year?",
                    ),
                ),
            },
        ]
    }


def _email_draft(rng: Random) -> Row:
    person, d1, d2 = pick(rng, PEOPLE), pick(rng, WEEKDAYS), pick(rng, WEEKDAYS)
    return {
        "prompt": pick(
            rng,
            (
                f"Write a short email to {person} asking to move our meeting from {d1} to {d2}.",
                f"Draft a friendly note to {person} thanking them for the {pick(rng, COLORS)} {pick(rng, OBJECTS)} they lent me.",
            ),
        )
    }


TEMPLATES_2B: tuple[Template, ...] = (
    Template("summarize", "rewriting", "2b", 14, False, _summarize),
    Template("rewrite_audience", "rewriting", "2b", 10, True, _rewrite_audience),
    Template("extract_json", "extraction", "2b", 14, False, _extract_json),
    Template("extract_entities", "extraction", "2b", 8, True, _extract_cities),
    Template("word_problem_one_step", "word-problem", "2b", 14, False, _word_problem_one_step),
    Template("unit_price", "word-problem", "2b", 8, True, _unit_price),
    Template("code_short", "code", "2b", 14, False, _code_short),
    Template("code_explain_line", "code", "2b", 8, True, _code_explain_line),
    Template("explain_simple", "explanation", "2b", 12, False, _explain_simple),
    Template("image_describe", "image", "2b", 12, False, _image_describe),
    Template("image_receipt", "image", "2b", 6, True, _image_receipt),
    Template("foreign_fact", "non-english", "2b", 12, False, _foreign_fact),
    Template("casual_multi_turn", "chit-chat", "2b", 10, False, _casual_multi_turn),
    Template("email_draft", "rewriting", "2b", 10, True, _email_draft),
)
