"""Entity extraction from Danish municipal mail (pure; no I/O).

Every entity carries its position (`start`/`end` in the text named by `source`) and a
normalised value. CPR numbers are reported masked (`DDMMYY-XXXX`) so the full number never
travels on the bus or into logs. What is tenant-specific (case-number patterns, the case
register, the KLE plan, unit names) comes in through `Knowledge`; `extract()` without it uses
the formats of the major ESDH systems and nothing else.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from itertools import compress, islice
from typing import Any

from shared.contracts import Entity
from shared.personal import cpr_digest

from .addressee import Addressees
from .lemmas import lemma, tokens, word_spans, words
from .signals import sender_signals

_LETTERS = "A-Za-zÆØÅæøå"
_PLATE = re.compile(rf"(?<![\w-])([{_LETTERS}]{{2}})[ -]?(\d{{2}})[ -]?(\d{{3}})(?![\w-])")
# What every plate holds, found from its first digit (a pattern that begins with a digit is
# searched fast): few texts have it, and only those are scanned with _PLATE.
_PLATE_HINT = re.compile(
    rf"\d(?:(?<=[{_LETTERS}]{{2}}\d)|(?<=[{_LETTERS}]{{2}}[ -]\d))\d[ -]?\d{{3}}")
ESDH_PATTERNS: tuple[tuple[str, str], ...] = (
    ("sbsys", r"\b\d{2}\.\d{2}\.\d{2}-[A-ZÆØÅ]\d{2}-\d{1,6}-\d{2}\b"),
    ("getorganized", r"\b[A-ZÆØÅ]{2,5}-\d{4}-\d{6}\b"),
    ("nova", r"\bS\d{4}-\d{4,6}\b"),
)
# A text each of these formats needs (a cheap search that finds nothing in most mail spares
# the pattern's own scan, which tests a word boundary at every character).
_ESDH_HINTS = {re.compile(rx): re.compile(hint) for rx, hint in zip(
    (rx for _, rx in ESDH_PATTERNS), (r"-[A-ZÆØÅ]\d", r"-\d{4}-", r"S\d{4}-"), strict=True)}
# What citizens write: "sagsnr. 131-25", "j.nr. 2024-123", "jeres ref.: 05.09.04-131-25".
_LOOSE_CASE = re.compile(
    r"\b(?:sags?(?:nr|nummer)?|j\.?\s?nr|journal(?:nr|nummer)|(?:jeres|vores|deres|din)\s+ref"
    r"(?:erence)?|ref(?:\.|erence)?(?:nr)?)\.?\s*:?\s*(?:nr\.?\s*)?"
    r"([A-ZÆØÅ0-9][A-ZÆØÅ0-9.\-/]*\d)", re.IGNORECASE)
_LOOSE_WORDS = ("sag", "j.", "jnr", "j nr", "journal", "ref")
_DASH_DIGIT = re.compile(r"[-/]\d")
# The "not after a digit or hyphen" test follows the first digit ((?<![\d-])\d\d as
# \d(?<![\d-]\d)\d, the same matches): a pattern that begins with a digit lets the regex engine
# skip to the next digit instead of trying the look-behind at every character (3x faster).
_CPR = re.compile(r"(\d(?<![\d-]\d)\d)(\d{2})(\d{2})-?(\d{4})(?![\d-])")
_CVR = re.compile(r"(?<![\d-])(?:cvr[.\s-]*(?:nr\.?|nummer)?\s*:?\s*)(\d{2} ?\d{2} ?\d{2} ?\d{2})"
                  r"(?![\d-])", re.IGNORECASE)
_CVR_WEIGHTS = (2, 7, 6, 5, 4, 3, 2, 1)
# The look-behind after the first digit as in _CPR.
_KLE = re.compile(r"(\d(?<![\d.\-]\d)\d)(?:\.(\d{2}))?(?:\.(\d{2}))?(?:[ -]([A-ZÆØÅ]\d{2}))?"
                  r"(?![\d.]\d|-\d)")
_KLE_CONTEXT = re.compile(r"\bkle\b|emne(?:nr|nummer)", re.IGNORECASE)


@dataclass(frozen=True)
class RegisteredCase:
    """A case as the ESDH party search sees it."""

    number: str
    party: str  # lower-cased
    plates: frozenset[str]  # licence plates in the title
    clerk: str  # the clerk's full name, lower-cased
    # Title parts a writer repeats, lower-cased: its topic ("ejendomsskat"), an address
    # ("birkevej 50") and phrases of three words or more ("ingeniør til vej og park").
    topic: str = ""
    addresses: tuple[str, ...] = ()
    phrases: tuple[str, ...] = ()
    open: bool = True


_ADDRESS = re.compile(r"^\w[\w.\- ]*\s\d{1,4}[a-z]?$", re.IGNORECASE)


def title_marks(title: str, party: str) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    """A case title's topic (its first part), addresses and longer phrases."""
    parts = [p.strip().lower() for p in re.split(r"\s+-\s+", title)]
    parts = [p for p in parts if p and p != party.lower()]
    topic = parts[0] if parts and not _ADDRESS.match(parts[0]) else ""
    return (topic, tuple(p for p in parts if _ADDRESS.match(p)),
            tuple(p for p in parts if len(p.split()) >= 3 and not _ADDRESS.match(p)))


