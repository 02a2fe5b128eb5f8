"""Templates labeled 4b: multi-step word problems, textbook-size code and debugging, step-by-step
explanations, comparisons, charts and two-image comparisons, medium documents and tables."""

from __future__ import annotations

from random import Random
from typing import Any

from deployments.router.seed.fillers import CITIES, ITEMS, LANGUAGES, PEOPLE, csv_table, pick, report
from deployments.router.seed.template import Template

Row = dict[str, Any]


def _trains(rng: Random) -> Row:
    a, b = pick(rng, CITIES), pick(rng, CITIES)
    d, v1, v2, h = rng.randint(200, 900), rng.randint(60, 140), rng.randint(60, 140), rng.randint(6, 11)
    return {
        "prompt": (
            f"A train leaves {a} at {h}:00 heading to {b}, {d} km away, at {v1} km/h. Half an hour later "
            f"a second train leaves {b} for {a} at {v2} km/h. At what time do they meet, and how far from {a}?"
        )
    }


def _shopping_chain(rng: Random) -> Row:
    person, price, n, off, tax = (
        pick(rng, PEOPLE),
        rng.randint(12, 90),
        rng.randint(3, 9),
        rng.choice((10, 15, 20, 25)),
        rng.randint(5, 12),
    )
    return {
        "prompt": (
            f"{person} buys {n} jackets at ${price} each. The store takes {off}% off the total, then adds "
            f"{tax}% sales tax, and {person} pays with a ${(n * price // 50 + 1) * 50} bill. "
            "How much change do they get? Show the intermediate amounts."
        )
    }


def _pipes(rng: Random) -> Row:
    a, b, c = rng.randint(2, 6), rng.randint(3, 9), rng.randint(8, 20)
    return {
        "prompt": (
            f"Pipe A fills a tank in {a} hours and pipe B in {b} hours, while a drain empties the full tank in "
            f"{c} hours. All three start together on an empty tank; after 1 hour pipe B is closed. "
            "How long until the tank is full?"
        )
    }


def _code_structure(rng: Random) -> Row:
    lang = pick(rng, LANGUAGES)
    task = pick(
        rng,
        (
            "an LRU cache with O(1) get and put",
            "a min-heap with push, pop and peek",
            "a trie with insert and prefix search",
            "a function that merges overlapping intervals",
            "a rate limiter using the token bucket algorithm",
            "a function that validates a Sudoku board",
            "binary search on a rotated sorted array",
        ),
    )
    return {"prompt": f"Implement {task} in {lang}. Explain the time complexity of each operation."}


def _sql(rng: Random) -> Row:
    return {
        "prompt": pick(
            rng,
            (
                "Write a SQL query that returns, for each customer, their three most recent orders and the running total of spend, "
                "using tables customers(id, name) and orders(id, customer_id, created_at, amount).",
                "Given employees(id, name, manager_id, salary), write a SQL query listing every employee who earns more than "
                "their manager, along with the manager's name.",
                "Write SQL to find products whose monthly sales dropped for three consecutive months, from sales(product_id, month, units).",
                "Using visits(user_id, day), write a SQL query for the longest streak of consecutive days each user visited.",
                "Write a SQL query computing each department's median salary without a built-in median function.",
            ),
        )
    }


def _debug(rng: Random) -> Row:
    item = pick(rng, ITEMS)
    code = pick(
        rng,
        (
            "def average(xs):\n    total = 0\n    for i in range(1, len(xs)):\n        total += xs[i]\n    return total / len(xs)",
            f"def count_{item}(boxes):\n    counts = {{}}\n    for box in boxes:\n        counts[box.color] = counts.get(box.color, 0)\n    return counts",
            "function last(arr) {\n  return arr[arr.length];\n}",
            "def is_sorted(xs):\n    return all(xs[i] <= xs[i + 1] for i in range(len(xs)))",
        ),
    )
    return {
        "prompt": f"This function returns wrong results. Find the bug, explain why it happens and fix it:\n\n```\n{code}\n```"
    }


def _stepwise(rng: Random) -> Row:
    process = pick(
        rng,
        (
            "public-key encryption lets two strangers share a secret",
            "a bill becomes law in a parliamentary system",
            "DNS resolves a domain name",
            "an airplane wing produces lift",
            "a compiler turns source code into machine code",
            "a bank clears a cheque",
            "TCP recovers from a lost packet",
            "a vaccine trains the immune system",
            "garbage collection finds unreachable objects",
            "a heat pump moves heat from cold air",
            "HTTPS sets up a session",
        ),
    )
    ask = pick(
        rng,
        (
            "Explain step by step how {p}, and why each step is needed.",
            "Walk me through how {p}. What would go wrong if a step were skipped?",
            "Describe in order the stages by which {p}, with the reason for each.",
        ),
    )
    return {"prompt": ask.format(p=process)}


