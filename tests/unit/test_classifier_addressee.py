"""Whom a letter greets or names in its recipient block (addressee.py)."""

from __future__ import annotations

import pytest

from services.classifier.addressee import Addressees
from services.classifier.document import Document
from services.classifier.entities import Knowledge, extract
from services.classifier.features import UnitIndex, entity_tokens

BOOK = Addressees.build([
    ("oekonomi", "Økonomi og Opkrævning", (), ["Carsten Hedegaard", "Nanna Skov"]),
    ("hr", "HR og Løn", (), ["Pia Vestergaard", "Rasmus Olesen"]),
    ("it", "IT og Digitalisering", (), ["Thomas Majholt"]),
    ("vej-park", "Vej og Park", (), ["Hanne Nielsen", "Jens Rasmussen"]),
    ("parkering", "Parkering og Trafik", (), ["Tobias Bendtsen", "Thomas Lund"]),
    ("sundhed", "Sundhed og Omsorg", ("Visitationen",), ["Birgitte Egholm"]),
    ("dagtilbud", "Dagtilbud og Pladsanvisning", (), []),
    ("sekretariat", "Borgmester- og Direktionssekretariat", (), []),
], municipality="Eksempelby Kommune")


def test_greetings_name_a_unit_by_a_word_of_its_name() -> None:
    assert BOOK.units("Hej Økonomi\n\nDenne faktura er kommet til os.") == {"oekonomi"}
    assert BOOK.units("Dear HR team,\n\nI am writing about ...") == {"hr"}
    assert BOOK.units("Hi IT,\nmy laptop is broken") == {"it"}
    assert BOOK.units("Kære borgmester\n\nJeg skriver fordi ...") == {"sekretariat"}
    # A longer word may begin with the name's word; the longer name word wins.
    assert BOOK.units("Hej Pladsanvisningen\n") == {"dagtilbud"}
    assert BOOK.units("Til Parkering\nJeg har fået en bøde") == {"parkering"}
    assert BOOK.units("Til Eksempelby Kommune, opkrævningen\n") == {"oekonomi"}
    # A synonym counts as the name does.
    assert BOOK.units("Att.: Visitationen\n") == {"sundhed"}


def test_clerks_by_full_name_or_a_name_no_other_clerk_has() -> None:
    assert BOOK.units("Hej Hanne\n\nTak for sidst.") == {"vej-park"}
    assert BOOK.units("Att.: Nanna Skov\n") == {"oekonomi"}
    assert BOOK.units("Sehr geehrte Frau Egholm,\n") == {"sundhed"}
    # Two clerks called Thomas: the first name alone points nowhere, the full name does.
    assert BOOK.units("Hej Thomas\n") == set()
    assert BOOK.units("Hej Thomas Lund\n") == {"parkering"}


def test_a_letters_recipient_block_names_the_unit() -> None:
    letter = ("Gudrun Mikkelsen\nMosevej 3\n7990 Eksempelby\n\nEksempelby Kommune\n"
              "Økonomiafdelingen\nRådhustorvet 1\n7990 Eksempelby\n\nJeg har fået ...")
    assert BOOK.units(letter) == {"oekonomi"}


def test_only_the_opening_counts_not_sentences_or_quoted_mail() -> None:
    # "Hej." greets no one; the unit named later in the sentence is not an addressee.
    assert BOOK.units("Hej. Jeg har skrevet til Vej og Park før.\n") == set()
    # An English sentence that begins with "To" is no recipient line.
    assert BOOK.units("To avoid removal of your road data from the registry, settle the "
                      "invoice for parking and HR services now.\n") == set()
    # A forwarded message's header and old greeting belong to someone else.
    assert BOOK.units("Kan I tage den?\n\nFra: borger@example.com\nTil: vejpark@eksempelby.dk"
                      "\n\nHej Vej og Park\n") == set()
    # Names further down the letter do not count.
    body = "Hej\n" + "linje\n" * 25 + "Hej Økonomi\n"
    assert BOOK.units(body) == set()


def test_the_addressee_is_a_pointer_of_its_own() -> None:
    know = Knowledge(addressees=BOOK)
    found = extract("Stjålet pc", "Hej IT\n\nMin arbejds-pc er stjålet.", knowledge=know)
    assert [e.value for e in found if e.kind == "addressee"] == ["it"]
    doc = Document(subject="Stjålet pc", body="Hej IT\n\nMin arbejds-pc er stjålet.")
    tokens = entity_tokens(doc, found, UnitIndex({}, (), {}), {})
    assert "unit_addressed_it" in tokens


def test_a_letter_to_another_municipality_is_named() -> None:
    letter = ("Hans-Erik Toft\nSkovbrynet 19\n7992 Nabokøbing\n\nNabokøbing Kommune\nByg og Miljø\n"
              "Torvet 2\n7992 Nabokøbing\n\nVedr. jeres j.nr. 26/08813")
    assert BOOK.elsewhere(letter) == "Nabokøbing Kommune"
    assert BOOK.elsewhere("Til Nabokøbing Kommune\n\nJeg flytter ...") == "Nabokøbing Kommune"
    # A neighbour municipality writing to us names both; a greeting is no municipality.
    assert BOOK.elsewhere("Nabokøbing Kommune\nJobcenter\n\nEksempelby Kommune\nJobcentret\n"
                          "Rådhustorvet 1") is None
    assert BOOK.elsewhere("Hej kommune\nJeg har et spørgsmål") is None
    know = Knowledge(addressees=BOOK)
    assert [e.value for e in extract("", letter, knowledge=know)
            if e.kind == "other_municipality"] == ["Nabokøbing Kommune"]


