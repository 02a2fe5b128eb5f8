"""Fillers for the seed-set templates: names, places, objects and generated documents.

All text here was written for this project; nothing is taken from a public dataset.
"""

from __future__ import annotations

from random import Random

PEOPLE = (
    "Maya",
    "Tom",
    "Priya",
    "Lucas",
    "Aisha",
    "Kenji",
    "Sofia",
    "Omar",
    "Elena",
    "Ben",
    "Chloe",
    "Ravi",
    "Lena",
    "Diego",
    "Hana",
    "Jonas",
    "Zara",
    "Felix",
    "Amara",
    "Nico",
)
COUNTRIES = (
    "France",
    "Japan",
    "Kenya",
    "Brazil",
    "Canada",
    "Norway",
    "Egypt",
    "Peru",
    "Vietnam",
    "Poland",
    "Chile",
    "Ghana",
    "Portugal",
    "Mongolia",
    "Iceland",
    "Morocco",
    "Thailand",
    "Austria",
    "Nepal",
    "Cuba",
)
CITIES = (
    "Lyon",
    "Osaka",
    "Nairobi",
    "Recife",
    "Calgary",
    "Bergen",
    "Luxor",
    "Cusco",
    "Hue",
    "Gdansk",
    "Valparaiso",
    "Kumasi",
    "Porto",
    "Darkhan",
    "Akureyri",
    "Fez",
    "Chiang Mai",
    "Graz",
    "Pokhara",
)
ANIMALS = (
    "cat",
    "dog",
    "horse",
    "owl",
    "fox",
    "rabbit",
    "parrot",
    "turtle",
    "goat",
    "penguin",
    "deer",
    "duck",
)
OBJECTS = ("bicycle", "umbrella", "teapot", "backpack", "lamp", "guitar", "clock", "kite", "chair", "boat")
COLORS = ("red", "blue", "green", "yellow", "orange", "purple", "black", "white")
ITEMS = ("apples", "marbles", "stickers", "pencils", "cookies", "stamps", "shells", "books", "cards", "eggs")
LANGUAGES = ("Python", "JavaScript", "Go", "Rust", "Java", "TypeScript", "C#", "Kotlin")
HUMAN_LANGUAGES = ("Spanish", "French", "German", "Italian", "Portuguese", "Japanese", "Dutch")
COMPANIES = (
    "Northwind Foods",
    "Bluepeak Logistics",
    "Corvid Analytics",
    "Harbor & Vale",
    "Tessellate Labs",
    "Quillstone Retail",
    "Amberline Energy",
    "Kestrel Health",
    "Lumen Freight",
    "Orchard Systems",
)
PRODUCTS = (
    "subscription boxes",
    "cold-chain trucking",
    "payroll software",
    "solar inverters",
    "clinic booking",
    "garden tools",
)
REGIONS = ("the Nordics", "Southeast Asia", "the US Midwest", "Iberia", "East Africa", "the Andean region")
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday")
TOPICS = (
    "photosynthesis",
    "compound interest",
    "how vaccines work",
    "the water cycle",
    "inflation",
    "how a refrigerator cools",
    "why the sky is blue",
    "how credit scores work",
    "tides",
    "recycling",
)


def pick(rng: Random, options: tuple[str, ...] | list[str]) -> str:
    """One option, uniformly."""
    return options[rng.randrange(len(options))]


_SHORT_SENTENCES = (
    "{person} moved to {city} last spring to work at a small bakery near the harbour.",
    "The {obj} on the shelf was a gift from an aunt who travelled a lot.",
    "Every morning the {animal} waits by the door until someone opens it.",
    "The town council voted to close the old bridge for repairs until autumn.",
    "Volunteers planted {n} trees along the river path over two weekends.",
    "{person} keeps a notebook of every recipe that went wrong and why.",
    "The library now lends tools as well as books, and the drills are always out.",
    "After the storm, the {obj} was found three streets away, barely damaged.",
    "The school added a second bus route because the first one ran {n} minutes late.",
    "Tickets for the summer concert sold out within an hour of going on sale.",
    "{person} and {person2} started a weekly market stall selling {item} from their garden.",
    "The museum in {city} reopened with a new wing dedicated to local crafts.",
)


def paragraph(rng: Random, sentences: int) -> str:
    """A plain everyday paragraph of `sentences` generated sentences."""
    chosen = rng.sample(_SHORT_SENTENCES, k=min(sentences, len(_SHORT_SENTENCES)))
    return " ".join(
        s.format(
            person=pick(rng, PEOPLE),
            person2=pick(rng, PEOPLE),
            city=pick(rng, CITIES),
            obj=pick(rng, OBJECTS),
            animal=pick(rng, ANIMALS),
            n=rng.randint(3, 90),
            item=pick(rng, ITEMS),
        )
        for s in chosen
    )