@dataclass(frozen=True)
class Knowledge:
    """What the extractor knows about one tenant (built once at start-up)."""

    case_patterns: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
        (name, re.compile(rx)) for name, rx in ESDH_PATTERNS)
    cases: Mapping[str, tuple[str | None, str | None]] = field(default_factory=dict)
    kle_codes: frozenset[str] | None = None
    # lemma sequence -> (entity kind, value): department names and synonyms, rule phrases
    phrases: Mapping[tuple[str, ...], tuple[str, str]] = field(default_factory=dict)
    own_domains: frozenset[str] = frozenset()
    # The cases as the ESDH party search sees them.
    register: tuple[RegisteredCase, ...] = ()
    # The installation's key for CPR fingerprints (shared/personal.py); None: no fingerprints.
    cpr_key: bytes | None = None
    # Unit name words and clerks' names, for the units a letter greets (addressee.py).
    addressees: Addressees = field(default_factory=Addressees)

    _by_suffix: dict[str, list[str]] = field(default_factory=dict, init=False, repr=False)
    # Every party, address and title phrase of the register in one pattern, and the cases
    # each names: one pass over a text finds the few cases worth scoring.
    _names: re.Pattern[str] | None = field(default=None, init=False, repr=False)
    _named: dict[str, list[int]] = field(default_factory=dict, init=False, repr=False)
    _by_serial: dict[str, list[int]] = field(default_factory=dict, init=False, repr=False)
    _by_plate: dict[str, list[int]] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        index: dict[str, list[str]] = {}
        for number in self.cases:
            index.setdefault(_suffix(number), []).append(number)
        object.__setattr__(self, "_by_suffix", index)
        named: dict[str, list[int]] = {}
        serial: dict[str, list[int]] = {}
        plate: dict[str, list[int]] = {}
        for i, case in enumerate(self.register):
            for name in {case.party, *case.addresses, *case.phrases} - {""}:
                named.setdefault(name, []).append(i)
            serial.setdefault(case.number.split("-")[-2], []).append(i)
            for p in case.plates:
                plate.setdefault(p, []).append(i)
        object.__setattr__(self, "_named", named)
        object.__setattr__(self, "_by_serial", serial)
        object.__setattr__(self, "_by_plate", plate)
        if named:
            # A lookahead finds overlapping names too; the longest name that ends at a word
            # boundary is taken at each position.
            object.__setattr__(self, "_names", re.compile(
                rf"(?<!\w)(?=({_longest_first(named)})(?!\w))"))

    def confirm_case(self, candidate: str) -> str | None:
        """The register's case number for `candidate`, when the register confirms it: the
        exact number, or a loose "131-25" whose serial and year name exactly one case."""
        if candidate in self.cases:
            return candidate
        hits = self._by_suffix.get(_suffix(candidate), [])
        return hits[0] if len(hits) == 1 else None


    def search(self, text: str, sender_name: str, plates: frozenset[str],
               serials: frozenset[str]) -> str | None:
        """The one case a writer refers to without its number, as a clerk would find it in
        the ESDH system. Worth 2: the party (the sender, or a name in the text), a licence
        plate of the case title, a bare serial ("sagsnr 1772"), a phrase of four words or more
        of the title. Worth 1: the title's address, a shorter phrase, and, only beside another
        sign, the title's topic ("ejendomsskat" in "ejendomsskattebillet") and the clerk's
        name. An open case needs 2, a closed one 3 (a writer coming back to a finished matter
        names it more fully); the best score must be unique, a tie is no match."""
        lowered = text.lower()
        sender = sender_name.strip().lower()
        found = {m.group(1) for m in self._names.finditer(lowered)} if self._names else set()
        candidates = {i for name in found | {sender} for i in self._named.get(name, ())}
        candidates.update(i for s in serials for i in self._by_serial.get(s, ()))
        candidates.update(i for p in plates for i in self._by_plate.get(p, ()))
        scored: list[tuple[int, str]] = []
        for i in sorted(candidates):
            case = self.register[i]
            party_hit = bool(case.party) and (case.party == sender or case.party in found)
            score = 2 * party_hit + 2 * bool(case.plates & plates)
            score += 2 * (case.number.split("-")[-2] in serials)
            score += any(a in found for a in case.addresses)
            score += max((1 + (len(p.split()) >= 4) for p in case.phrases if p in found),
                         default=0)
            if score and len(case.topic) >= 5 and case.topic in lowered:
                score += 1
            if case.clerk and score and _names_clerk(text, lowered, case.clerk):
                score += 1
            if score >= (2 if case.open else 3):
                scored.append((score, case.number))
        if not scored:
            return None
        best = max(s for s, _ in scored)
        hits = [n for s, n in scored if s == best]
        return hits[0] if len(hits) == 1 else None


