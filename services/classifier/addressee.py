"""Whom a letter is addressed to: the unit a writer greets or puts in the recipient block
(pure).

"Hej Økonomi", "Dear HR team", "Til Eksempelby Kommune, Børn og Familie", "Att.: Niels Holm",
"Kære borgmester" and a scanned letter's recipient block ("Eksempelby Kommune / Miljø-
afdelingen / Rådhustorvet 1") say where the writer means the item to go, as a clerk reading
the main mailbox sees first. A unit's name anywhere in the text is weaker evidence (an
employee's signature, "Byggeri" as a subject of the letter), so the addressee is a pointer of
its own.

Only the opening counts: the first lines, up to a quoted message's header, the first
paragraph of body text (a line over 100 characters) or a closing ("Med venlig hilsen"), so a
forwarded mail's greeting or a colleague's signature does not. An addressee is a few words,
not a sentence: a greeting names at most four ("Hej Hanne Nielsen"), a recipient line ("Til",
"Att.") seven, and a line whose addressee holds a function word ("Hej, jeg hedder Hanne", "To
whom it may concern", "Til lykke med ...") names no one. A recipient block is at most four
short lines after the municipality's own name, before any greeting; a blank line or a line
with a digit (the street address) ends it.

A unit is addressed by a word of its name or synonyms: words of up to three letters ("IT",
"HR") only in capitals, longer ones in any case, also as the beginning of a longer word
("Miljøafdelingen", "Pladsanvisningen") or, from five letters, cut short ("Hej Ydelse" for
"Ydelsesservice"); where words of two units' names fit, the longer wins ("Parkering" begins
with "Park"). Or by one of its clerks, capitalised: the full name, or a first or last name no
other clerk of the tenant has.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache

from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS
from spacy.lang.da.stop_words import STOP_WORDS as DANISH_STOP_WORDS

from .lemmas import lemma, words_as_written
from .lemmas import words as lower_words

# The opening words of a greeting line, and of those the recipient lines' ("Til", "Att.").
_RECIPIENT = ("til", "to", "att", "attn", "attention")
_GREETING_WORDS = ("hej", "hejsa", "hey", "hi", "hello", "dear", "kære", *_RECIPIENT)
_GREETING = re.compile(
    rf"^(?P<word>{'|'.join(_GREETING_WORDS)}|sehr geehrte[rs]?|liebe[rs]?|guten tag|"
    r"dzień dobry|szanowni państwo)\b(?P<rest>.*)$", re.IGNORECASE)
# Where a quoted or forwarded message begins: its lines are someone else's.
_QUOTE = re.compile(r"^(?:>|-{2,}|_{5,}|(?:fra|from|von|sendt|sent|date|dato|cc|emne|subject|"
                    r"betreff)\s*:)", re.IGNORECASE)
_CLOSING = re.compile(r"^(?:mvh|med venlig hilsen|venlig hilsen|de bedste hilsner|hilsen|"
                      r"kind regards|best regards|regards|mit freundlichen grüßen|mfg)\b",
                      re.IGNORECASE)
_ABBREVIATION = re.compile(r"\b(hr|fr|frk|mr|mrs|ms|dr|att|st)\.", re.IGNORECASE)
_CONNECTORS = frozenset({"og", "and", "und", "i", "for", "af", "the", "of"})
_FUNCTION_WORDS = (frozenset(DANISH_STOP_WORDS) | ENGLISH_STOP_WORDS
                   | {"ich", "wir", "sie", "der", "die", "das", "ist", "ein", "eine"}) - _CONNECTORS
# Words of an addressee line that every unit shares.
_NOBODY = frozenset({
    "kommune", "kommunen", "kommunes", "rådhus", "rådhuset", "rette", "vedkommende", "alle",
    "jer", "i", "dig", "du", "sir", "madam", "or", "to", "whom", "it", "may", "concern", "team",
    "there", "all", "damen", "und", "herren", "frau", "herr", "municipality", "council",
    "gemeinde", "kommunalverwaltung", "postkasse", "post", "hr", "fr", "frk", "mr", "mrs", "ms",
    "dr"})
_OPENING_LINES = 20
_BODY_LINE = 100  # characters: a paragraph of body text, where the opening ends
_RECIPIENT_WORDS = 7  # "Til Eksempelby Kommune, Social og Handicap (voksne)"
_GREETED_WORDS = 4  # "Dear HR team", "Hej Hanne Nielsen", "Sehr geehrte Frau Egholm"
_BLOCK_LINES = 4
_MUNICIPALITY = re.compile(rf"^(?:(?:{'|'.join(_GREETING_WORDS)})\b\.?:?\s*)?"
                           r"(?P<name>[A-ZÆØÅ][a-zæøå]+(?:[ -][A-ZÆØÅ][a-zæøå]+)?)"
                           r"\s+[Kk]ommune\s*[,.]?$", re.IGNORECASE)
_NOT_NAMES = frozenset({*_GREETING_WORDS, "hallo", "goddag"})


@dataclass(frozen=True, eq=False)
class Addressees:
    """Name words and clerks' names of a tenant's units (built once, see `build`)."""

    name_words: Mapping[str, frozenset[str]] = field(default_factory=dict)  # word -> units
    clerk_names: Mapping[tuple[str, ...], str] = field(default_factory=dict)  # words -> unit
    municipality: str = ""
    # Derived look-ups (see __post_init__): name words by length, and every cut-short form.
    _by_length: dict[int, dict[str, frozenset[str]]] = field(default_factory=dict, init=False,
                                                             repr=False)
    _shortened: dict[str, tuple[int, frozenset[str]]] = field(default_factory=dict,
                                                              init=False, repr=False)

    def __post_init__(self) -> None:
        for w, owners in self.name_words.items():
            self._by_length.setdefault(len(w), {})[w] = owners
            for n in range(5, len(w)):
                known = self._shortened.get(w[:n])
                if known is None or len(w) > known[0]:
                    self._shortened[w[:n]] = (len(w), owners)

    @classmethod
    def build(cls, units: Iterable[tuple[str, str, Iterable[str], Iterable[str]]],
              municipality: str = "") -> Addressees:
        """`units`: (id, name, synonyms, clerks' full names) per unit. The municipality's own
        name is no unit's ("Jobcenter Eksempelby" is not addressed by "Eksempelby Kommune")."""
        town = set(lower_words(municipality)) | _NOBODY | _CONNECTORS | _FUNCTION_WORDS
        words: dict[str, set[str]] = {}
        people: dict[tuple[str, ...], set[str]] = {}
        for unit, name, synonyms, clerks in units:
            for text in (name, *synonyms):
                for original in words_as_written(text):
                    w = original.lower()
                    if w not in town or (len(w) <= 3 and original.isupper()):  # "IT"
                        words.setdefault(w, set()).add(unit)
            for full in clerks:
                parts = tuple(lower_words(full))
                for key in {parts, parts[:1], parts[-1:]} - {()}:
                    people.setdefault(key, set()).add(unit)
        # A first or last name two units' clerks share points nowhere.
        clerk_names = {k: next(iter(v)) for k, v in people.items() if len(v) == 1}
        return cls({w: frozenset(u) for w, u in words.items()}, clerk_names,
                   " ".join(municipality.lower().split()))

    def units(self, body: str) -> set[str]:
        """The units the opening lines of `body` address."""
        found: set[str] = set()
        for line in self.lines(body):
            ws = words_as_written(line)
            found |= self._by_name(ws) | self._by_clerk(ws)
        return found

    def words(self, body: str) -> list[str]:
        """The words of the addressee lines that could name a part of the organisation: not
        the municipality's name, "kommunen", "Rådhuset" or "Dear Sir or Madam", which every
        unit shares (measured: "Til kommunen" alone sent letters to the secretariat)."""
        skip = _NOBODY | set(lower_words(self.municipality))
        return [w for line in self.lines(body) for w in lower_words(line)
                if w not in skip and lemma(w) not in skip]

    def lines(self, body: str) -> list[str]:
        """The addressee parts of the opening lines: what follows a greeting ("Hej", "Dear",
        "Til", "Att.") and a letter's recipient block (see the module's docstring)."""
        out: list[str] = []
        block, greeted = -1, False
        for line in _opening(body):
            lowered = line.lower().rstrip(",.")
            if not line:
                block = -1
                continue
            if (self.municipality and not greeted
                    and lowered.removeprefix("til ") == self.municipality):
                block = 0
                continue
            m = _GREETING.match(line)
            if 0 <= block < _BLOCK_LINES and not m:
                if any(ch.isdigit() for ch in line) or len(line) > 60 or len(line.split()) > 6:
                    block = -1
                else:
                    out.append(line)
                    block += 1
                continue
            block = -1
            if m and "@" not in line:
                recipient = m.group("word").lower() in _RECIPIENT
                greeted = greeted or not recipient  # "Til" may stand above the block
                who = _addressee(m.group("rest"), _RECIPIENT_WORDS if recipient
                                 else _GREETED_WORDS)
                if who:
                    out.append(who)
        return out

    def elsewhere(self, body: str) -> str | None:
        """Another municipality the letter is addressed to ("Nabokøbing Kommune / Byg og
        Miljø"), when the opening lines do not name this one or its town: mail that came here
        by mistake, which only a person can send on."""
        town = self.municipality.removesuffix(" kommune")
        if not town:
            return None
        names = []
        for line in _opening(body):
            if town in line.lower():
                return None
            m = _MUNICIPALITY.match(line)
            if m and m.group("name").lower() not in _NOT_NAMES:
                names.append(f"{m.group('name')} Kommune")
        return names[0] if names else None

    def _by_name(self, ws: list[str]) -> set[str]:
        found: set[str] = set()
        for original in ws:
            w = original.lower()
            best, units = 0, frozenset[str]()
            for form in (w, lemma(w)):
                for n, table in self._by_length.items():
                    if n <= 3:  # "IT", "HR": whole words in capitals only
                        hit = table.get(form) if original.isupper() else None
                    else:
                        hit = table.get(form[:n])
                    if hit is not None and n > best:
                        best, units = n, hit
                shortened = self._shortened.get(form) if len(form) >= 5 else None
                if shortened is not None and shortened[0] > best:
                    best, units = shortened
            found |= units
        return found

    def _by_clerk(self, ws: list[str]) -> set[str]:
        found: set[str] = set()
        for i in range(len(ws)):
            if not ws[i][:1].isupper():  # "bo", "dam", "per" are words too
                continue
            for n in (3, 2, 1):
                unit = self.clerk_names.get(tuple(w.lower() for w in ws[i:i + n]))
                if unit is not None:
                    found.add(unit)
                    break
        return found


def _addressee(rest: str, most: int) -> str:
    """Whom a greeting names: "" when it names no one ("Hej, jeg hedder ...")."""
    rest = rest.lstrip(" .:")
    if not rest or rest[0] in ",!?-(":
        return ""
    # "Kære hr. Holm", "Att. Jobcenter": an abbreviation's dot ends no sentence.
    who = re.split(r"[.!?](?:\s|$)", _ABBREVIATION.sub(r"\1", rest), maxsplit=1)[0]
    who = who.strip(" ,:;")[:80]
    ws = words_as_written(who)
    if not ws or len(ws) > most:
        return ""
    if any(w.lower() in _FUNCTION_WORDS and not (len(w) <= 3 and w.isupper()) for w in ws):
        return ""
    return who


@lru_cache(maxsize=256)
def _opening(body: str) -> tuple[str, ...]:
    """The opening lines of `body` (whitespace normalised; "" for a blank line): up to a
    quoted message, a closing, the first paragraph of body text or 20 lines. Cached: the
    addressee, its words and another municipality are read from the same lines."""
    out: list[str] = []
    seen = 0
    for raw in body.split("\n", 200)[:200]:
        line = " ".join(raw.split())
        if not line:
            if out and out[-1]:
                out.append("")
            continue
        if (_QUOTE.match(line) or _CLOSING.match(line) or len(line) > _BODY_LINE
                or seen >= _OPENING_LINES):
            break
        out.append(line)
        seen += 1
    return tuple(out)