_REPORT_SENTENCES = (
    "Revenue in {region} grew {pct}% year over year to {money} million, driven mostly by {product}.",
    "Gross margin fell from {pct}% to {pct2}% as fuel and packaging costs rose faster than prices.",
    "The company opened {n} new sites and closed {n2} underperforming ones during the period.",
    "Customer churn in the {product} line reached {pct}%, the highest level in three years.",
    "Management expects the new warehouse in {city} to cut delivery times by {n} hours once fully staffed.",
    "A competitor, {company}, announced prices {pct}% below the market average in {region}.",
    "Regulators in {region} proposed rules that would require audited emissions data from next year.",
    "Headcount rose to {n3} employees, with most hires in engineering and field operations.",
    "The board approved a buyback of up to {money} million, funded from existing cash reserves.",
    "Debt maturing within eighteen months totals {money} million, and refinancing talks have begun.",
    "Two of the five largest customers, together {pct}% of sales, are renegotiating their contracts.",
    "Inventory days increased from {n} to {n2}, tying up working capital ahead of the peak season.",
    "A pilot of dynamic pricing in {city} raised order value by {pct}% but lowered repeat purchases.",
    "Staff turnover in warehouses stayed above {pct}% despite two rounds of wage increases.",
    "The {product} business is profitable on its own but depends on shared logistics costs being allocated away.",
    "Currency movements reduced reported earnings by about {money} million compared with the prior year.",
    "An outage of the ordering platform lasted {n} hours in the third quarter and triggered service credits.",
    "Analysts note that the company's capital spending plan exceeds its operating cash flow for two more years.",
)


def report(rng: Random, paragraphs: int, sentences_per_paragraph: int = 6) -> str:
    """A long business-report-like document, `paragraphs` paragraphs of generated sentences."""
    out = []
    for index in range(paragraphs):
        sentences = [
            rng.choice(_REPORT_SENTENCES).format(
                region=pick(rng, REGIONS),
                pct=rng.randint(2, 38),
                pct2=rng.randint(2, 38),
                money=rng.randint(3, 950),
                product=pick(rng, PRODUCTS),
                n=rng.randint(2, 40),
                n2=rng.randint(2, 40),
                n3=rng.randint(300, 9000),
                city=pick(rng, CITIES),
                company=pick(rng, COMPANIES),
            )
            for _ in range(sentences_per_paragraph)
        ]
        out.append(f"Section {index + 1}. " + " ".join(sentences))
    return "\n\n".join(out)


_CLAUSES = (
    "The Supplier shall deliver the Goods within {n} business days of each purchase order.",
    "Either party may terminate this Agreement with {n} days' written notice for convenience.",
    "The Customer shall pay each invoice within {n} days; late amounts accrue interest at {pct}% per month.",
    "Liability of either party is capped at the fees paid in the {n} months before the claim.",
    "The Supplier may subcontract any obligation without the Customer's consent.",
    "No obligation under this Agreement may be subcontracted without prior written consent.",
    "All intellectual property created in performing the services vests in the Customer on creation.",
    "The Supplier retains ownership of all tools, templates and know-how used to perform the services.",
    "This Agreement renews automatically for successive {n}-month terms unless either party objects.",
    "Any renewal requires a signed amendment agreed by both parties.",
    "Confidentiality obligations survive termination for {n} years.",
    "The Customer may audit the Supplier's records once per calendar year on {n} days' notice.",
    "Disputes shall be resolved by arbitration seated in {city}.",
    "Each party submits to the exclusive jurisdiction of the courts of {city}.",
    "Service credits are the Customer's sole remedy for any failure to meet the service levels.",
    "The Customer may claim damages for any breach of the service levels in addition to service credits.",
)


def contract(rng: Random, clauses: int) -> str:
    """A contract-like text of numbered clauses, some of which contradict each other."""
    chosen = rng.sample(_CLAUSES, k=min(clauses, len(_CLAUSES)))
    return "\n".join(
        f"{i + 1}. " + c.format(n=rng.randint(2, 60), pct=rng.randint(1, 5), city=pick(rng, CITIES))
        for i, c in enumerate(chosen)
    )


def csv_table(rng: Random, rows: int) -> str:
    """A small CSV of sales by region and month."""
    lines = ["region,month,units,revenue"]
    for _ in range(rows):
        units = rng.randint(20, 900)
        lines.append(f"{pick(rng, REGIONS)},{rng.randint(1, 12)},{units},{units * rng.randint(8, 60)}")
    return "\n".join(lines)
