"""Templates labeled 0.8b: chit-chat, short facts, one-sentence rewrites and translations, one-line
extraction, simple questions about one picture."""

from __future__ import annotations

from random import Random
from typing import Any

from deployments.router.seed.fillers import ANIMALS, COUNTRIES, HUMAN_LANGUAGES, OBJECTS, PEOPLE, pick
from deployments.router.seed.template import Template

Row = dict[str, Any]


def _greeting(rng: Random) -> Row:
    opener = pick(rng, ("Hi", "Hey", "Hello", "Good morning", "Hey there", "Hiya", "Evening"))
    rest = pick(
        rng,
        (
            "how's it going?",
            "how are you today?",
            "what's up?",
            "hope your day is going well!",
            "just saying hello.",
            "long week, huh?",
            "got a minute to chat?",
            "nice to meet you!",
        ),
    )
    return {"prompt": f"{opener}! {rest}"}


def _feelings(rng: Random) -> Row:
    mood = pick(rng, ("tired", "a bit bored", "happy", "nervous", "sleepy", "cheerful", "restless"))
    ask = pick(
        rng,
        (
            "Say something nice?",
            "Any quick tip to relax?",
            "Cheer me up with one line.",
            "What should I do for five minutes?",
            "Tell me something fun.",
        ),
    )
    return {"prompt": f"I'm feeling {mood} today. {ask}"}


def _joke(rng: Random) -> Row:
    subject = pick(rng, (*ANIMALS, *OBJECTS))
    return {
        "prompt": pick(
            rng,
            (
                f"Tell me a short joke about a {subject}.",
                f"Got a pun about a {subject}?",
                f"Make me laugh: one-liner about {subject}s.",
                f"Knock knock joke with a {subject}, please!",
            ),
        )
    }


def _capital(rng: Random) -> Row:
    country = pick(rng, COUNTRIES)
    return {
        "prompt": pick(
            rng,
            (
                f"What is the capital of {country}?",
                f"capital of {country}?",
                f"Which city is the capital of {country}?",
                f"Quick one: {country}'s capital?",
            ),
        )
    }


def _small_fact(rng: Random) -> Row:
    animal = pick(rng, ANIMALS)
    return {
        "prompt": pick(
            rng,
            (
                f"How many legs does a {animal} have?",
                "How many minutes are in an hour?",
                "How many days are in a leap year?",
                f"What sound does a {animal} make?",
                "What is the boiling point of water in Celsius?",
                f"Is a {animal} a mammal?",
                "What is the opposite of 'ancient'?",
                "How many continents are there?",
                f"What do {animal}s usually eat?",
                "Which planet is closest to the sun?",
            ),
        )
    }


def _define(rng: Random) -> Row:
    word = pick(
        rng,
        ("serendipity", "ubiquitous", "candid", "frugal", "meander", "brisk", "gist", "lenient", "novice"),
    )
    return {
        "prompt": pick(
            rng,
            (
                f"Define '{word}' in one sentence.",
                f"What does {word} mean?",
                f"Give me a synonym for {word}.",
            ),
        )
    }


def _grammar(rng: Random) -> Row:
    person = pick(rng, PEOPLE)
    bad = pick(
        rng,
        (
            f"{person} dont like going their on mondays",
            f"me and {person} goes to the park yesterday",
            "their going to be late for the the meeting",
            f"{person} have three cat and one dogs",
            "i could of finished it earlier",
            f"the {pick(rng, OBJECTS)} are broke since last week",
        ),
    )
    return {
        "prompt": pick(
            rng,
            (
                f"Fix the grammar: '{bad}'",
                f"Correct the typos and grammar in: {bad}",
                f"Proofread this: {bad}",
            ),
        )
    }


def _polite(rng: Random) -> Row:
    blunt = pick(
        rng,
        (
            "Send me the file now.",
            "You're late again.",
            "This is wrong, redo it.",
            "Stop calling me.",
            "I need the report today.",
            "Move your car.",
        ),
    )
    return {
        "prompt": pick(
            rng,
            (
                f"Make this more polite: '{blunt}'",
                f"Say this nicer: {blunt}",
                f'Soften this message: "{blunt}"',
            ),
        )
    }


