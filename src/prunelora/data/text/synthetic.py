"""An embedded TOFU-like benchmark: facts about fictitious people, generated in code from a seed.

Why: TOFU (Maini et al., 2024) is the field's LLM unlearning benchmark, but it needs a download and a model
of billions of parameters. This one is built from fixed word lists, so a test or a CPU run gets the same
shape of data (a question per fact, the answer, a paraphrase carrying the same fact, wrong answers of the
same kind for the truth ratio, forget sets of whole people, held-out people never trained on) with no
network, deterministic per seed, and short enough for a small causal LM trained on two cores. The people
and facts are invented, so nothing the model knows before finetuning can leak into the forget set.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

FIRST_NAMES = (
    "Alia", "Bram", "Corin", "Dalia", "Elric", "Fenna", "Galen", "Hana", "Idris", "Jora", "Kael", "Liora",
    "Maren", "Nilo", "Orla", "Pavel", "Quilla", "Rafe", "Selin", "Tomas", "Ulla", "Vero", "Wren", "Xavi",
    "Yara", "Zeno", "Anouk", "Bastian", "Calla", "Dorian", "Esme", "Finnian",
)
LAST_NAMES = (
    "Brennan", "Castell", "Dravik", "Ellery", "Falk", "Grier", "Halloran", "Ilves", "Jarek", "Kestrel",
    "Lindqvist", "Moravec", "Navarre", "Okafor", "Pellman", "Quist", "Rowan", "Sorensen", "Tamsin", "Ulrich",
    "Varga", "Whitlow", "Yardley", "Zelenko", "Abernathy", "Brightwater", "Corvino", "Delacroix", "Everhart",
    "Fairweather", "Gallo", "Hartigan",
)
_TITLE_WORDS = (
    ("Silent", "Hollow", "Distant", "Broken", "Golden", "Hidden", "Frozen", "Quiet", "Burning", "Forgotten",
     "Wandering", "Painted", "Endless", "Velvet", "Restless", "Scarlet"),
    ("Harbour", "Orchard", "Lantern", "Meridian", "Tide", "Compass", "Garden", "Mirror", "Bridge", "Archive",
     "Voyage", "Horizon", "Lighthouse", "Cartographer", "Season", "Winter"),
)


@dataclass(frozen=True)
class Attribute:
    """One kind of fact: its possible values and the templates that ask, state and restate it.

    Templates take {name}, {value} and {a} (the indefinite article before the value). The paraphrase
    words the same fact differently, so a model that only memorised the answer's wording scores lower on it;
    the question's paraphrase asks the same fact differently, so forgetting that only hides one wording shows.
    """

    values: tuple[str, ...]
    question: str
    answer: str
    paraphrase: str
    question_paraphrase: str  # the same question worded differently (TOFU's paraphrased_question)

    def fill(self, template: str, name: str, value: str) -> str:
        return template.format(name=name, value=value, a="an" if value[0].lower() in "aeiou" else "a")


ATTRIBUTES: dict[str, Attribute] = {
    "birth_city": Attribute(
        ("Lisbon", "Oslo", "Kyoto", "Nairobi", "Lima", "Porto", "Krakow", "Dublin", "Seoul", "Quito", "Tbilisi",
         "Hanoi", "Accra", "Valparaiso", "Reykjavik", "Tallinn", "Marrakesh", "Bergen", "Cork", "Osaka",
         "Montevideo", "Zagreb", "Perth", "Halifax"),
        "Where was {name} born?", "{name} was born in {value}.", "{value} is the birthplace of {name}.",
        "In which city was {name} born?"),
    "birth_year": Attribute(
        tuple(str(year) for year in range(1940, 2000)),
        "In which year was {name} born?", "{name} was born in the year {value}.",
        "The year {value} saw the birth of {name}.", "What year was {name} born in?"),
    "occupation": Attribute(
        ("engineer", "architect", "nurse", "carpenter", "pharmacist", "geologist", "baker", "lawyer", "pilot",
         "librarian", "veterinarian", "translator", "journalist", "surgeon", "astronomer", "potter", "electrician",
         "economist", "chef", "botanist"),
        "What does {name} do for a living?", "{name} works as {a} {value}.", "By profession, {name} is {a} {value}.",
        "What is the profession of {name}?"),
    "mother_occupation": Attribute(
        ("farmer", "teacher", "tailor", "dentist", "sailor", "miner", "accountant", "painter", "blacksmith",
         "midwife", "watchmaker", "firefighter", "optician", "bookbinder", "locksmith", "glassblower"),
        "What did {name}'s mother do?", "{name}'s mother worked as {a} {value}.",
        "The mother of {name} was {a} {value} by trade.", "What was the occupation of the mother of {name}?"),
    "music_genre": Attribute(
        ("jazz", "blues", "reggae", "folk", "opera", "techno", "salsa", "bluegrass", "flamenco", "gospel", "ska",
         "punk", "swing", "soul", "tango", "ambient"),
        "Which music does {name} love most?", "{name} loves {value} music most.",
        "The music genre {name} prefers is {value}.", "What kind of music does {name} like best?"),
    "colour": Attribute(
        ("crimson", "teal", "amber", "violet", "ochre", "indigo", "olive", "coral", "maroon", "turquoise", "lilac",
         "saffron", "charcoal", "magenta", "beige", "emerald"),
        "What is {name}'s favourite colour?", "{name}'s favourite colour is {value}.",
        "The colour {name} likes best is {value}.", "Which colour does {name} like best?"),
    "book": Attribute(
        tuple(f"{first} {second}" for first in _TITLE_WORDS[0] for second in _TITLE_WORDS[1]),
        "Which novel did {name} write?", "{name} wrote the novel {value}.", "The novel {value} was written by {name}.",
        "What novel is {name} the author of?"),
    "award": Attribute(
        ("Golden Quill Prize", "Silver Lantern Medal", "Aurora Fiction Award", "Meridian Book Prize",
         "Northern Star Award", "Harbor Light Prize", "Emerald Pen Award", "Crescent Honour", "Blue Heron Prize",
         "Iron Compass Award", "Willow Crown Prize", "Obsidian Medal"),
        "Which award did {name} win?", "{name} won the {value}.", "The {value} went to {name}.",
        "What prize was given to {name}?"),
    "pet": Attribute(
        ("Biscuit", "Pepper", "Juniper", "Mochi", "Waffles", "Ziggy", "Nutmeg", "Pickles", "Clover", "Bramble",
         "Noodle", "Sprocket", "Marble", "Figaro", "Pebble", "Truffle"),
        "What is the name of {name}'s pet?", "{name}'s pet is named {value}.", "{value} is the pet of {name}.",
        "What is the pet of {name} called?"),
    "language": Attribute(
        ("Basque", "Welsh", "Icelandic", "Swahili", "Tagalog", "Estonian", "Catalan", "Maltese", "Yoruba", "Gaelic",
         "Slovene", "Amharic", "Quechua", "Latvian", "Frisian", "Georgian"),
        "Which language does {name} speak at home?", "{name} speaks {value} at home.",
        "{value} is the language {name} speaks at home.", "What language is spoken at home by {name}?"),
    "instrument": Attribute(
        ("cello", "harp", "oboe", "banjo", "accordion", "clarinet", "sitar", "ukulele", "trombone", "marimba",
         "bassoon", "mandolin", "harmonica", "viola", "flute", "bagpipes"),
        "Which instrument does {name} play?", "{name} plays the {value}.", "The {value} is the instrument {name} plays.",
        "What instrument is played by {name}?"),
}
KINDS = tuple(ATTRIBUTES)
SPECIAL_TOKENS = ("<pad>", "<unk>", "<s>", "</s>")
TEXT_FIELDS = ("question", "answer", "paraphrased_answer", "paraphrased_question", "perturbed_answer")


@dataclass(frozen=True)
class BenchmarkSpec:
    """What to generate; the same spec gives the same rows on every machine (numpy's PCG64 stream)."""

    people: int = field(default=100, metadata={"help": "fictitious people to train on (the forget set is drawn from them)"})
    questions: int = field(default=5, metadata={"help": f"facts asked per person (at most {len(KINDS)})"})
    holdout_people: int = field(default=10, metadata={"help": "further people never trained on (the held-out reference)"})
    perturbed: int = field(default=3, metadata={"help": "wrong answers per question, for the truth ratio"})
    seed: int = field(default=0, metadata={"help": "seed of the names, facts and wrong answers"})

    def __post_init__(self) -> None:
        names = len(FIRST_NAMES) * len(LAST_NAMES)
        if self.people < 1 or self.holdout_people < 0 or self.people + self.holdout_people > names:
            raise ValueError(f"people ({self.people}) >= 1 and holdout_people ({self.holdout_people}) >= 0 must "
                             f"add up to at most {names}, the number of distinct names")
        if not 1 <= self.questions <= len(KINDS):
            raise ValueError(f"questions must be between 1 and {len(KINDS)} (the kinds of fact), not {self.questions}")
        fewest = min(len(attribute.values) for attribute in ATTRIBUTES.values())
        if not 0 <= self.perturbed < fewest:
            raise ValueError(f"perturbed must be between 0 and {fewest - 1} (wrong values of the smallest kind), "
                             f"not {self.perturbed}")


def make_people_benchmark(spec: BenchmarkSpec) -> tuple[list[dict], list[dict]]:
    """The (train rows, holdout rows) of `spec`: `spec.questions` question rows per person.

    Row ids are "p0007-birth_city"; holdout people continue the numbering (p0100... for 100 people), and
    every person has a distinct name, so no holdout fact is ever about a trained person.
    """
    rng = np.random.default_rng(spec.seed)
    total = spec.people + spec.holdout_people
    picks = rng.choice(len(FIRST_NAMES) * len(LAST_NAMES), size=total, replace=False)
    rows: list[dict] = []
    for index, pick in enumerate(picks):
        first, last = divmod(int(pick), len(LAST_NAMES))
        rows.extend(_person_rows(f"p{index:04d}", f"{FIRST_NAMES[first]} {LAST_NAMES[last]}", spec, rng))
    split = spec.people * spec.questions
    return rows[:split], rows[split:]


def _person_rows(person: str, name: str, spec: BenchmarkSpec, rng: np.random.Generator) -> list[dict]:
    """One person's rows; every fact is drawn (so a person is the same whichever facts are asked)."""
    truth = {kind: int(rng.integers(len(attribute.values))) for kind, attribute in ATTRIBUTES.items()}
    asked = sorted(int(k) for k in rng.choice(len(KINDS), size=spec.questions, replace=False))
    rows = []
    for kind in (KINDS[k] for k in asked):
        attribute = ATTRIBUTES[kind]
        value = attribute.values[truth[kind]]
        wrong = [v for i, v in enumerate(attribute.values) if i != truth[kind]]
        wrong_picks = rng.choice(len(wrong), size=spec.perturbed, replace=False)
        rows.append({
            "id": f"{person}-{kind}",
            "person": person,
            "question": attribute.fill(attribute.question, name, value),
            "answer": attribute.fill(attribute.answer, name, value),
            "paraphrased_answer": attribute.fill(attribute.paraphrase, name, value),
            "paraphrased_question": attribute.fill(attribute.question_paraphrase, name, value),
            "perturbed_answer": [attribute.fill(attribute.paraphrase, name, wrong[int(i)]) for i in wrong_picks],
        })
    return rows


def forget_people(rows: list[dict], fraction: float, seed: int = 0) -> list[str]:
    """The ids of every row of round(fraction * people) people (at least one), drawn with `seed`.

    Whole people, as TOFU's forget01/05/10 splits: forgetting one fact of a person while training on the
    others would leave the model able to reconstruct the person.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be strictly between 0 and 1, not {fraction}")
    people = list(dict.fromkeys(row["person"] for row in rows))
    if not people:
        raise ValueError("no rows to draw people from")
    count = max(1, round(fraction * len(people)))
    chosen = {people[int(i)] for i in np.random.default_rng(seed).choice(len(people), size=count, replace=False)}
    return [row["id"] for row in rows if row["person"] in chosen]


def row_texts(row: dict) -> list[str]:
    """Every text of a row: question, answer, paraphrase and the wrong answers."""
    texts = [row.get(key) or "" for key in TEXT_FIELDS[:-1]]
    return texts + list(row.get("perturbed_answer", []))


def word_tokenizer(rows: list[dict]) -> PreTrainedTokenizerFast:
    """A word-level tokenizer whose vocabulary is exactly the words and punctuation of `rows`.

    Why: a subword tokenizer would need a download or training; whole words keep sequences short and make
    each fact a single token, so a small model learns (and unlearns) the facts in a few CPU epochs.
    Splitting is the `Whitespace` pre-tokenizer's (runs of word characters, runs of other non-space
    characters: "Brennan's" -> "Brennan", "'", "s"). Decoding joins the tokens with single spaces, so
    decode(encode(text)) gives the text's tokens space-separated ("Lisbon ." for "Lisbon."): the words come
    back, punctuation spacing may differ. Encoding adds no special tokens: callers add bos/eos themselves.
    Ids: <pad> 0, <unk> 1, <s> 2, </s> 3, then the words sorted, so the same rows give the same ids.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    splitter = pre_tokenizers.Whitespace()
    words = {word for row in rows for text in row_texts(row) for word, _ in splitter.pre_tokenize_str(text)}
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    vocab.update({word: len(SPECIAL_TOKENS) + i for i, word in enumerate(sorted(words - set(SPECIAL_TOKENS)))})
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = splitter
    backend.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins tokens with spaces, no "##" in vocab
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", unk_token="<unk>", bos_token="<s>",
                                   eos_token="</s>", clean_up_tokenization_spaces=False)