def test_the_addressee_words_leave_out_what_every_unit_shares() -> None:
    letter = "Eksempelby Kommune\nKreditorbogholderiet\nRådhustorvet 1\n7990 Eksempelby\n"
    assert BOOK.words(letter) == ["kreditorbogholderiet"]
    assert BOOK.words("Til kommunen\n\nJeg skriver fordi ...") == []
    assert BOOK.words("Dear Sir or Madam,\n") == []
    assert BOOK.words("Til Eksempelby Kommune, Rådhuset\n") == []


def test_the_addressee_lines_are_compared_with_the_profiles() -> None:
    from services.classifier.features import Inputs, profile_inputs
    from services.classifier.model import PAIR_FEATURES, UnitRanker

    ranker = UnitRanker.build(["oekonomi", "sundhed"],
                              [(profile_inputs("faktura kreditorbogholderiet rykker"), "oekonomi"),
                               (profile_inputs("faktura betaling"), "oekonomi"),
                               (profile_inputs("visitationen hjemmehjælp"), "sundhed"),
                               (profile_inputs("visitationen rengøring"), "sundhed")], [], [])
    col = PAIR_FEATURES.index("addressee profile word")
    item = Inputs(own="vi rykke for betaling", own_raw="", quoted="", tokens="",
                  addressee="kreditorbogholderiet")
    plain = Inputs(own="vi rykke for betaling", own_raw="", quoted="", tokens="")
    feats = ranker.features([item, plain])
    assert feats[0, 0, col] > 0 and feats[0, 1, col] == 0
    assert feats[1, :, col].tolist() == [0.0, 0.0]


def test_a_sentence_after_a_greeting_is_no_addressee() -> None:
    assert BOOK.lines("Hej her er det brev jeg fik. Hvad betyder det\n") == []
    assert BOOK.lines("Til Eksempelby Kommune, Social og Handicap (voksne)\n") == [
        "Eksempelby Kommune, Social og Handicap (voksne)"]


@pytest.mark.parametrize("body", [
    "To whom it may concern,\n\nI would like to ask about my parking permit.",
    "Hi, is it possible to get a new bin?",
    "Hej, jeg hedder Hanne og bor på Mosevej 3.",
    "Hej, jeg vil gerne bo i kommunen.",
    "Hi, I am writing regarding my parking fine",
    "Til lykke med den nye skole!",
    "To af mine børn går i skole her.",
    "Hej - jeg har et spørgsmål om min løn.",
    # An employee's signature and a municipality line before body text are no recipient block.
    "Hej\n\nKan I se på det?\n\nMvh\nHanne Nielsen\nEksempelby Kommune\nVej og Park\n",
    "Eksempelby Kommune\nJeg skriver fordi min nabo har bygget et skur ved vejen og nu kan jeg "
    "ikke komme frem med bilen\n",
])
def test_sentences_signatures_and_function_words_address_no_one(body: str) -> None:
    assert BOOK.units(body) == set()


def test_titles_memo_lines_and_capitals() -> None:
    # "hr." is a title, not HR; the dot after it ends no sentence.
    assert BOOK.units("Kære hr. Nielsen\n\nTak for brevet.") == {"vej-park"}
    assert "hr" not in BOOK.words("Kære hr. Nielsen\n")
    assert BOOK.units("Til: Økonomiafdelingen\nFra: Hans Jensen\n") == {"oekonomi"}
    assert BOOK.units("Til Eksempelby Kommune\nAtt. Pladsanvisningen\n") == {"dagtilbud"}
    # Short name words count in capitals only; clerks' names capitalised.
    assert BOOK.units("Hej it-afdelingen\n") == set()
    assert BOOK.units("Hej hanne\n") == set()


def test_the_municipalitys_own_name_names_no_unit() -> None:
    book = Addressees.build([("job", "Jobcenter Eksempelby", (), [])], "Eksempelby Kommune")
    assert book.units("Til Eksempelby Kommune\n") == set()
    assert book.units("Til Jobcenter Eksempelby\n") == {"job"}


def test_a_long_body_is_read_only_at_its_opening() -> None:
    body = "Eksempelby Kommune\n" + ("ord " * 250_000)
    assert BOOK.units(body) == set() and BOOK.elsewhere(body) is None


def test_another_municipality_only_as_an_addressee() -> None:
    assert BOOK.elsewhere("Kære Nabokøbing Kommune\n") == "Nabokøbing Kommune"
    assert BOOK.elsewhere("Nabokøbing\xa0Kommune\nByg og Miljø\n") == "Nabokøbing Kommune"
    assert BOOK.elsewhere("Hej\n\nNabokøbing Kommune har sendt mig videre til jer.") is None
    assert BOOK.elsewhere("Hejsa Kommune\n") is None
