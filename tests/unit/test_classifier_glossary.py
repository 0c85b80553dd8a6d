"""Mail in English, German, Polish, Ukrainian or Arabic gets the Danish words of its meaning;
Danish mail does not."""

from __future__ import annotations

from pathlib import Path

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


def test_polish_inflected_forms_find_their_stem() -> None:
    assert danish("śmieciami") == ("affald",) and danish("odpadów") == ("affald",)
    assert danish("smieciami") == ("affald",)  # typed without diacritics
    assert danish("przedszkola") == ("børnehave",) and danish("żłobka") == ("vuggestue",)
    # The longest stem wins: "mieszkaniowy" (housing, adj.) is housing support, not a flat.
    assert danish("mieszkaniowy") == ("boligstøtte",)
    assert danish("mieszkania") == ("bolig", "lejlighed")
    assert danish("chorobowy") == ("sygedagpenge",) and danish("choroby") == ("sygdom",)


def test_ukrainian_inflected_forms_find_their_stem() -> None:
    assert danish("сміттям") == ("affald",) and danish("відходів") == ("affald",)
    assert danish("школі") == ("skole",) and danish("садка") == ("børnehave",)
    assert danish("лікаря") == ("læge",) and danish("лікарня") == ("sygehus",)
    assert danish("лікарняний") == ("sygedagpenge",)


def test_arabic_clitics_and_endings_come_off() -> None:
    assert danish("والنفايات") == ("affald",)  # and + the + waste (plural)
    assert danish("بالمدرسة") == ("skole",) and danish("للأطفال") == ("barn",)
    assert danish("وبالمستشفى") == ("sygehus",)
    assert danish("الصحة") == ("sundhed",)  # a two-letter entry, found once ال and ة are off
    # Clitics come off first: "and the support" is not "parent", but "parents" still is.
    assert danish("والدعم") == ("støtte",) and danish("والدين") == ("forældre",)
    assert danish("مكتبة") == ("bibliotek",) and danish("مكتب") == ()  # library, not office


def test_short_words_and_danish_words_do_not_match_a_stem() -> None:
    assert danish("szk") == () and danish("шко") == () and danish("odp") == ()
    assert danish("drog") == () and danish("basen") == ()  # Danish words, not Polish ones
    assert danish("practice") == ()  # no Polish stem shorter than "praca" for work
    assert danish("عملاق") == ()  # "giant": the three-letter "عمل" (work) must be the whole word


def test_a_polish_letter_gets_danish_words() -> None:
    words = own("Odbiór śmieci", "Dzień dobry, od dwóch tygodni nikt nie odebrał odpadów z "
                "naszej ulicy. Proszę o informację, kiedy przyjedzie śmieciarka.")
    assert {"affald", "gade", "information"} <= set(words)


def test_glossary_words_meet_the_profiles_form() -> None:
    # A profile that says "borger" holds the lemma of "borger"; a Polish letter's "obywatel"
    # must arrive at that same form (lemmatising an already lemmatised "borge" gives "borg").
    from services.classifier.features import inputs, profile_inputs
    from services.classifier.pipeline import unit_index
    from shared.tenant import Tenant

    tenant = Tenant(Path(__file__).resolve().parents[2] / "deploy" / "examples" / "eksempelby")
    doc = Document(body="Dzień dobry, jestem obywatelem Polski i mieszkam tutaj od roku.")
    own = inputs(doc, (), unit_index(tenant), {}).own.split()
    assert profile_inputs("borger").own in own
