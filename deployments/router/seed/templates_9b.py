"""Templates labeled 9b: proofs and derivations, competition math, long analysis of reports and
contracts, system-scale code and code review, multi-image reasoning, deep multi-turn analysis."""

from __future__ import annotations

from random import Random
from typing import Any

from deployments.router.seed.fillers import (
    COMPANIES,
    LANGUAGES,
    PRODUCTS,
    REGIONS,
    contract,
    paragraph,
    pick,
    report,
)
from deployments.router.seed.template import Template

Row = dict[str, Any]


_PROOF_STATEMENTS = (
    "n^3 - n is divisible by 6",
    "the sum of the first n odd numbers is n^2",
    "2^n > n^2 for every n >= 5",
    "sqrt({k}) is irrational",
    "there are infinitely many primes congruent to 3 mod 4",
    "every tree with n vertices has exactly n - 1 edges",
    "{k}^n - 1 is divisible by {k1} for every n >= 1",
    "the product of any {k} consecutive integers is divisible by {k}!",
    "a graph is bipartite if and only if it has no odd cycle",
    "between any two real numbers there is a rational number",
)


def _proof(rng: Random) -> Row:
    k = rng.choice((2, 3, 5, 6, 7))
    statement = pick(rng, _PROOF_STATEMENTS).format(k=k, k1=k - 1)
    return {
        "prompt": pick(
            rng,
            (
                f"Prove that {statement}.",
                f"Give a rigorous proof that {statement}.",
                f"Show that {statement}. Justify every step.",
            ),
        )
    }


def _proof_analysis(rng: Random) -> Row:
    a = rng.randint(2, 9)
    return {
        "prompt": pick(
            rng,
            (
                f"Let x_1 = {a} and x_(n+1) = sqrt({a} + x_n). Prove the sequence converges and find its limit.",
                f"Prove that f(x) = x^{a} is uniformly continuous on [0, 1] but not on the whole real line.",
                "Prove that a continuous function on a closed bounded interval attains its maximum.",
            ),
        )
    }


def _competition(rng: Random) -> Row:
    n, m = rng.randint(10, 60), rng.choice((7, 9, 11, 13))
    return {
        "prompt": pick(
            rng,
            (
                f"Find all positive integers n such that n^2 + {n} is divisible by n + {m}.",
                f"How many ordered triples (a, b, c) of positive integers satisfy a + b + c = {n} and a < b < c?",
                f"Determine the maximum value of xy + yz + zx given x + y + z = {m} and x, y, z >= 0.",
                f"Find the remainder when {m}^{n * 10} is divided by {n + 3}.",
                f"Find all real numbers x such that floor(x) * x = {n}.",
                f"How many lattice points lie strictly inside the triangle with vertices (0,0), ({n},0) and (0,{m})?",
            ),
        )
    }


def _geometry(rng: Random) -> Row:
    a, b, c = rng.randint(5, 9), rng.randint(10, 13), rng.randint(7, 12)
    return {
        "prompt": (
            f"In triangle ABC, AB = {a}, BC = {b} and CA = {c}. The incircle touches BC at D and the "
            "A-excircle touches BC at E. Find DE, and the distance from A to the midpoint of DE."
        )
    }


def _long_report(rng: Random) -> Row:
    company = pick(rng, COMPANIES)
    ask = pick(
        rng,
        (
            f"Analyze {company}'s position from this report: identify the three biggest risks, weigh the alternatives, and recommend a strategy for the next two years with justification.",
            "Write a critical assessment of this report for the board: which claims are supported by the numbers, which are not, and what should management be asked?",
            "Evaluate whether the company should expand into a new region or consolidate. Argue both sides and conclude.",
        ),
    )
    return {"prompt": f"{company} annual report (excerpt)\n\n{report(rng, rng.randint(6, 12))}\n\n{ask}"}


def _contract_review(rng: Random) -> Row:
    return {
        "prompt": (
            f"{contract(rng, rng.randint(10, 16))}\n\nIdentify clauses that conflict with each other, explain the "
            "implications for each party, and propose revised wording that resolves each conflict."
        )
    }


def _system_code(rng: Random) -> Row:
    lang = pick(rng, LANGUAGES)
    system = pick(
        rng,
        (
            "a distributed rate limiter shared by many API servers",
            "a write-ahead log with crash recovery",
            "a job scheduler with retries, priorities and deadlines",
            "an in-memory key-value store with snapshots and TTLs",
            "a consistent-hashing load balancer that rebalances when nodes join or leave",
            "a collaborative text editor backend using CRDTs",
        ),
    )
    return {
        "prompt": (
            f"Design and implement {system} in {lang}. Requirements: thread-safe, handles node failures, "
            "observable with metrics, and tested. Explain the concurrency guarantees, the failure modes and "
            "the trade-offs of your design."
        )
    }


