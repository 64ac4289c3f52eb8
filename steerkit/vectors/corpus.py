"""Concept corpora: sentences whose anchor words (the concept's words) are marked by character spans.

A corpus row is one JSON line::

    {"text": "The cup is to the left of the plate.", "spans": [[11, 25]], "concept": "spatial_relation",
     "anchors": ["to the left of"], "source": "template:0"}

``text``, ``spans`` and ``concept`` are required; ``anchors`` (the spanned strings, a readable check) and ``source``
are optional. :func:`validate_row` rejects rows whose spans are out of range, overlap, cut a word, or disagree with
``anchors``, with a :class:`~steerkit.errors.DataError` saying what to fix.

The shipped corpora (``steerkit/data/concepts/<concept>.jsonl``, package data) come from :func:`generate_corpus`:
seeded, from the word lists and templates below plus hand-written sentences. Templates mark anchors with
``[[...]]`` and fill slots ``{name}`` from the word lists (``{^name}`` capitalises the word: anchors at sentence
start). Regenerate with::

    python -m steerkit.vectors.corpus steerkit/data/concepts --n 240 --seed 0

Example:
    >>> rows = generate_corpus("spatial_relation", n=5, seed=0)
    >>> rows[0].anchors
    ('in front of',)
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from steerkit.errors import DataError
from steerkit.resources import packaged

#: The eight concepts of the textual-steering protocol (arXiv 2505.14071), in its order.
CONCEPTS: tuple[str, ...] = (
    "spatial_relation", "counting", "attribute", "entity", "action", "temporal", "comparison", "negation",
)

_SHIPPED = ("data", "concepts")
#: Where the shipped corpora live: ``steerkit/data/concepts``, package data of any install.
DEFAULT_DIR = packaged(*_SHIPPED)


@dataclass(frozen=True)
class ConceptSentence:
    """One validated corpus sentence: ``text`` and the character ``spans`` of its anchor words.

    Example:
        >>> s = ConceptSentence("Two cats sleep.", ((0, 3),), "counting")
        >>> s.anchors
        ('Two',)
    """

    text: str
    spans: tuple[tuple[int, int], ...]
    concept: str
    source: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def anchors(self) -> tuple[str, ...]:
        """The spanned substrings."""
        return tuple(self.text[s:e] for s, e in self.spans)

    def to_json(self) -> dict[str, Any]:
        """The row as written to a corpus file."""
        row: dict[str, Any] = {"text": self.text, "spans": [list(s) for s in self.spans], "concept": self.concept,
                               "anchors": list(self.anchors)}
        if self.source:
            row["source"] = self.source
        return row


# ------------------------------------------------------------------------------------------------ validation
def _is_word_char(ch: str) -> bool:
    return ch.isalnum() or ch in "_'-"


def validate_row(row: Mapping[str, Any], where: str = "row") -> ConceptSentence:
    """Check one corpus row and return it as a :class:`ConceptSentence`.

    Rejected (``DataError``): missing/ill-typed fields, empty text, no spans, a span out of range, empty, or
    overlapping another, a span that starts/ends in whitespace or inside a word, and ``anchors`` that differ from
    the spanned text. ``where`` (e.g. ``"file.jsonl:12"``) is named in the message.

    Example:
        >>> validate_row({"text": "It is not red.", "spans": [[6, 9]], "concept": "negation"}).anchors
        ('not',)
    """
    if not isinstance(row, Mapping):
        raise DataError(f"{where}: a corpus row must be a JSON object with text, spans, concept; got {row!r}")
    missing = [k for k in ("text", "spans", "concept") if k not in row]
    if missing:
        raise DataError(f"{where}: missing field(s) {missing}; a row is "
                        '{"text": ..., "spans": [[start, end], ...], "concept": ...}')
    text, spans, concept = row["text"], row["spans"], row["concept"]
    if not isinstance(text, str) or not text.strip():
        raise DataError(f"{where}: 'text' must be a non-empty string, got {text!r}")
    if not isinstance(concept, str) or not concept:
        raise DataError(f"{where}: 'concept' must be a non-empty string, got {concept!r}")
    if not isinstance(spans, (list, tuple)) or not spans:
        raise DataError(f"{where}: 'spans' must be a non-empty list of [start, end] character offsets "
                        f"of the anchor words in {text!r}")
    clean: list[tuple[int, int]] = []
    for span in spans:
        if (not isinstance(span, (list, tuple)) or len(span) != 2
                or not all(isinstance(x, int) and not isinstance(x, bool) for x in span)):
            raise DataError(f"{where}: span {span!r} must be a pair of integers [start, end]")
        s, e = span
        if not 0 <= s < e <= len(text):
            raise DataError(f"{where}: span {span!r} is out of range for a text of {len(text)} characters "
                            f"({text!r}); spans are [start, end) with 0 <= start < end <= len(text)")
        piece = text[s:e]
        if piece != piece.strip():
            raise DataError(f"{where}: span {span!r} = {piece!r} starts or ends with whitespace; trim it to "
                            "the anchor word(s)")
        if (s > 0 and _is_word_char(text[s - 1]) and _is_word_char(text[s])) or (
                e < len(text) and _is_word_char(text[e - 1]) and _is_word_char(text[e])):
            raise DataError(f"{where}: span {span!r} = {piece!r} cuts a word in {text!r}; spans must cover "
                            "whole words (recompute the offsets from the text)")
        clean.append((s, e))
    clean.sort()
    for (s0, e0), (s1, e1) in zip(clean, clean[1:]):
        if s1 < e0:
            raise DataError(f"{where}: spans {[s0, e0]} and {[s1, e1]} overlap in {text!r}; merge them into "
                            "one span or split them apart")
    anchors = row.get("anchors")
    if anchors is not None:
        got = [text[s:e] for s, e in clean]
        if list(anchors) != got:
            raise DataError(f"{where}: the spans give {got} but 'anchors' says {list(anchors)}; the spans do not "
                            "match the text (fix the offsets or regenerate the corpus)")
    extra = {k: v for k, v in row.items() if k not in ("text", "spans", "concept", "anchors", "source")}
    return ConceptSentence(text, tuple(clean), concept, str(row.get("source", "")), extra)


# ------------------------------------------------------------------------------------------------ files
def _corpus_dir(corpus_dir: str | Path | None) -> Path:
    """``corpus_dir``, or the shipped corpora, which must exist: a missing default would otherwise look like a
    folder without corpora (``available_concepts() == []``)."""
    return Path(corpus_dir) if corpus_dir is not None else packaged(*_SHIPPED, must_exist=True)


def corpus_path(concept: str, corpus_dir: str | Path | None = None) -> Path:
    """``<corpus_dir>/<concept>.jsonl`` (``corpus_dir`` defaults to :data:`DEFAULT_DIR`)."""
    return _corpus_dir(corpus_dir) / f"{concept}.jsonl"


def available_concepts(corpus_dir: str | Path | None = None) -> list[str]:
    """Concepts with a corpus file in ``corpus_dir``, sorted (the eight of :data:`CONCEPTS` first, in order)."""
    found = {p.stem for p in _corpus_dir(corpus_dir).glob("*.jsonl")}
    return [c for c in CONCEPTS if c in found] + sorted(found - set(CONCEPTS))


def read_jsonl(path: str | Path, concept: str | None = None) -> list[ConceptSentence]:
    """Read and validate every line of a corpus file; ``concept`` (if given) must match each row's."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"no corpus file {path}; write one with steerkit.vectors.corpus.write_corpora(dir) or "
                        "point corpus_dir at the folder that holds <concept>.jsonl")
    out = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path.name}:{i}: not valid JSON ({exc.msg}); one JSON object per line") from exc
        sent = validate_row(row, f"{path.name}:{i}")
        if concept is not None and sent.concept != concept:
            raise DataError(f"{path.name}:{i}: row concept {sent.concept!r} differs from the file's {concept!r}")
        out.append(sent)
    if not out:
        raise DataError(f"{path}: the corpus is empty")
    return out