_LONG_NAME = 200  # characters: see _longest_first


def _longest_first(names: Iterable[str]) -> str:
    """An alternation of `names` that, like "a|b|..." with the longest names first, takes the
    longest name a text has at a position, factored on common prefixes ("birkevej (?:50|5)"):
    a position then costs the length of a name, not a test of every name of the register.
    Names of _LONG_NAME characters or more stay plain alternatives in front: the trie is built
    by recursion, one level per branching point, which a very long name must not deepen."""
    names = set(names)
    long = sorted((n for n in names if len(n) >= _LONG_NAME), key=lambda n: (-len(n), n))
    trie: dict[str, dict[str, Any]] = {}
    for name in names.difference(long):
        node = trie
        for char in name:
            node = node.setdefault(char, {})
        node[""] = {}  # a name ends here

    def branch(node: dict[str, Any]) -> str:
        longer = []
        for char, rest in node.items():
            if not char:
                continue
            run = char
            while len(rest) == 1 and "" not in rest:  # a chain without choices: one literal
                (char, rest), = rest.items()
                run += char
            longer.append(re.escape(run) + branch(rest))
        if not longer:
            return ""
        if "" in node:  # the longer names first, then the one ending here (backtracking)
            return "(?:" + "|".join(longer) + "|)"
        return longer[0] if len(longer) == 1 else "(?:" + "|".join(longer) + ")"

    factored = branch(trie)
    if not long:
        return factored
    return "(?:" + "|".join([*map(re.escape, long), *([factored] if trie else [])]) + ")"


def _names_clerk(text: str, lowered: str, clerk: str) -> bool:
    """The clerk's full name, a greeting with the first name, or the capitalised first name
    as a word ("fik at vide af Bo", "Ullas mail")."""
    first = clerk.split()[0].capitalize()
    return (_has_name(lowered, clerk) or _greets(text, clerk)
            or re.search(rf"(?<!\w){re.escape(first)}s?(?!\w)", text) is not None)