def _compare(rng: Random) -> Row:
    a, b, use = pick(
        rng,
        (
            ("PostgreSQL", "MongoDB", "an inventory system with many relations"),
            ("renting", "buying a home", "a family planning to move in five years"),
            ("React", "server-rendered HTML", "a small internal dashboard"),
            ("electric cars", "hybrids", "a rural commuter"),
            ("microservices", "a monolith", "a team of four engineers"),
            ("index funds", "individual stocks", "a first-time investor"),
            ("Kafka", "RabbitMQ", "an order-processing pipeline"),
            ("trains", "flights", "a 600 km business trip"),
            ("SQLite", "PostgreSQL", "a desktop app that syncs to the cloud"),
            ("remote work", "office work", "a new graduate"),
        ),
    )
    ask = pick(
        rng,
        (
            "Compare {a} and {b} for {u}. Discuss the trade-offs and recommend one.",
            "{a} or {b} for {u}? Weigh the pros and cons and tell me which you'd pick.",
            "What are the main differences between {a} and {b} when the use case is {u}? Which fits better and why?",
        ),
    )
    return {"prompt": ask.format(a=a, b=b, u=use)}


def _chart(rng: Random) -> Row:
    metric = pick(
        rng,
        (
            "revenue",
            "website visits",
            "rainfall",
            "active users",
            "units sold",
            "support tickets",
            "energy use",
        ),
    )
    period = pick(rng, ("quarter", "month", "year"))
    return {
        "prompt": pick(
            rng,
            (
                f"Based on this chart, which {period} had the highest {metric}, by what percentage did it change from the previous {period}, and what trend do you expect next?",
                f"Looking at the graph, estimate the average {metric} per {period} and explain whether the growth is accelerating.",
                f"The chart shows {metric} by {period}. Which two consecutive periods had the biggest drop, and what might explain it?",
            ),
        ),
        "images": 1,
    }


def _two_images(rng: Random) -> Row:
    thing = pick(
        rng,
        (
            "floor plans",
            "product labels",
            "garden layouts",
            "circuit boards",
            "nutrition labels",
            "bike frames",
        ),
    )
    criterion = pick(
        rng, ("a family of four", "someone on a tight budget", "a beginner", "long-term durability")
    )
    return {
        "prompt": f"Here are two images of {thing}. What are the differences, and which one is better for {criterion}? Explain why.",
        "images": 2,
    }


def _doc_question(rng: Random) -> Row:
    doc = report(rng, rng.randint(2, 3), 5)
    question = pick(
        rng,
        (
            "Which region is the biggest risk to next year's margin, and why?",
            "Is the buyback a good use of cash given the debt maturities? Explain.",
            "What is likely causing the churn, based only on the text?",
        ),
    )
    return {"prompt": f"{doc}\n\nBased on the text above: {question}"}


def _foreign_reasoning(rng: Random) -> Row:
    a, b, c = rng.randint(3, 12), rng.randint(20, 80), rng.randint(2, 6)
    return {
        "prompt": pick(
            rng,
            (
                f"Un magasin vend {a} cahiers à {b} centimes pièce. Après une remise de {c * 5} %, combien coûtent trois lots ? Explique chaque étape.",
                f"Un tren sale a las {a}:00 a {b} km/h y otro sale una hora después a {b + 20} km/h por la misma vía. ¿Cuándo lo alcanza? Explica el razonamiento.",
                f"Eine Firma hat {b} Mitarbeiter. {c * 10} % arbeiten im Vertrieb, davon die Hälfte in Teilzeit. Wie viele Vollzeitkräfte gibt es im Vertrieb? Erkläre den Rechenweg.",
                f"一个水池有两个进水管，甲管{a}小时注满，乙管{a + c}小时注满。两管同时开，多少小时注满？请写出步骤。",
            ),
        )
    }


def _multi_turn_code(rng: Random) -> Row:
    lang = pick(rng, LANGUAGES)
    return {
        "messages": [
            {"role": "user", "content": f"Write a {lang} function that parses a CSV line into fields."},
            {"role": "assistant", "content": "Here is a simple version that splits on commas: ..."},
            {"role": "user", "content": "It breaks on quoted fields that contain commas."},
            {
                "role": "assistant",
                "content": "Good catch. A quote-aware parser needs to track whether we're inside quotes: ...",
            },
            {
                "role": "user",
                "content": pick(
                    rng,
                    (
                        "Now handle escaped quotes and newlines inside fields, and add tests.",
                        "Make it stream large files line by line and report malformed rows with line numbers.",
                    ),
                ),
            },
        ]
    }


def _data_analysis(rng: Random) -> Row:
    return {
        "prompt": (
            f"Here is a CSV:\n\n{csv_table(rng, rng.randint(8, 14))}\n\nCompute the average revenue per unit for each "
            "region, identify the outlier month, and explain what might explain it."
        )
    }


TEMPLATES_4B: tuple[Template, ...] = (
    Template("trains", "word-problem", "4b", 12, False, _trains),
    Template("shopping_chain", "word-problem", "4b", 12, False, _shopping_chain),
    Template("pipes", "word-problem", "4b", 10, True, _pipes),
    Template("code_structure", "code", "4b", 14, False, _code_structure),
    Template("sql", "code", "4b", 6, False, _sql),
    Template("debug", "code", "4b", 10, True, _debug),
    Template("stepwise", "explanation", "4b", 12, False, _stepwise),
    Template("compare", "analysis", "4b", 12, False, _compare),
    Template("chart", "image", "4b", 12, False, _chart),
    Template("two_images", "image", "4b", 8, True, _two_images),
    Template("doc_question", "analysis", "4b", 12, False, _doc_question),
    Template("foreign_reasoning", "non-english", "4b", 10, False, _foreign_reasoning),
    Template("multi_turn_code", "code", "4b", 8, True, _multi_turn_code),
    Template("data_analysis", "analysis", "4b", 10, True, _data_analysis),
)
