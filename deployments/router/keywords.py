"""Keyword tables of the transparent features: which words and phrases signal what.

Each word belongs to one family, so extraction does one dictionary lookup per word. Phrases are
matched as substrings of the lowercased text. Lists are space-separated strings for readability.
"""

# ruff: noqa: SIM905

from __future__ import annotations

FAMILY_WORDS: dict[str, tuple[str, ...]] = {
    "math": tuple(
        (
            "equation equations solve solving integral integrals integrate derivative derivatives "
            "differentiate probability probabilities polynomial polynomials matrix matrices "
            "eigenvalue eigenvalues prime primes divisible divides divisor divisors modulo mod sqrt "
            "logarithm fraction fractions percent percentage ratio algebra algebraic geometry "
            "triangle triangles circle radius area perimeter volume angle angles vector vectors limit "
            "series factorial combinatorics gcd lcm inequality inequalities integer integers digits "
            "digit expected variance calculate compute exponent quadratic cubic subset subsets "
            "permutation permutations"
        ).split()
    ),
    "code": tuple(
        (
            "python javascript typescript java rust golang sql postgres postgresql mysql sqlite "
            "mongodb redis bash shell kotlin swift cpp function functions class classes method "
            "implement implementation debug bug bugs compile compiler "
            "exception stacktrace traceback api endpoint regex algorithm algorithms complexity "
            "recursion recursive refactor unittest pytest database schema script library async await "
            "thread threads concurrency concurrent kubernetes docker html css code snippet program "
            "runtime lock mutex cache query queries join joins table tables index"
        ).split()
    ),
    "multi_step": tuple(
        (
            "then afterwards afterward next finally first second third each every total remaining "
            "altogether subsequently meanwhile overall combined respectively"
        ).split()
    ),
    "reasoning": tuple(
        (
            "why explain explanation analyze analyse analysis compare comparison contrast evaluate "
            "assess critique argue justify implications tradeoffs tradeoff pros cons recommend "
            "recommendation strategy strategies design architecture reasoning infer deduce hypothesis "
            "hypotheses consequences risks discuss weigh alternatives diagnose causal"
        ).split()
    ),
    "proof": tuple(
        (
            "prove proves proof proofs lemma theorem rigorous rigorously qed induction contradiction "
            "derive derivation"
        ).split()
    ),
    "competition": tuple(("olympiad aime imo usamo amc putnam lattice").split()),
    "simple": tuple(
        (
            "hi hello hey thanks thank bye goodbye joke pun weather translate spell spelling typo "
            "typos grammar proofread synonym synonyms antonym briefly quick capital define lol cheers "
            "bonjour salut hola hallo ciao olá hej привет merci gracias danke grazie obrigado"
        ).split()
    ),
}

