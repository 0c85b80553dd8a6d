"""KL's KLE plan (Kommunernes Landsforenings Emnesystematik): parsing and a small JSON form.

`parse_emneplan` reads the XML of KLE-Emneplan (version 2.0: Hovedgruppe > Gruppe > Emne with
titles and guidance, "Historisk/UdgaaetDato" marking numbers no longer in use), as a file or as
KLE-online's REST service sends it (`kle_online.py`; its `*Stikord` become keywords). The
project does not ship KL's data: `postfordeler kle import` writes the plan to the tenant's
`kle.json`.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET  # noqa: S405 - KL's own plan file, expat guards entity bombs
from dataclasses import asdict, dataclass

from shared.errors import InvalidInput

_LEVELS = (("Hovedgruppe", "HovedgruppeNr", "HovedgruppeTitel", "HovedgruppeVejledning",
            "HovedgruppeAdministrativInfo"),
           ("Gruppe", "GruppeNr", "GruppeTitel", "GruppeVejledning", "GruppeAdministrativInfo"),
           ("Emne", "EmneNr", "EmneTitel", "EmneVejledning", "EmneAdministrativInfo"))
_CODE = re.compile(r"^\d{2}(?:\.\d{2}){0,2}$")


@dataclass(frozen=True)
class KleEntry:
    code: str
    title: str
    guidance: str = ""
    keywords: tuple[str, ...] = ()

    @property
    def group(self) -> str:
        return self.code[:5]


@dataclass(frozen=True)
class KlePlan:
    published: str
    entries: dict[str, KleEntry]

    def codes(self) -> frozenset[str]:
        return frozenset(self.entries)

    def under(self, prefix: str) -> list[KleEntry]:
        return [e for c, e in self.entries.items() if c == prefix or c.startswith(prefix + ".")]

    def to_json(self) -> str:
        return json.dumps({"published": self.published,
                           "entries": [asdict(e) for e in self.entries.values()]},
                          ensure_ascii=False, indent=0)

    @classmethod
    def from_json(cls, text: str) -> KlePlan:
        data = json.loads(text)
        entries = {e["code"]: KleEntry(e["code"], e["title"], e.get("guidance", ""),
                                       tuple(e.get("keywords", ()))) for e in data["entries"]}
        return cls(data.get("published", ""), entries)

    def with_keywords(self, keywords: dict[str, list[str]]) -> KlePlan:
        """Add keywords per KLE number (e.g. from OS2KLE's keyword file)."""
        entries = {c: KleEntry(e.code, e.title, e.guidance,
                               tuple(dict.fromkeys((*e.keywords, *keywords.get(c, ())))))
                   for c, e in self.entries.items()}
        return KlePlan(self.published, entries)


def _text(element: ET.Element | None) -> str:
    if element is None:
        return ""
    return re.sub(r"\s+", " ", " ".join(element.itertext())).strip()


def _keywords(element: ET.Element) -> tuple[str, ...]:
    # HovedgruppeStikord, GruppeStikord, EmneStikord and EmneOgHandlingsfacetStikord (REST form)
    found = (_text(s.find("Tekst")) for s in element if s.tag.endswith("Stikord"))
    return tuple(dict.fromkeys(k for k in found if k))


def _expired(admin: ET.Element | None) -> bool:
    return admin is not None and admin.find("Historisk/UdgaaetDato") is not None


def parse_emneplan(data: bytes, *, include_expired: bool = False) -> KlePlan:
    """The plan in KLE-Emneplan XML; raises InvalidInput when it is not such a file."""
    try:
        root = ET.fromstring(data)  # noqa: S314 - see the import
    except ET.ParseError as exc:
        raise InvalidInput(f"not KLE-Emneplan XML: {exc}") from exc
    if root.tag != "KLE-Emneplan":
        raise InvalidInput(f"not KLE-Emneplan XML: root element is <{root.tag}>")
    entries: dict[str, KleEntry] = {}

    def walk(parent: ET.Element, depth: int) -> None:
        tag, nr, title, guidance, admin = _LEVELS[depth]
        for el in parent.findall(tag):
            code = _text(el.find(nr))
            if not _CODE.match(code):
                raise InvalidInput(f"KLE-Emneplan: {tag} with invalid number {code!r}")
            if include_expired or not _expired(el.find(admin)):
                entries[code] = KleEntry(code, _text(el.find(title)), _text(el.find(guidance)),
                                         _keywords(el))
                if depth + 1 < len(_LEVELS):
                    walk(el, depth + 1)

    walk(root, 0)
    if not entries:
        raise InvalidInput("KLE-Emneplan XML without any Hovedgruppe")
    return KlePlan(_text(root.find("UdgivelsesDato")), entries)


def parse_keywords(text: str) -> dict[str, list[str]]:
    """OS2KLE-style keyword file: CSV/TSV lines of `KLE number; keyword` (header optional)."""
    result: dict[str, list[str]] = {}
    for line in text.splitlines():
        parts = [p.strip().strip('"') for p in re.split(r"[;,\t]", line, maxsplit=1)]
        if len(parts) == 2 and _CODE.match(parts[0]) and parts[1]:
            result.setdefault(parts[0], []).append(parts[1])
    return result