def _has_name(lowered_text: str, name: str) -> bool:
    # The substring test first: it is cheap and almost always false.
    return name in lowered_text and re.search(
        r"(?<!\w)" + re.escape(name) + r"(?!\w)", lowered_text) is not None


def _greets(text: str, clerk: str) -> bool:
    """ "Hej Amalie", "Kære Bo", "Att. Camilla": the clerk's first name as the addressee."""
    first = re.escape(clerk.split()[0])
    return re.search(rf"(?:hej|kære|til|att\.?|dear)\s+{first}\b", text, re.IGNORECASE) is not None


_BARE_SERIAL = re.compile(r"\b(?:sags?(?:nr|nummer)?|j\.?\s?nr|ref)\.?\s*:?\s*(\d{3,6})\b",
                          re.IGNORECASE)


def _suffix(number: str) -> str:
    """The serial and year of a case number ("05.09.04-K07-131-25" -> "131-25")."""
    parts = re.split(r"[-/]", number.strip().upper())
    return "-".join(parts[-2:]) if len(parts) >= 2 else number.upper()


def compile_phrases(entries: Iterable[tuple[str, str, str]],
                    ) -> dict[tuple[str, ...], tuple[str, str]]:
    """(text, kind, value) entries -> the lemma-sequence table `Knowledge.phrases` wants."""
    table: dict[tuple[str, ...], tuple[str, str]] = {}
    for text, kind, value in entries:
        key = tuple(lemma(w) for w in words(text))
        if key:
            table.setdefault(key, (kind, value))
    return table


def licence_plates(text: str, source: str = "body") -> Iterator[Entity]:
    if not _PLATE_HINT.search(text):
        return
    for m in _PLATE.finditer(text):
        letters, a, b = m.groups()
        yield Entity(kind="licence_plate", value=f"{letters.upper()}{a}{b}", start=m.start(),
                     end=m.end(), source=source)


def case_numbers(text: str, source: str = "body", knowledge: Knowledge | None = None,
                 ) -> Iterator[Entity]:
    """Case numbers the register confirms (`case_number`) and unconfirmed `case_candidate`s.

    Without a register (no knowledge) the formal ESDH formats count as case numbers, as before.
    """
    k = knowledge or Knowledge()
    seen: set[tuple[int, int]] = set()
    for system, pattern in k.case_patterns:
        hint = _ESDH_HINTS.get(pattern)
        if hint is not None and not hint.search(text):
            continue
        for m in pattern.finditer(text):
            seen.add(m.span())
            yield _case(m.group(), m.start(), m.end(), f"{source}:{system}", knowledge)
    lowered = text.lower()
    if not any(word in lowered for word in _LOOSE_WORDS) or not _DASH_DIGIT.search(text):
        # The loose pattern's words are missing, or the "-" or "/" before a digit that a
        # number must hold (below): skip its slow case-blind scan.
        return
    for m in _LOOSE_CASE.finditer(text):
        start, end = m.span(1)
        if any(s <= start < e for s, e in seen) or not re.search(r"\d.*[-/]\d", m.group(1)):
            continue
        yield _case(m.group(1), start, end, f"{source}:loose", knowledge)


def _case(candidate: str, start: int, end: int, source: str, k: Knowledge | None) -> Entity:
    if k is None:
        return Entity(kind="case_number", value=candidate, start=start, end=end, source=source)
    confirmed = k.confirm_case(candidate)
    if confirmed is None:
        return Entity(kind="case_candidate", value=candidate, start=start, end=end,
                      source=source)
    return Entity(kind="case_number", value=confirmed, start=start, end=end, source=source)


