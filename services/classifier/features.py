"""Turns a document and its entities into the model's inputs (pure).

Three views of an item: the writer's own words (subject, body without quoted replies and
signature, attachment and form text) as lemmas and as characters; the quoted replies and
signature as lemmas, later down-weighted; and entity tokens. Entity tokens that name a unit
(the owner of a confirmed case, of a cited KLE number, of the mailbox it arrived in, a
department named in the text) are what lets the model generalise to units it has seen few
items of: unit profiles carry the same tokens.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import compress
from operator import attrgetter

from shared.contracts import Entity

from .document import Document
from .glossary import danish
from .lemmas import is_danish, lemma, lemmas, words
from .parts import split_body

_KIND = attrgetter("kind")
_NAMING = frozenset({"sender_kind", "department", "addressee", "case_number", "kle"})
_FLAGS = ("licence_plate", "cpr", "cvr", "case_number", "case_candidate", "kle", "auto_reply",
          "delivery_report", "read_receipt", "newsletter", "commercial", "disguised_attachment")


@dataclass(frozen=True)
class Inputs:
    own: str  # lemmas, space separated
    own_raw: str  # lower-cased text for character n-grams
    quoted: str  # lemmas of quoted replies and signature
    tokens: str  # entity tokens, space separated
    # Written mostly in another language than Danish (a profile text: in another language).
    foreign: bool = False
    # Lemmas of the addressee lines ("Kreditorbogholderiet", "Att.: Visitationen"), see
    # addressee.py: compared with the units' profiles on their own.
    addressee: str = ""


@dataclass(frozen=True)
class UnitIndex:
    """Where entity values point: mailbox -> unit, KLE number -> unit, form -> unit."""

    mailboxes: Mapping[str, str]
    kle_prefixes: tuple[tuple[str, str], ...]  # (prefix, unit), longest prefix first
    forms: Mapping[str, str]

    def kle_owner(self, code: str) -> str | None:
        code = code.split(" ")[0]
        for prefix, unit in self.kle_prefixes:
            if code == prefix or code.startswith(prefix + "."):
                return unit
        return None


def entity_tokens(doc: Document, entities: tuple[Entity, ...], index: UnitIndex,
                  cases: Mapping[str, tuple[str | None, str | None]]) -> list[str]:
    tokens = [f"channel_{doc.channel}"]
    kinds = set(map(_KIND, entities))
    tokens += [f"has_{k}" for k in _FLAGS if k in kinds]
    # Most entities are keywords, which give no token: the loop sees only the kinds that do.
    for e in compress(entities, map(_NAMING.__contains__, map(_KIND, entities))):
        if e.kind == "sender_kind":
            tokens.append(f"sender_{e.value}")
        elif e.kind == "department":
            tokens.append(f"unit_named_{e.value}")
        elif e.kind == "addressee":
            tokens.append(f"unit_addressed_{e.value}")
        elif e.kind == "case_number" and (owner := cases.get(e.value, (None, None))[0]):
            tokens.append(f"unit_case_{owner}")
        elif e.kind == "kle" and (owner := index.kle_owner(e.value)):
            tokens.append(f"unit_kle_{owner}")
    if unit := index.mailboxes.get(doc.mailbox.lower()):
        tokens.append(f"unit_mailbox_{unit}")
    if doc.form_id:
        tokens.append(f"form_{doc.form_id}")
        if unit := index.forms.get(doc.form_id):
            tokens.append(f"unit_form_{unit}")
    if not (doc.subject.strip() or doc.body.strip() or any(a.strip() for a in doc.attachments)):
        tokens.append("no_text")
    return tokens


def inputs(doc: Document, entities: tuple[Entity, ...], index: UnitIndex,
           cases: Mapping[str, tuple[str | None, str | None]],
           addressee: Sequence[str] = ()) -> Inputs:
    parts = split_body(doc.body)
    own = "\n".join((doc.subject, parts.own, *doc.attachments))
    words_ = words(own)
    found = list(map(lemma, words_))  # lemmas(own), without finding the words twice
    # A letter mostly in another language gets the Danish words of its meaning too
    # (glossary.py); Danish mail keeps its own words only.
    foreign = bool(words_) and sum(map(is_danish, words_)) < 0.5 * len(words_)
    if foreign:
        found += [lemma(d) for w in words_ for d in danish(w)]
    return Inputs(own=" ".join(found), own_raw=own.lower(),
                  quoted=" ".join(lemmas(parts.quoted + "\n" + parts.signature)),
                  tokens=" ".join(entity_tokens(doc, entities, index, cases)), foreign=foreign,
                  addressee=" ".join(lemmas(" ".join(addressee))))


def profile_inputs(text: str, foreign: bool = False) -> Inputs:
    """A unit profile text in the items' form. Only its words are read (UnitRanker.build):
    what points at a unit (mailbox, KLE number, form, case) is a pair feature of the item."""
    return Inputs(own=" ".join(lemmas(text)), own_raw=text.lower(), quoted="", tokens="",
                  foreign=foreign)
