"""Mail in English or German gets the Danish words of its meaning; Danish mail does not."""

from __future__ import annotations

from services.classifier.document import Document
from services.classifier.features import UnitIndex, inputs
from services.classifier.glossary import danish
from services.classifier.lemmas import lemmas

INDEX = UnitIndex({}, (), {})


def own(subject: str, body: str) -> list[str]:
    return inputs(Document(subject=subject, body=body), (), INDEX, {}).own.split()


def test_foreign_words_bring_their_danish_meaning() -> None:
    words = own("Waste collection", "Our bins were not emptied and there are rats by the "
                "recycling station. Where do we take old batteries?")
    assert {"affald", "tømning", "rotte", "genbrug", "batteri"} <= set(words)
    assert {"børnehave", "flytning"} <= set(own("Kindergartenplatz", "Wir planen einen Umzug "
                                                 "nach Eksempelby."))


def test_danish_mail_keeps_its_own_words() -> None:
    # "park", "bus" and "plan" are glossary words too: a Danish letter must not get them twice.
    text = ("Min skraldespand er ikke tømt, og der er fire rotter ved huset. Bussen holder ved "
            "parken, og vi har en plan. Kan I hjælpe?")
    words = own("Skrald", text)
    assert "brand" not in words and "affald" not in words  # "fire" is four here
    assert words == lemmas(f"Skrald\n{text}")  # its own lemmas, nothing added


def test_homographs_and_plurals() -> None:
    assert danish("fire") == () and danish("kind") == ()
    assert danish("permits") == ("tilladelse",) and danish("batteries") == ("batteri",)