def cpr_numbers(text: str, source: str = "body", key: bytes | None = None) -> Iterator[Entity]:
    for m in _CPR.finditer(text):
        dd, mm, yy, serial = m.groups()
        if not _valid_date(int(dd), int(mm), int(yy)):
            continue
        yield Entity(kind="cpr", value=f"{dd}{mm}{yy}-XXXX", start=m.start(), end=m.end(),
                     source=source,
                     digest=cpr_digest(f"{dd}{mm}{yy}{serial}", key) if key else None)


def _valid_date(day: int, month: int, year: int) -> bool:
    # The century comes from the serial's first digit; any century with a valid date will do
    # for detection (29 February must be checked against a leap year, 2000 is one).
    try:
        date(2000 + year, month, day)
    except ValueError:
        try:
            date(1900 + year, month, day)
        except ValueError:
            return False
    return True


def valid_cvr(digits: str) -> bool:
    """Modulus 11 with the weights 2,7,6,5,4,3,2,1 (the check digit is the last)."""
    if len(digits) != 8 or not digits.isdigit() or digits[0] == "0":
        return False
    return sum(int(d) * w for d, w in zip(digits, _CVR_WEIGHTS, strict=True)) % 11 == 0


def cvr_numbers(text: str, source: str = "body") -> Iterator[Entity]:
    """CVR numbers named as such ("CVR 12345678", "cvr-nr.: 1234 5678") that pass modulus 11."""
    if "cvr" not in text.lower():
        return  # spares the case-blind scan (no other letters match c, v, r case-blind)
    for m in _CVR.finditer(text):
        digits = m.group(1).replace(" ", "")
        if valid_cvr(digits):
            yield Entity(kind="cvr", value=digits, start=m.start(1), end=m.end(1), source=source)


def kle_numbers(text: str, source: str = "body", plan: frozenset[str] | None = None,
                ) -> Iterator[Entity]:
    """KLE numbers: NN.NN.NN or NN.NN anywhere, a bare NN only after "KLE"; with a plan loaded
    only numbers the plan has count. A handlingsfacet (G01, K07, ...) is kept with the number."""
    # A bare NN, and an NN.NN ("12.30" is a time or an amount far more often than a KLE group),
    # need "KLE" or "emnenr" just before. A text without those words anywhere spares the search
    # per number (casefold, as "K", the Kelvin sign, is a k to the case-blind pattern).
    folded = text.casefold()
    named = "kle" in folded or "emne" in folded
    for m in _KLE.finditer(text):
        main, group, topic, facet = m.groups()
        if (group is None or topic is None and facet is None) and not (
                named and _KLE_CONTEXT.search(text, max(0, m.start() - 12), m.start())):
            continue
        code = ".".join(p for p in (main, group, topic) if p is not None)
        if plan is not None and code not in plan:
            continue
        value = f"{code} {facet}" if facet else code
        yield Entity(kind="kle", value=value, start=m.start(), end=m.end(), source=source)


_Table = Mapping[tuple[str, ...], tuple[str, str]]
_SHAPES: dict[int, tuple[_Table, int, frozenset[str]]] = {}


def _shape(table: _Table) -> tuple[int, frozenset[str]]:
    """The longest phrase and the set of first words of a table (built once per table; the
    table is kept with it, so a reused id of a freed table cannot match)."""
    hit = _SHAPES.get(id(table))
    if hit is None or hit[0] is not table:
        hit = (table, max(len(k) for k in table), frozenset(k[0] for k in table))
        _SHAPES[id(table)] = hit
    return hit[1], hit[2]


def phrases(text: str, table: Mapping[tuple[str, ...], tuple[str, str]], source: str = "body",
            ) -> Iterator[Entity]:
    """Phrases of the table (department names, synonyms, rule phrases) found on lemmas."""
    if not table:
        return
    longest, firsts = _shape(table)
    # Lemmas of the words first; match objects only when a phrase is found.
    lems = tokens(text)[1]
    spans: list[tuple[int, int]] = []  # of the words up to the last phrase found so far
    more: Iterator[tuple[int, int]] | None = None
    # Only where a phrase can start (the words picked in C, not in a Python loop).
    for i in compress(range(len(lems)), map(firsts.__contains__, lems)):
        for n in range(min(longest, len(lems) - i), 0, -1):
            hit = table.get(tuple(lems[i:i + n]))
            if hit is not None:
                more = more or word_spans(text)
                spans += islice(more, max(0, i + n - len(spans)))
                yield Entity(kind=hit[0], value=hit[1], start=spans[i][0],
                             end=spans[i + n - 1][1], source=source)
                break