def load_corpus(concept: str | Path, corpus_dir: str | Path | None = None, n: int | None = None,
                seed: int = 0) -> list[ConceptSentence]:
    """The validated sentences of ``concept`` (a name in ``corpus_dir`` or a path to a ``.jsonl`` file).

    ``n`` takes a seeded random subset of that size (all sentences when None or larger than the corpus).

    Example:
        >>> sents = load_corpus("negation", n=20)
        >>> len(sents)
        20
    """
    path = Path(concept) if str(concept).endswith(".jsonl") else corpus_path(str(concept), corpus_dir)
    sents = read_jsonl(path, None if str(concept).endswith(".jsonl") else str(concept))
    if n is not None and n < len(sents):
        idx = sorted(random.Random(f"subset:{seed}").sample(range(len(sents)), n))
        sents = [sents[i] for i in idx]
    return sents


def write_jsonl(sentences: Iterable[ConceptSentence], path: str | Path) -> Path:
    """Write sentences as a corpus file (one JSON object per line)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for s in sentences:
            fh.write(json.dumps(s.to_json(), ensure_ascii=False) + "\n")
    return path


def corpus_hash(sentences: Sequence[ConceptSentence]) -> str:
    """A short content hash of the sentences and spans (recorded in every :class:`SteeringVector`)."""
    h = hashlib.sha256()
    for s in sentences:
        h.update(json.dumps([s.text, [list(x) for x in s.spans], s.concept]).encode())
    return h.hexdigest()[:16]


# ------------------------------------------------------------------------------------------------ word lists
# Nouns as (singular, plural).
_OBJECTS = [
    ("cup", "cups"), ("chair", "chairs"), ("lamp", "lamps"), ("book", "books"), ("bottle", "bottles"),
    ("laptop", "laptops"), ("plate", "plates"), ("box", "boxes"), ("ball", "balls"), ("vase", "vases"),
    ("clock", "clocks"), ("bag", "bags"), ("umbrella", "umbrellas"), ("pillow", "pillows"), ("phone", "phones"),
    ("bicycle", "bicycles"), ("car", "cars"), ("bench", "benches"), ("candle", "candles"), ("mug", "mugs"),
    ("basket", "baskets"), ("apple", "apples"), ("banana", "bananas"), ("guitar", "guitars"), ("shoe", "shoes"),
    ("plant", "plants"), ("suitcase", "suitcases"), ("bowl", "bowls"), ("key", "keys"), ("towel", "towels"),
]
_SURFACES = ["table", "shelf", "desk", "floor", "counter", "bed", "windowsill", "sofa", "tray", "bench"]
_PLACES = ["kitchen", "park", "garden", "office", "street", "living room", "classroom", "station", "market",
           "hallway", "garage", "library", "yard", "bedroom", "parking lot"]
_PEOPLE = ["woman", "man", "boy", "girl", "child", "teacher", "waiter", "cyclist", "farmer", "student",
           "chef", "player", "doctor", "tourist", "driver"]
_ANIMALS = [("dog", "dogs"), ("cat", "cats"), ("horse", "horses"), ("bird", "birds"), ("cow", "cows"),
            ("sheep", "sheep"), ("goat", "goats"), ("rabbit", "rabbits"), ("duck", "ducks"), ("fox", "foxes")]
_COLOURS = ["red", "blue", "green", "yellow", "black", "white", "orange", "purple", "brown", "pink", "gray",
            "dark blue", "light green", "bright red", "pale yellow"]

_SLOTS_COMMON: dict[str, list[str]] = {
    "obj": [o for o, _ in _OBJECTS], "objs": [p for _, p in _OBJECTS], "surface": _SURFACES, "place": _PLACES,
    "person": _PEOPLE, "animal": [a for a, _ in _ANIMALS], "animals": [p for _, p in _ANIMALS], "colour": _COLOURS,
}


@dataclass(frozen=True)
class ConceptSpec:
    """Word lists (``slots``), templates and hand-written sentences of one concept (anchors in ``[[...]]``)."""

    slots: Mapping[str, Sequence[str]]
    templates: Sequence[str]
    hand: Sequence[str]


SPECS: dict[str, ConceptSpec] = {
    "spatial_relation": ConceptSpec(
        slots={
            "rel": ["to the left of", "to the right of", "in front of", "behind", "above", "below", "under",
                    "on top of", "next to", "beside", "near", "beneath", "over", "across from", "inside",
                    "far from", "close to", "at the back of", "on the left side of", "on the right side of"],
            "side": ["left", "right", "top", "bottom", "far left", "far right", "top left corner",
                     "bottom right corner", "center"],
            "where": ["on the left", "on the right", "in the background", "in the foreground", "at the top",
                      "at the bottom", "underneath", "upstairs", "nearby", "far away"],
        },
        templates=[
            "The {obj} is [[{rel}]] the {obj2}.",
            "A {colour} {obj} sits [[{rel}]] the {obj2}.",
            "[[{^rel}]] the {obj} there is a {obj2}.",
            "Is the {obj} [[{rel}]] the {obj2}?",
            "I put the {obj} [[{rel}]] the {surface}.",
            "The photo shows a {obj2} with a {obj} [[{rel}]] it.",
            "Which object is [[{rel}]] the {obj}: the {obj2} or the {obj3}?",
            "The {person} stood [[{rel}]] the {obj} in the {place}.",
            "The {obj2} that is [[{rel}]] the {obj} is {colour}.",
            "In the {place}, the {obj} was placed [[{rel}]] the {obj2}.",
            "The {obj} is on the [[{side}]] of the image.",
            "There is a {obj} at the [[{side}]] of the picture.",
            "The {colour} {obj} is [[{where}]].",
            "Look for the {obj} [[{where}]].",
            "The {obj} is [[between]] the {obj2} and the {obj3}.",
            "The {animal} sleeps [[{rel}]] the {obj} while the {obj2} stays [[{where}]].",
        ],
        hand=[
            "[[To the left of]] the fountain, two children were feeding pigeons.",
            "The keys are [[under]] the doormat.",
            "She hung the painting [[above]] the fireplace.",
            "The cat is hiding [[behind]] the curtain.",
            "A bus is parked [[in front of]] the school.",
            "The bakery is [[across from]] the bank.",
            "[[Below]] the bridge, the river runs fast.",
            "Put the milk [[on top of]] the fridge.",
            "The boy sat [[between]] his parents.",
            "His office is [[next to]] the elevator.",
            "The moon rose [[over]] the hills.",
            "The remote fell [[beneath]] the sofa cushions.",
            "My seat was [[to the right of]] the aisle.",
            "Mountains rose [[in the background]].",
            "Is the lamp [[to the left of]] the bed or [[to the right of]] it?",
            "The ball rolled [[inside]] the box.",
        ],
    ),
    "counting": ConceptSpec(
        slots={
            "num": ["two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
                    "fifteen", "twenty", "twenty-five", "thirty", "a dozen", "a couple of", "2", "3", "4", "5", "7",
                    "9", "12", "16"],
            "few": ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "zero"],
        },
        templates=[
            "There are [[{num}]] {objs} on the {surface}.",
            "[[{^few}]] {objs} are lined up in the {place}.",
            "I counted [[{num}]] {objs} in the {place}.",
            "How many {objs} are there? [[{^few}]].",
            "The image contains exactly [[{num}]] {objs}.",
            "She bought [[{num}]] {objs} and [[{num2}]] {objs2}.",
            "The number of {objs} in the picture is [[{few}]].",
            "We saw [[{num}]] {colour} {objs} near the {obj}.",
            "Only [[{few}]] of the {objs} were {colour}.",
            "A group of [[{num}]] people waited in the {place}.",
            "[[{^few}]] {animals} and [[{num2}]] {objs} are visible.",
            "The {person} is holding [[{few}]] {objs}.",
            "Count the {objs}: there are [[{few}]].",
            "In total, [[{num}]] {objs} were sold today.",
        ],
        hand=[
            "[[Three]] dogs chased [[two]] cats across the yard.",
            "The recipe needs [[four]] eggs and [[two]] cups of flour.",
            "There were [[twelve]] people at the table.",
            "[[Seven]] birds sat on the wire.",
            "He has [[two]] brothers and [[one]] sister.",
            "The team scored [[five]] goals.",
            "How many apples are in the basket? [[Six]].",
            "The parking lot had [[a dozen]] cars in it.",
            "I only see [[one]] chair in the room.",
            "The box holds [[24]] pencils.",
            "She counted [[eighteen]] steps to the door.",
            "Exactly [[nine]] candles were burning on the cake.",
            "The shelf has [[three]] rows of [[ten]] books each.",
            "[[Both]] windows were open.",
        ],
    ),
    "attribute": ConceptSpec(
        slots={
            "attr": [*_COLOURS, "wooden", "metal", "plastic", "glass", "leather", "ceramic", "woolen", "striped",
                     "spotted", "shiny", "fluffy", "rough", "smooth", "checkered", "round", "square",
                     "rectangular", "oval", "transparent", "rusty"],
            "texture": ["rough", "smooth", "shiny", "soft", "fluffy", "bumpy", "glossy", "matte"],
            "clothing": ["jacket", "hat", "scarf", "dress", "shirt", "coat", "sweater"],
        },
        templates=[
            "The {obj} is [[{attr}]].",
            "A [[{attr}]] {obj} stands by the {obj2}.",
            "[[{^attr}]] {objs} are stacked on the {surface}.",
            "The {person} wore a [[{attr}]] {clothing}.",
            "What colour is the {obj}? It is [[{colour}]].",
            "The {obj} on the {surface} is [[{attr}]] and the {obj2} is [[{attr2}]].",
            "He painted the {obj} [[{colour}]].",
            "The [[{attr}]] one is mine.",
            "Its surface looks [[{texture}]].",
            "I prefer the [[{attr}]] {obj} to the [[{attr2}]] one.",
            "The {animal} has [[{colour}]] fur.",
            "Find the [[{attr}]] {obj} in the {place}.",
            "In the {place} stood a [[{attr}]] {obj}.",
        ],
        hand=[
            "[[Red]] apples filled the bowl.",
            "The sky turned [[orange]] at dusk.",
            "She drove a [[shiny]] [[silver]] car.",
            "The table is made of [[dark]] [[wooden]] planks.",
            "His shirt was [[striped]].",
            "A [[round]] [[glass]] vase held the flowers.",
            "The kitten's fur is [[soft]] and [[white]].",
            "The old door was [[rusty]].",
            "[[Blue]] is the colour of the car on the left.",
            "The walls are painted [[light green]].",
            "I bought a [[leather]] bag.",
            "The water looked [[transparent]].",
            "The chair with the [[checkered]] cushion is mine.",
        ],
    ),
    "entity": ConceptSpec(
        slots={
            "ent": ["dog", "cat", "bicycle", "car", "traffic light", "fire hydrant", "stop sign", "bench", "bird",
                    "horse", "elephant", "giraffe", "zebra", "backpack", "umbrella", "suitcase", "frisbee",
                    "skateboard", "surfboard", "tennis racket", "wine glass", "bowl", "banana", "sandwich", "pizza",
                    "donut", "couch", "potted plant", "dining table", "television", "laptop", "keyboard",
                    "cell phone", "microwave", "refrigerator", "clock", "vase", "teddy bear", "toothbrush",
                    "airplane", "bus", "train", "boat", "motorcycle", "truck", "kite", "parking meter"],
        },
        templates=[
            "A [[{ent}]] is in the {place}.",
            "There is a [[{ent}]] next to the [[{ent2}]].",
            "Can you see the [[{ent}]]?",
            "The picture shows a [[{ent}]].",
            "I think that is a [[{ent}]], not a [[{ent2}]].",
            "Someone left a [[{ent}]] in the {place}.",
            "Which is closer, the [[{ent}]] or the [[{ent2}]]?",
            "[[{^ent}]] on the left, [[{ent2}]] on the right.",
            "The {person} pointed at the [[{ent}]].",
            "A {colour} [[{ent}]] appears in the corner of the photo.",
            "Is there a [[{ent}]] in this image?",
            "The [[{ent}]] and the [[{ent2}]] are both {colour}.",
            "Behind the {obj} we found a [[{ent}]].",
        ],
        hand=[
            "[[Giraffes]] eat leaves from tall trees.",
            "A [[teddy bear]] sat on the [[pillow]].",
            "The [[fire hydrant]] is painted yellow.",
            "We waited for the [[train]] for an hour.",
            "My [[laptop]] ran out of battery.",
            "A [[kite]] flew high above the [[beach]].",
            "The [[stop sign]] was hidden by a [[tree]].",
            "[[Elephants]] walked slowly toward the [[river]].",
            "He ordered a [[pizza]] and a [[soda]].",
            "The [[clock]] on the wall stopped at noon.",
            "A [[zebra]] drank from the [[lake]].",
            "Please hand me the [[toothbrush]].",
            "The [[airplane]] landed safely.",
        ],
    ),
    "action": ConceptSpec(
        slots={
            "ing": ["running", "jumping", "sleeping", "swimming", "dancing", "walking", "sitting", "climbing",
                    "cooking", "waving", "singing", "laughing", "skiing", "surfing", "skating", "resting",
                    "standing up", "lying down"],
            "ing_tr": ["holding", "throwing", "catching", "kicking", "carrying", "pushing", "pulling",
                       "eating", "washing", "cutting", "painting", "lifting", "riding", "grabbing"],
            "past": ["threw", "kicked", "picked up", "grabbed", "opened", "carried", "pushed", "dropped",
                     "lifted", "washed", "broke", "painted", "put down", "cleaned", "fixed"],
            "base": ["run", "swim", "dance", "cook", "paint", "read", "climb", "sing", "ride a bike", "jump"],
        },
        templates=[
            "A {person} is [[{ing}]] in the {place}.",
            "[[{^ing}]] in the {place} is fun.",
            "The {person} [[{past}]] the {obj}.",
            "Two kids were [[{ing}]] while their parents watched.",
            "What is the {person} doing? [[{^ing}]].",
            "She likes to [[{base}]] after work.",
            "The {animal} is [[{ing}]].",
            "A {person} is [[{ing_tr}]] a {obj}.",
            "The {person} kept [[{ing_tr}]] the {obj} all day.",
            "Yesterday the {person} [[{past}]] a {colour} {obj}.",
            "He [[{past}]] the {obj} and [[{past2}]] the {obj2}.",
            "The {person} near the {obj} is [[{ing}]].",
            "[[{^ing_tr}]] the {obj} carefully, the {person} smiled.",
            "The {person} was [[{ing}]] when the {animal} started [[{ing2}]].",
        ],
        hand=[
            "[[Running]] every morning keeps him healthy.",
            "The dog [[jumped]] over the fence.",
            "She [[threw]] the ball and the boy [[caught]] it.",
            "A man is [[riding]] a horse on the beach.",
            "The children [[laughed]] at the clown.",
            "He [[sat down]] on the bench.",
            "The chef is [[slicing]] onions.",
            "A skier [[raced]] down the slope.",
            "They [[danced]] until midnight.",
            "The baby is [[crawling]] toward the toy.",
            "Please [[close]] the door.",
            "Two players are [[kicking]] a ball in the field.",
            "The waiter [[poured]] the wine.",
        ],
    ),
    "temporal": ConceptSpec(
        slots={
            "adv": ["yesterday", "today", "tomorrow", "at night", "in the morning", "in the evening", "at noon",
                    "last week", "next year", "at sunset", "at dawn", "later", "earlier", "recently", "soon",
                    "afterwards", "at midnight", "on Monday", "last summer", "every day"],
            "conj": ["before", "after", "while", "until", "as soon as", "when", "once"],
            "seq": ["first", "then", "finally", "next", "meanwhile", "afterwards", "later"],
            "dur": ["two hours ago", "three days ago", "a minute ago", "long ago", "a year ago", "in an hour",
                    "for ten minutes", "since noon", "for a while"],
        },
        templates=[
            "[[{^adv}]], the {person} walked to the {place}.",
            "The {person} walked to the {place} [[{adv}]].",
            "We will meet [[{adv}]] near the {obj}.",
            "[[{^conj}]] the rain stopped, the {person} went outside.",
            "The {person} washed the {obj} [[{conj}]] the guests arrived.",
            "The photo was taken [[{adv}]].",
            "[[{^seq}]], the {person} opened the {obj}.",
            "The {obj} was left in the {place} [[{dur}]].",
            "The {animal} slept [[{dur}]].",
            "[[{^adv}]] the {place} is crowded.",
            "The {person} fed the {animal} [[{conj}]] leaving the {place}.",
            "Did the {person} arrive [[{conj}]] the {person2} left?",
            "The {place} closes [[{adv}]], so bring the {obj} [[{adv2}]].",
        ],
        hand=[
            "[[First]], boil the water; [[then]], add the pasta.",
            "The store opens [[at nine]].",
            "[[Before]] the meeting, she read the report.",
            "He has lived here [[since 2010]].",
            "We played cards [[while]] it snowed.",
            "[[Yesterday]] the train was late.",
            "The concert ended [[at midnight]].",
            "I will call you [[tomorrow morning]].",
            "[[After]] dinner, they went for a walk.",
            "The bridge was built [[a century ago]].",
            "Wait [[until]] the light turns green.",
            "[[Every summer]], the family visits the lake.",
            "The lecture lasted [[two hours]].",
        ],
    ),
    "comparison": ConceptSpec(
        slots={
            "comp": ["bigger than", "smaller than", "taller than", "shorter than", "heavier than", "lighter than",
                     "wider than", "older than", "newer than", "closer to the camera than",
                     "farther from the camera than", "more expensive than", "darker than", "brighter than",
                     "the same size as", "as tall as", "twice as long as", "longer than", "larger than"],
            "superl": ["the largest", "the smallest", "the tallest", "the closest", "the farthest", "the biggest",
                       "the most colorful", "the brightest", "the heaviest", "the oldest"],
            "adj_cmp": ["bigger", "smaller", "darker", "brighter", "larger", "taller", "older", "heavier",
                        "closer", "farther"],
        },
        templates=[
            "The {obj} is [[{comp}]] the {obj2}.",
            "Is the {obj} [[{comp}]] the {obj2}?",
            "Which is [[{superl}]] object in the {place}?",
            "[[{^superl}]] {obj} is on the {surface}.",
            "Compared with the {obj2}, the {obj} looks [[{adj_cmp}]].",
            "My {obj} is [[{comp}]] yours.",
            "Of all the {objs}, this one is [[{superl}]].",
            "[[{^adj_cmp} than]] the {obj2}, the {obj} filled the frame.",
            "The {animal} is [[{comp}]] the {animal2}.",
            "The {person} picked [[{superl}]] {obj} in the {place}.",
            "Which {obj} is [[{adj_cmp}]], the {colour} one or the other one?",
            "The {obj} in the {place} is [[{comp}]] the one on the {surface}.",
        ],
        hand=[
            "An elephant is [[heavier than]] a horse.",
            "[[The tallest]] building in the city has 80 floors.",
            "This road is [[longer than]] that one.",
            "Her answer was [[better than]] mine.",
            "The red car is [[faster than]] the blue one.",
            "Which box is [[closer to the camera]]?",
            "He is [[as tall as]] his father.",
            "The second test was [[harder than]] the first.",
            "Gold is [[more expensive than]] silver.",
            "This is [[the smallest]] room in the house.",
            "The river is [[wider]] here [[than]] upstream.",
            "[[Fewer]] people came [[than]] expected.",
            "The left chair is [[the same height as]] the right one.",
        ],
    ),
    "negation": ConceptSpec(
        slots={
            "aux_neg": ["doesn't", "didn't", "can't", "cannot", "could not", "did not", "does not", "will not",
                        "won't", "never"],
            "be_neg": ["is not", "isn't", "was not", "wasn't"],
            "neg_start": ["Never", "Do not", "Don't"],
        },
        templates=[
            "The {obj} is [[not]] {colour}.",
            "There is [[no]] {obj} on the {surface}.",
            "[[{neg_start}]] leave the {obj} near the {obj2}.",
            "[[None]] of the {objs} are {colour}.",
            "[[No]] {objs} are visible in the picture.",
            "The {person} [[{aux_neg}]] see the {obj}.",
            "The {person} left [[without]] the {obj}.",
            "[[Neither]] the {obj} [[nor]] the {obj2} is {colour}.",
            "The {place} has [[nothing]] in it.",
            "I could [[not]] find the {obj} in the {place}.",
            "Is there a {obj}? [[No]], there [[isn't]].",
            "It [[{be_neg}]] a {obj} but a {obj2}.",
            "The {objs} [[aren't]] on the {surface}.",
            "[[Nobody]] touched the {obj}.",
            "The {animal} is [[no longer]] in the {place}.",
        ],
        hand=[
            "[[No]] one answered the phone.",
            "She [[never]] drinks coffee.",
            "The door is [[not]] locked.",
            "There are [[no]] clouds in the sky.",
            "He [[doesn't]] like spinach.",
            "[[Nothing]] was left on the plate.",
            "I [[can't]] find my keys.",
            "The shop [[isn't]] open on Sundays.",
            "[[Neither]] option works.",
            "They left [[without]] saying goodbye.",
            "[[None]] of the lights were on.",
            "The cat is [[not]] on the sofa.",
            "This is [[not]] a pipe.",
        ],
    ),
}


# ------------------------------------------------------------------------------------------------ generation
_SLOT = re.compile(r"\{(\^?)([a-z_]+?)(\d?)\}")
_ANCHOR = re.compile(r"\[\[(.+?)\]\]")
_ARTICLE = re.compile(r"\b([Aa]) ((?:\[\[)?[aeiouAEIOU])")


def parse_marked(marked: str, concept: str, source: str = "") -> ConceptSentence:
    """A sentence with ``[[anchor]]`` markup -> :class:`ConceptSentence` with character spans (validated).

    Example:
        >>> parse_marked("The cup is [[under]] the table.", "spatial_relation").spans
        ((11, 16),)
    """
    text, spans, pos = "", [], 0
    for m in _ANCHOR.finditer(marked):
        text += marked[pos:m.start()]
        spans.append([len(text), len(text) + len(m.group(1))])
        text += m.group(1)
        pos = m.end()
    text += marked[pos:]
    if "[[" in text or "]]" in text:
        raise DataError(f"unbalanced [[...]] anchor markup in {marked!r}")
    return validate_row({"text": text, "spans": spans, "concept": concept}, source or "marked sentence")


def _fill(template: str, slots: Mapping[str, Sequence[str]], rng: random.Random) -> str:
    """Fill ``{slot}``/``{slot2}``/``{^slot}``; numbered copies of a slot draw distinct words."""
    used: dict[str, set[str]] = {}

    def pick(m: re.Match[str]) -> str:
        cap, name, _ = m.group(1), m.group(2), m.group(3)
        words = [w for w in slots[name] if w not in used.get(name, set())] or list(slots[name])
        word = rng.choice(words)
        used.setdefault(name, set()).add(word)
        return word[0].upper() + word[1:] if cap else word

    filled = _SLOT.sub(pick, template)
    return _ARTICLE.sub(lambda m: f"{m.group(1)}n {m.group(2)}", filled)  # "a apple" -> "an apple"


def generate_corpus(concept: str, n: int = 240, seed: int = 0) -> list[ConceptSentence]:
    """``n`` distinct sentences for ``concept``: every hand-written one, then seeded template fills.

    Templates are drawn round-robin (so every template is used) with a ``random.Random`` seeded by
    ``(concept, seed)``; the same arguments always give the same corpus.

    Example:
        >>> len(generate_corpus("negation", n=50, seed=1))
        50
    """
    if concept not in SPECS:
        raise DataError(f"no generator for concept {concept!r}; known: {list(SPECS)}")
    spec = SPECS[concept]
    slots = {**_SLOTS_COMMON, **spec.slots}
    rng = random.Random(f"steerkit-corpus:{concept}:{seed}")
    out: dict[str, ConceptSentence] = {}
    for i, marked in enumerate(spec.hand):
        s = parse_marked(marked, concept, f"{concept} hand-written #{i}")
        out.setdefault(s.text, ConceptSentence(s.text, s.spans, concept, f"hand:{i}"))
    order = list(range(len(spec.templates)))
    tries = 0
    while len(out) < n:
        tries += 1
        if tries > 200 * n:
            raise DataError(f"concept {concept!r}: only {len(out)} distinct sentences could be generated; "
                            "ask for fewer or add templates/words")
        if tries % len(order) == 1:
            rng.shuffle(order)
        k = order[tries % len(order)]
        marked = _fill(spec.templates[k], slots, rng)
        s = parse_marked(marked, concept, f"{concept} template #{k}")
        out.setdefault(s.text, ConceptSentence(s.text, s.spans, concept, f"template:{k}"))
    return list(out.values())[:n]


def write_corpora(out_dir: str | Path = DEFAULT_DIR, n: int = 240, seed: int = 0,
                  concepts: Sequence[str] = CONCEPTS) -> list[Path]:
    """Generate and write ``<out_dir>/<concept>.jsonl`` for each concept; returns the paths."""
    return [write_jsonl(generate_corpus(c, n, seed), corpus_path(c, out_dir)) for c in concepts]


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: ``python -m steerkit.vectors.corpus OUT_DIR [--n 240] [--seed 0]``."""
    import argparse

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("out_dir", nargs="?", default=str(DEFAULT_DIR))
    ap.add_argument("--n", type=int, default=240)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    for path in write_corpora(args.out_dir, args.n, args.seed):
        print(path)


if __name__ == "__main__":
    main()