# Substrings of the lowercased text, including the other languages' words for the same requests.
PHRASES: dict[str, tuple[str, ...]] = {
    "proof": (
        "show that",
        "demonstrate that",
        "from first principles",
        "démontrer",
        "démontrez",
        "prouver",
        "beweisen",
        "beweise",
        "demuestra",
        "demostrar",
        "dimostra",
        "证明",
        "証明",
    ),
    "step_by_step": (
        "step by step",
        "step-by-step",
        "show your work",
        "show all work",
        "walk me through",
        "each step",
        "every step",
        "intermediate",
        "show the steps",
        "chain of thought",
        "étape",
        "paso a paso",
        "schritt",
        "步骤",
        "ステップ",
    ),
    "reasoning": (
        "trade-off",
        "trade off",
        "pros and cons",
        "root cause",
        "why it happens",
    ),
    "competition": (
        "find all",
        "determine all",
        "positive integers",
        "how many integers",
        "for all real",
        "largest possible",
        "smallest possible",
        "integer solutions",
        "ordered pairs",
        "ordered triples",
        # The vocabulary of counting, number-theory, geometry and extremal problems; counted only in
        # mathematical text (features.py), so "such that" or "the maximum of" in prose stays quiet.
        "find the number of",
        "compute the number of",
        "determine the number of",
        "number of ways",
        "how many ways",
        "expected number",
        "expected value",
        "probability that",
        "perfect square",
        "perfect cube",
        "such that",
        "for which",
        "relatively prime",
        "coprime",
        "angle bisector",
        "circumcircle",
        "circumradius",
        "inradius",
        "incircle",
        "inscribed in",
        "tangent to",
        "subsets",
        "permutations of",
        "sum of all",
        "product of all",
        "least positive",
        "smallest positive",
        "greatest integer",
        "largest integer",
        "minimum value",
        "maximum value",
        "minimum of",
        "maximum of",
    ),
    "multi_step": (
        "after that",
        "how much more",
        "how many more",
        "in total",
        "how long",
        "how far",
        "at what time",
        "how much change",
        "later",
        "per hour",
        "km/h",
        "half an hour",
    ),
    # Asks to build or design a whole system, however briefly put: the artefact's scope, scale and
    # guarantees ("a compiler", "from scratch", "fault-tolerant", "100k writes per second").
    "systems": (
        "compiler",
        "interpreter",
        "garbage collector",
        "query planner",
        "operating system",
        "file system",
        "filesystem",
        "storage engine",
        "database engine",
        "search engine",
        "container runtime",
        "virtual machine",
        "emulator",
        "network stack",
        "load balancer",
        "rate limiter",
        "text editor",
        "http server",
        "web server",
        "http/2",
        "from sockets up",
        "os kernel",
        "kernel module",
        "memory allocator",
        "key-value store",
        "key value store",
        "tcp stack",
        "dns resolver",
        "ray tracer",
        "game engine",
        "browser engine",
        "regex engine",
        "bytecode",
        "write-ahead log",
        "b-tree",
        "lsm tree",
        "distributed",
        "lock-free",
        "consensus",
        "paxos",
        "crdt",
        "from scratch",
        "production quality",
        "production-quality",
        "production-ready",
        "production-grade",
        "fault-toleran",
        "fault toleran",
        "failure modes",
        "high availability",
        "highly available",
        "sharding",
        "partitioning",
        "per second",
        "daily users",
        "million users",
        "p99",
        "at scale",
        "scalab",
        "end-to-end",
        "desde cero",
        "von grund auf",
        "de zéro",
        "distribuido",
        "distribué",
        "verteilt",
        "コンパイラ",
        "ロックフリー",
        "キーバリュー",
        "ゼロから",
        "从零开始",
        "从头开始",
        "インタプリタ",
        "分散",
        "データベース",
        "编译器",
        "解释器",
        "分布式",
        "数据库",
    ),
    # Riddles and logic puzzles: short to ask, and answered by reasoning rather than recall.
    "puzzle": (
        "riddle",
        "puzzle",
        "brain teaser",
        "brainteaser",
        "trick question",
        # With the question mark: "what am I doing wrong?" is not a riddle.
        "what am i?",
        "what am i,",
        "who am i?",
        "knave",
        # Stems, so that "always lie" and "always lies", "always tell" and "always tells" all count.
        "always lie",
        "always tell",
        "tells the truth",
        "telling the truth",
        "who is lying",
        "truth-teller",
        "liar",
        "siempre miente",
        "siempre dice la verdad",
        "lügt immer",
        "sagt immer die wahrheit",
        "ment toujours",
        "dit toujours la vérité",
        # Sequence, odd-one-out, inference and lateral-thinking questions, as aptitude tests ask them.
        "what comes next in",
        "what number comes next",
        "next number in",
        "next term in",
        "next term of",
        "missing number",
        "odd one out",
        "complete the sequence",
        "complete the series",
        "does it follow",
        "necessarily true",
        "true, false or uncertain",
        "true, false, or uncertain",
        "how is this possible",
        "how is that possible",
        "how can this be",
        "counterfeit",
        "weighings",
        "balance scale",
        "adivinanza",
        "acertijo",
        "quién soy",
        "devinette",
        "énigme",
        "qui suis-je",
        "rätsel",
        "wer bin ich",
        "indovinello",
        "enigma",
        "なぞなぞ",
        "パズル",
        "谜语",
        "谜题",
        "脑筋急转弯",
        "逻辑题",
        "загадк",
        "수수께끼",
    ),
    # Asks for depth rather than a quick answer.
    "depth": (
        "in detail",
        "in depth",
        "in-depth",
        "detailed",
        "thorough",
        "comprehensive",
        "exhaustive",
        "nuanced",
        "rigorous",
        "second-order",
        "ausführlich",
        "im detail",
        "en profondeur",
        "en détail",
        "détaillé",
        "en detalle",
        "detallad",
        "a fondo",
        "in dettaglio",
        "dettagliat",
        "em detalhe",
        "detalhad",
        "подробн",
        "详细",
        "詳しく",
        "詳細",
        "자세히",
    ),
    "simple": (
        "how are you",
        "one word",
        "one sentence",
        "yes or no",
        "good morning",
        "what's up",
        "你好",
        "こんにちは",
        "안녕하세요",
        "元気",
        "怎么样",
    ),
}

# Stems of the verbs that ask for the top of Bloom's taxonomy (analyse, evaluate, create) in the
# languages above: what makes "Reconstruct Hume's argument and defend a reply" or "Build a compiler"
# hard is the work it asks for, not its length or topic. Matched at the start of a word, so
# inflections count ("analiza", "analysiere", "justifie"); a word that FAMILY_WORDS lists counts
# there only. Stems that ordinary requests use in other senses ("model", "identify", "trade",
# "argue") are left out.
HIGHER_ORDER_STEMS: tuple[str, ...] = tuple(
    (
        "analy anali critic crític critiq kritis evalu evalú évalu valut avali assess justif defen "
        "reconstru design diseñ conçoi concev entwirf entwerf build construi construy implement "
        "implém deriv dériv prove prouv optim quantif compar weigh contrast synthes recommend propos "
        "formulat bewert begründ beweis démontr demostr demuestr dimostr"
    ).split()
)
# Words that join the parts of a request ("cover X, Y and Z"), per language.
CONJUNCTIONS: tuple[str, ...] = (", ", "; ", " and ", " y ", " et ", " und ")

# Proof phrases that ordinary prose uses as well; they count only in mathematical text.
GATED_PROOF_PHRASES: tuple[str, ...] = ("show that", "demonstrate that", "from first principles")

# Code words that are ordinary English too ("the function of the liver", "my class", "a table for
# two", "lock the door"); they count only in text that is about code (features.py).
GATED_CODE_WORDS = frozenset(
    (
        "function functions class classes method table tables index lock cache query queries join "
        "joins program library script thread threads schema code bug bugs implement implementation"
    ).split()
)

# Common function words and greetings of languages the keyword families do not cover (es, fr, de, it,
# pt, nl); English homographs (pour, son, met, con, per, die, los, las, von, com, ...) are left out.
FOREIGN_WORDS = frozenset(
    (
        "ao au auch auf aux avec bitte bonjour cette che ciao como cómo danke dans das della dem "
        "der des du een ein eine el es est está für gli gracias grazie het hola il ist le les "
        "mais merci mit muy más nella nicht niet nous não obrigado ook para pas pela pelo pero "
        "por que questo qui qué sich sono sont sur también uma una und une unos va voor vous "
        "warum wie zijn zu ça"
    ).split()
)