def _hard_algorithm(rng: Random) -> Row:
    problem = pick(
        rng,
        (
            "counting inversions in an array",
            "the longest increasing subsequence",
            "finding the closest pair of points in the plane",
            "the number of distinct substrings of a string",
            "the minimum number of intervals to remove so none overlap",
        ),
    )
    return {
        "prompt": f"Give an O(n log n) algorithm for {problem}, prove its correctness and its running time, and implement it in {pick(rng, LANGUAGES)}."
    }


def _multi_image(rng: Random) -> Row:
    count = rng.randint(3, 4)
    thing = pick(
        rng,
        (
            "floor plans of apartments",
            "monthly sales charts",
            "pages of a lab notebook",
            "maps of a hiking route",
        ),
    )
    return {
        "prompt": (
            f"These {count} images are {thing}. Using all of them together, work out which option is best "
            "under a fixed budget, show your reasoning step by step, and point out any inconsistencies between the images."
        ),
        "images": count,
    }


def _derivation(rng: Random) -> Row:
    topic = pick(
        rng,
        (
            "the Black-Scholes formula",
            "the ideal rocket equation",
            "the formula for the variance of a sum of dependent variables",
            "the time complexity of quicksort in the average case",
            "Bayes' theorem for continuous variables",
            "the escape velocity of a planet",
            "the normal equations of linear regression",
            "the Cramer-Rao lower bound",
            "the wave equation for a vibrating string",
            "the closed form of the Fibonacci numbers",
        ),
    )
    ask = pick(
        rng,
        (
            "Derive {t} from first principles, state every assumption, and discuss when it breaks down.",
            "Give a full derivation of {t}, explaining each step rigorously, then analyze its limitations.",
        ),
    )
    return {"prompt": ask.format(t=topic)}


def _foreign_proof(rng: Random) -> Row:
    k = rng.choice((3, 5, 7))
    return {
        "prompt": pick(
            rng,
            (
                f"Démontrer que pour tout entier n, n^{k} - n est divisible par {k}. Justifier chaque étape.",
                f"Beweisen Sie, dass es unendlich viele Primzahlen gibt, und verallgemeinern Sie den Beweis auf Primzahlen der Form {k - 1}k + 1, soweit möglich.",
                f"Demuestra que la suma de los cubos de los primeros n números naturales es el cuadrado de su suma, para n = {k} y en general.",
                "证明：任意一个大于1的整数都可以唯一地分解为素数的乘积。请给出严格的证明。",
            ),
        )
    }


def _deep_multi_turn(rng: Random) -> Row:
    product = pick(rng, PRODUCTS)
    return {
        "messages": [
            {"role": "system", "content": "You are a careful analyst."},
            {
                "role": "user",
                "content": f"We sell {product} in {pick(rng, REGIONS)}. Churn went from 4% to 9% in a year.",
            },
            {
                "role": "assistant",
                "content": "That is a large jump. Do you know when it started and which customers left?",
            },
            {
                "role": "user",
                "content": f"It started after a price rise of {rng.randint(5, 20)}% and mostly small accounts left. {paragraph(rng, 4)}",
            },
            {
                "role": "assistant",
                "content": "Thanks. Price sensitivity among small accounts is one hypothesis; there may be others.",
            },
            {
                "role": "user",
                "content": "Build a causal analysis: list competing hypotheses, what data would distinguish them, "
                "estimate the revenue impact of each scenario, and recommend an experiment design.",
            },
        ]
    }


def _code_review(rng: Random) -> Row:
    body = "\n".join(
        f"    def handle_{i}(self, request):\n        self.cache[request.key] = request.value\n"
        f"        if len(self.cache) > {rng.randint(50, 500)}:\n            self.cache.pop(next(iter(self.cache)))\n"
        f"        return self.db.execute('SELECT * FROM t{i} WHERE id = ' + request.id)"
        for i in range(rng.randint(6, 12))
    )
    return {
        "prompt": (
            f"```python\nclass Service:\n    def __init__(self, db):\n        self.db = db\n        self.cache = {{}}\n\n{body}\n```\n\n"
            "This service is called from many threads. Review it for concurrency bugs, security issues and "
            "performance problems, and propose a refactoring with code."
        )
    }


TEMPLATES_9B: tuple[Template, ...] = (
    Template("proof", "proof", "9b", 16, False, _proof),
    Template("proof_analysis", "proof", "9b", 8, True, _proof_analysis),
    Template("competition", "competition-math", "9b", 16, False, _competition),
    Template("geometry", "competition-math", "9b", 8, True, _geometry),
    Template("long_report", "long-analysis", "9b", 16, False, _long_report),
    Template("contract_review", "long-analysis", "9b", 8, True, _contract_review),
    Template("system_code", "code", "9b", 14, False, _system_code),
    Template("hard_algorithm", "code", "9b", 8, True, _hard_algorithm),
    Template("multi_image", "image", "9b", 10, False, _multi_image),
    Template("derivation", "proof", "9b", 12, False, _derivation),
    Template("foreign_proof", "non-english", "9b", 8, False, _foreign_proof),
    Template("deep_multi_turn", "long-analysis", "9b", 10, False, _deep_multi_turn),
    Template("code_review", "code", "9b", 8, True, _code_review),
)