@lru_cache(maxsize=100_000)
def _keyword(lemma_: str) -> Entity:
    # Entities are frozen, so one per lemma can be shared; building dozens per item was a
    # tenth of the extraction time.
    return Entity(kind="keyword", value=lemma_, source="text")


_AT_LEAST_3 = (2).__lt__  # n -> 2 < n, called from C


def keywords(*texts: str, limit: int = 300) -> list[str]:
    """The distinct lemmas of the texts (words of three letters or more), sorted."""
    found: set[str] = set()
    for t in texts:
        ws, ls = tokens(t)
        found.update(compress(ls, map(_AT_LEAST_3, map(len, ws))))
    return sorted(found)[:limit]


def extract(subject: str, body: str, *, sender: str = "", sender_name: str = "",
            auto_submitted: bool = False,
            knowledge: Knowledge | None = None, headers: Mapping[str, str] | None = None,
            max_keywords: int = 300) -> tuple[Entity, ...]:
    """All entities of an item, de-duplicated on (kind, value), in a stable order."""
    k = knowledge
    found: list[Entity] = []
    for source, text in (("subject", subject), ("body", body)):
        found += licence_plates(text, source)
        found += case_numbers(text, source, k)
        found += cpr_numbers(text, source, k.cpr_key if k else None)
        found += cvr_numbers(text, source)
        found += kle_numbers(text, source, k.kle_codes if k else None)
        if k is not None:
            found += phrases(text, k.phrases, source)
    if k is not None:
        found += (Entity(kind="addressee", value=u, source="body")
                  for u in sorted(k.addressees.units(body)))
        if elsewhere := k.addressees.elsewhere(body):
            found.append(Entity(kind="other_municipality", value=elsewhere, source="body"))
    found += sender_signals(subject, body, sender, auto_submitted=auto_submitted,
                            headers=headers or {},
                            own_domains=k.own_domains if k else frozenset())
    # A clerk looks a writer's matter up in the register; mail no person wrote (newsletters,
    # notifications, automatic replies) names no matter of its own, however many a case
    # title's words it repeats.
    automatic = {"newsletter", "commercial", "auto_reply", "delivery_report", "read_receipt"}
    registered: Entity | None = None
    if (k is not None and k.register and not any(e.kind == "case_number" for e in found)
            and not any(e.kind in automatic for e in found)):
        plates = frozenset(e.value for e in found if e.kind == "licence_plate")
        serials = frozenset(m.group(1) for t in (subject, body) for m in _BARE_SERIAL.finditer(t))
        hit = k.search(f"{subject}\n{body}", sender_name, plates, serials)
        if hit is not None:
            registered = Entity(kind="case_number", value=hit, source="register")
    # Two people born on the same day share a masked CPR value: their fingerprints tell them apart.
    seen: set[tuple[str, str, str | None]] = set()
    unique = []
    for e in found:
        if (e.kind, e.value, e.digest) not in seen:
            seen.add((e.kind, e.value, e.digest))
            unique.append(e)
    # The keywords (most of an item's entities) come after these, distinct among themselves:
    # only a phrase of kind "keyword" can repeat one, so they are checked only then.
    named: Iterable[Entity] = map(_keyword, keywords(subject, body, limit=max_keywords))
    if any(e.kind == "keyword" for e in unique):
        named = (e for e in named if ("keyword", e.value, None) not in seen)
    unique += named
    if registered is not None and ("case_number", registered.value, None) not in seen:
        unique.append(registered)
    return tuple(unique)