def _translate(rng: Random) -> Row:
    phrase = pick(
        rng,
        (
            "good morning",
            "thank you very much",
            "where is the train station?",
            "I am hungry",
            "see you tomorrow",
            "how much does this cost?",
            "happy birthday",
        ),
    )
    return {"prompt": f"Translate '{phrase}' into {pick(rng, HUMAN_LANGUAGES)}."}


def _extract_email(rng: Random) -> Row:
    person = pick(rng, PEOPLE)
    line = f"Please contact {person} at {person.lower()}.{rng.randint(1, 99)}@example.org for details."
    return {
        "prompt": pick(
            rng, (f"What's the email address in this line: '{line}'", f"Pull out the email: {line}")
        )
    }


def _sentiment(rng: Random) -> Row:
    review = pick(
        rng,
        (
            "Loved it, would buy again!",
            "Broke after two days.",
            "Okay I guess, nothing special.",
            "Fast delivery and great quality.",
            "Terrible customer service.",
            "The soup was cold.",
            "Best haircut I've had in years.",
            "Too small, returning it.",
            "Cute design, kids love it.",
            "Never arrived. Avoid.",
        ),
    )
    return {"prompt": f'Is this review positive or negative? "{review}"'}


def _image_simple(rng: Random) -> Row:
    return {
        "prompt": pick(
            rng,
            (
                "What animal is in this picture?",
                f"What color is the {pick(rng, OBJECTS)} in the photo?",
                "What is this?",
                "Name the object in the image.",
                "Is it day or night in this photo?",
                "How many people are in this picture?",
            ),
        ),
        "images": 1,
    }


def _image_yes_no(rng: Random) -> Row:
    thing = pick(rng, (*ANIMALS, *OBJECTS))
    return {"prompt": f"Is there a {thing} in this image? Answer yes or no.", "images": 1}


def _foreign_chat(rng: Random) -> Row:
    return {
        "prompt": pick(
            rng,
            (
                "Bonjour ! Comment ça va aujourd'hui ?",
                "Hola, ¿qué tal? ¿Cómo estás?",
                "Hallo, wie geht es dir?",
                "Ciao! Come stai oggi?",
                "Olá, tudo bem com você?",
                "你好！今天过得怎么样？",
                "こんにちは！元気ですか？",
                "Привет! Как дела?",
                "Merci beaucoup pour ton aide !",
                "¡Buenos días! Gracias por todo.",
                "Salut, tu fais quoi ce soir ?",
                "Guten Morgen! Schönes Wetter heute, oder?",
                "안녕하세요! 잘 지내세요?",
                "Hej! Hur mår du?",
                "¡Hola! ¿Me cuentas un chiste?",
                "Danke schön, das war nett von dir!",
            ),
        )
    }


TEMPLATES_0_8B: tuple[Template, ...] = (
    Template("greeting", "chit-chat", "0.8b", 16, False, _greeting),
    Template("feelings", "chit-chat", "0.8b", 10, True, _feelings),
    Template("joke", "chit-chat", "0.8b", 10, False, _joke),
    Template("capital", "short-fact", "0.8b", 12, False, _capital),
    Template("small_fact", "short-fact", "0.8b", 14, False, _small_fact),
    Template("define", "short-fact", "0.8b", 9, True, _define),
    Template("grammar", "rewriting", "0.8b", 12, False, _grammar),
    Template("polite", "rewriting", "0.8b", 8, True, _polite),
    Template("translate_phrase", "rewriting", "0.8b", 10, False, _translate),
    Template("extract_email", "extraction", "0.8b", 8, False, _extract_email),
    Template("sentiment", "extraction", "0.8b", 8, True, _sentiment),
    Template("image_simple", "image", "0.8b", 14, False, _image_simple),
    Template("image_yes_no", "image", "0.8b", 8, True, _image_yes_no),
    Template("foreign_chat", "chit-chat", "0.8b", 12, False, _foreign_chat),
)
