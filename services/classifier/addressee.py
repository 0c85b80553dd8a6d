"""Whom a letter is addressed to: the unit a writer greets or puts in the recipient block
(pure).

"Hej Økonomi", "Dear HR team", "Til Eksempelby Kommune, Børn og Familie", "Att.: Niels Holm",
"Kære borgmester" and a scanned letter's recipient block ("Eksempelby Kommune / Miljø-
afdelingen / Rådhustorvet 1") say where the writer means the item to go, as a clerk reading
the main mailbox sees first. A unit's name anywhere in the text is weaker evidence (an
employee's signature, "Byggeri" as a subject of the letter), so the addressee is a pointer of
its own. Only the opening lines count, up to a quoted message's header, so a forwarded mail's
old greeting does not.

A unit is addressed by a word of its name ("Økonomi" of "Økonomi og Opkrævning"; words of up
to three letters, "IT", "HR", must stand alone, longer ones may begin a longer word:
"Miljøafdelingen", "Pladsanvisningen", "Opkrævningen") or by one of its clerks: the full name,
or a first or last name no other clerk of the tenant has. Where words of two units' names fit
a word ("Parkering" begins with "Park"), the longer one wins.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .lemmas import lemma

# A greeting or recipient line: what follows the opening word names the addressee.
_GREETING = re.compile(
    r"^(?:(?:hej|hejsa|hey|hi|hello|dear|kære|til|to|attention|sehr geehrte[rs]?|liebe[rs]?|"
    r"guten tag|dzień dobry|szanowni państwo)\b(?![.!])|(?:att|attn)\b\.?)"
    r"(?!:\s*\S+@)[ ,:]*(.*)$", re.IGNORECASE)
# Where a quoted or forwarded message begins: its lines are someone else's.
_QUOTE = re.compile(r"^(?:>|-{2,}|_{5,}|(?:fra|from|von|sendt|sent|date|dato|til|to|an|cc|emne|"
                    r"subject|betreff)\s*:)", re.IGNORECASE)
_WORD = re.compile(r"[^\W\d_]+(?:-[^\W\d_]+)*")
# "Nabokøbing Kommune" (or "Til Nabokøbing Kommune") as a line of its own: a municipality
# in the recipient block or a greeting.
_MUNICIPALITY = re.compile(r"^(?:(?:[Tt]il|[Aa]tt\.?:?)\s+)?"
                           r"([A-ZÆØÅ][a-zæøå]+(?:[ -][A-ZÆØÅ][a-zæøå]+)?) [Kk]ommune\b")
_STOP = frozenset({"og", "and", "und", "i", "for", "af", "the", "of"})
_OPENING_LINES = 20
# "Til Eksempelby Kommune, Social og Handicap (voksne)" is seven words; "Dear HR team",
# "Hej Hanne Nielsen" or "Sehr geehrte Frau Egholm" fewer.
_RECIPIENT_WORDS = 7
_GREETED_WORDS = 4


@dataclass(frozen=True)
class Addressees:
    """Name words and clerks' names of a tenant's units (built once, see `build`)."""

    name_words: Mapping[str, frozenset[str]] = field(default_factory=dict)  # word -> units
    clerk_names: Mapping[tuple[str, ...], str] = field(default_factory=dict)  # words -> unit
    municipality: str = ""

    @classmethod
    def build(cls, units: Iterable[tuple[str, str, Iterable[str], Iterable[str]]],
              municipality: str = "") -> Addressees:
        """`units`: (id, name, synonyms, clerks' full names) per unit."""
        words: dict[str, set[str]] = {}
        people: dict[tuple[str, ...], set[str]] = {}
        for unit, name, synonyms, clerks in units:
            for text in (name, *synonyms):
                for w in _words(text):
                    if w not in _STOP:
                        words.setdefault(w, set()).add(unit)
            for full in clerks:
                parts = tuple(_words(full))
                if not parts:
                    continue
                for key in {parts, parts[:1], parts[-1:]}:
                    people.setdefault(key, set()).add(unit)
        # A first or last name two units' clerks share points nowhere.
        clerk_names = {k: next(iter(v)) for k, v in people.items() if len(v) == 1}
        return cls({w: frozenset(u) for w, u in words.items()}, clerk_names,
                   municipality.strip().lower())

    def units(self, body: str) -> set[str]:
        """The units the opening lines of `body` address."""
        found: set[str] = set()
        for line in self.lines(body):
            ws = _words(line)
            found |= self._by_name(ws) | self._by_clerk(ws)
        return found

    def words(self, body: str) -> list[str]:
        """The words of the addressee lines that could name a part of the organisation: not
        the municipality's name, "kommunen", "Rådhuset" or "Dear Sir or Madam", which every
        unit shares (measured: "Til kommunen" alone sent letters to the secretariat)."""
        skip = _NOBODY | set(_words(self.municipality))
        return [w for line in self.lines(body) for w in _words(line)
                if w not in skip and lemma(w) not in skip]

    def lines(self, body: str) -> list[str]:
        """The addressee parts of the opening lines: what follows a greeting ("Hej", "Dear",
        "Til", "Att.") and a letter's recipient block (the lines after the municipality's
        name up to its street address)."""
        out: list[str] = []
        block = False
        for line in _opening(body):
            lowered = line.lower()
            if self.municipality and lowered.rstrip(",") == self.municipality:
                block = True
                continue
            if block:
                if any(ch.isdigit() for ch in line):
                    block = False
                else:
                    out.append(line)
                    continue
            m = _GREETING.match(line)
            # "Til"/"To" also open sentences ("To avoid ..."): a recipient line is short.
            if m and (len(line) <= 60 or not lowered.startswith(("til", "to "))):
                # "Hej. Jeg har ..." greets no one: the addressee ends at a sentence's end,
                # and a name is a few words ("Hej her er det brev jeg fik" is a sentence).
                who = re.split(r"[.!?]\s", m.group(1) + " ", maxsplit=1)[0][:80].strip()
                recipient = lowered.startswith(("til", "to ", "att"))
                if len(who.split()) <= (_RECIPIENT_WORDS if recipient else _GREETED_WORDS):
                    out.append(who)
        return out

    def elsewhere(self, body: str) -> str | None:
        """Another municipality the letter is addressed to ("Nabokøbing Kommune / Byg og
        Miljø"), when the opening lines do not name this one: mail that came here by mistake,
        which only a person can send on. (A neighbour municipality writing to us names both.)"""
        if not self.municipality:
            return None
        names = []
        for line in _opening(body):
            if self.municipality in line.lower():
                return None
            m = _MUNICIPALITY.match(line)
            if m and m.group(1).lower() not in _GREETING_WORDS:
                names.append(f"{m.group(1)} Kommune")
        return names[0] if names else None

    def _by_name(self, ws: list[str]) -> set[str]:
        found: set[str] = set()
        for w in ws:
            best, units = 0, frozenset[str]()
            for form in {w, lemma(w)}:
                for name_word, owners in self.name_words.items():
                    n = len(name_word)
                    fits = (form == name_word if n <= 3 else
                            form.startswith(name_word) or (len(form) >= 5
                                                           and name_word.startswith(form)))
                    if fits and n > best:
                        best, units = n, owners
            found |= units
        return found

    def _by_clerk(self, ws: list[str]) -> set[str]:
        found: set[str] = set()
        for i in range(len(ws)):
            for n in (3, 2, 1):
                unit = self.clerk_names.get(tuple(ws[i:i + n]))
                if unit is not None:
                    found.add(unit)
                    break
        return found


def _opening(body: str) -> list[str]:
    """The first non-empty lines of `body`, up to a quoted message."""
    out: list[str] = []
    for line in (ln.strip() for ln in body.splitlines()):
        if not line:
            continue
        if _QUOTE.match(line) or len(out) >= _OPENING_LINES:
            break
        out.append(line)
    return out


_NOBODY = frozenset({
    "kommune", "kommunen", "kommunes", "rådhus", "rådhuset", "rette", "vedkommende", "alle",
    "jer", "i", "dig", "du", "sir", "madam", "or", "to", "whom", "it", "may", "concern", "team",
    "there", "all", "damen", "und", "herren", "frau", "herr", "municipality", "council",
    "gemeinde", "kommunalverwaltung", "postkasse", "post"})
_GREETING_WORDS = frozenset({"hej", "kære", "til", "dear", "hi", "hello", "att", "attn"})


def _words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]
