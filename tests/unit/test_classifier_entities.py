from __future__ import annotations

from pathlib import Path

from services.classifier.entities import (
    Knowledge,
    RegisteredCase,
    compile_phrases,
    extract,
    title_marks,
    valid_cvr,
)
from services.classifier.parts import split_body
from tests.conftest import SAMPLE_DATA


def kinds(entities, kind):  # type: ignore[no-untyped-def]
    return [e.value for e in entities if e.kind == kind]


KNOW = Knowledge(cases={"05.09.04-K07-131-25": ("parkering", "TBN"),
                        "BOR-2024-000123": ("borgerservice", "LKJ")},
                 kle_codes=frozenset({"05", "05.09", "05.09.04"}),
                 phrases=compile_phrases([("Parkering og Trafik", "department", "parkering"),
                                          ("ikke tømt", "keyword", "ikke tømt")]),
                 own_domains=frozenset({"eksempelby.dk"}))


def test_plates_in_every_spelling_with_positions() -> None:
    text = "Bil AB 12 345, ab12345 og AB-12-346"
    found = [e for e in extract("", text) if e.kind == "licence_plate"]
    assert [e.value for e in found] == ["AB12345", "AB12346"]
    assert text[found[0].start:found[0].end] == "AB 12 345"


def test_cpr_masked_only_valid_dates() -> None:
    found = extract("", "cpr 010190-1234 og 3102901234 og 2902001234")
    assert kinds(found, "cpr") == ["010190-XXXX", "290200-XXXX"]
    assert all("1234" not in e.value for e in found)


def test_cvr_modulus_11() -> None:
    assert valid_cvr("29189919") and not valid_cvr("29189918")
    assert kinds(extract("", "CVR-nr.: 2918 9919, CVR 29189918"), "cvr") == ["29189919"]


def test_case_numbers_confirmed_by_the_register_only() -> None:
    found = extract("Sv: sagsnr. 131-25", "jeres ref. BOR-2024-000123 og S2024-12345",
                    knowledge=KNOW)
    assert kinds(found, "case_number") == ["05.09.04-K07-131-25", "BOR-2024-000123"]
    assert kinds(found, "case_candidate") == ["S2024-12345"]


def test_tenant_case_pattern() -> None:
    import re

    k = Knowledge(case_patterns=(("local", re.compile(r"\bEKS/\d{4}/\d+\b")),),
                  cases={"EKS/2026/17": ("it", "KBD")})
    assert kinds(extract("", "vedr. EKS/2026/17", knowledge=k), "case_number") == ["EKS/2026/17"]


def test_kle_numbers_checked_against_the_plan() -> None:
    found = extract("", "KLE 05.09.04 G01, emne 99.99.99 og kl. 12.30", knowledge=KNOW)
    assert kinds(found, "kle") == ["05.09.04 G01"]


def test_departments_and_phrases_on_lemmas() -> None:
    found = extract("", "Til Parkering og Trafikken: spanden er ikke tømt", knowledge=KNOW)
    assert kinds(found, "department") == ["parkering"]
    assert "ikke tømt" in kinds(found, "keyword")
    lemmas = kinds(extract("", "parkeringsafgiften og parkeringsafgifter"), "keyword")
    assert "parkeringsafgift" in lemmas


def test_sender_signals() -> None:
    assert "delivery_report" in {e.kind for e in extract(
        "Undeliverable: Vedr. sag", "", sender="MAILER-DAEMON@mx.eksempelby.dk")}
    assert kinds(extract("Læst: sag", "", sender="a@b.dk"), "read_receipt") == ["true"]
    assert kinds(extract("Automatisk svar: x", "", sender="a@b.dk"), "auto_reply") == ["true"]
    for ack in ("Vi har modtaget din henvendelse [Ref. 2026-88]", "Automatisk kvittering",
                "Kvittering for modtagelse af din henvendelse", "We have received your message",
                "Eingangsbestätigung - Ihre Anfrage", "Fraværende: Re: byggesag",
                "Wir haben Ihre Nachricht erhalten"):
        assert kinds(extract(ack, "", sender="a@b.dk"), "auto_reply") == ["true"], ack
    for human in ("Kvittering for betaling af regning", "Tak for svaret",
                  "Har I modtaget min henvendelse?", "Kvittering for modtagelse af hjælpemidler",
                  "Modtagelseskvittering - underskrevet", "Ferie i uge 30 - pasning",
                  "Vi har modtaget din e-mail, men mangler svar"):
        assert kinds(extract(human, "", sender="a@b.dk"), "auto_reply") == [], human
    assert kinds(extract("Din MitID udløber", "", sender="x@mitid-fornyelse.info",
                         knowledge=KNOW), "sender_kind") == ["lookalike", "foreign"]
    assert kinds(extract("Nyt", "", sender="nyhedsbrev@affaldsnyt.dk"), "newsletter") == ["true"]
    assert kinds(extract("Svar", "", sender="x@udbetaling.dk"), "sender_kind") == ["authority"]


def test_quoted_reply_and_signature_are_split_off() -> None:
    parts = split_body("Hej\nKan I hjælpe?\n\nMvh Signe\nSendt fra min iPhone\n\n"
                       "> Den 9. februar skrev Borgerservice:\n> Kære Signe")
    assert parts.own.strip() == "Hej\nKan I hjælpe?"
    assert "Signe" in parts.signature and "Kære Signe" in parts.quoted


def test_sample_data_entities_match_labels() -> None:
    """Plates and CPR presence as labelled over the whole sample data set."""
    import json

    from services.classifier.document import from_labelled
    from services.classifier.pipeline import Classifier
    from shared.tenant import Tenant

    tenant = Tenant(Path(SAMPLE_DATA))
    classifier = Classifier.from_tenant(tenant)
    plates_ok = cpr_ok = n = 0
    for path in sorted((Path(SAMPLE_DATA) / "items").glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            item = from_labelled(json.loads(line))
            raw = json.loads(line)["label"]
            found = classifier.entities(item.document)
            plates_ok += set(kinds(found, "licence_plate")) >= set(raw["licence_plates"])
            cpr_ok += bool(kinds(found, "cpr")) == raw["cpr_present"]
            n += 1
    assert plates_ok / n >= 0.97 and cpr_ok / n >= 0.97, (plates_ok, cpr_ok, n)


REGISTER = Knowledge(
    cases={"05.09.02-G01-134-24": ("parkering", "ALA"), "07.18.06-G01-3167-24": ("affald", "BKR"),
           "02.34.04-G01-631-24": ("byggeri", "KMO"), "05.09.12-P20-1772-24": ("parkering", "TBN")},
    register=(
        RegisteredCase("05.09.02-G01-134-24", "anders yilmaz", frozenset({"DS11934"}),
                       "amalie larsen", *title_marks("Beboerlicens - DS 11 934 - Kirkegade 115",
                                                     "Anders Yilmaz")),
        RegisteredCase("07.18.06-G01-3167-24", "ib rasmussen", frozenset(), "bo kristensen"),
        RegisteredCase("02.34.04-G01-631-24", "ib rasmussen", frozenset(), "karsten mortensen"),
        RegisteredCase("05.09.12-P20-1772-24", "hanne vang", frozenset(), "tobias bendtsen"),
        RegisteredCase("25.02.00-G01-2613-26", "", frozenset(), "nanna skov",
                       *title_marks("Ejendomsskat - Engvej 78", "")),
        RegisteredCase("81.02.00-G01-3344-26", "ulla petersen", frozenset(), "rasmus olesen",
                       *title_marks("Stillingsopslag - Ingeniør til Vej og Park",
                                    "Ulla Petersen")),
        RegisteredCase("29.03.00-G01-2407-26", "birgit poulsen", frozenset(), "lone kjær",
                       open=False)))


def test_register_search_finds_a_case_named_without_its_number() -> None:
    def case(subject: str, body: str, name: str = "") -> list[str]:
        return kinds(extract(subject, body, sender_name=name, knowledge=REGISTER), "case_number")

    # A plate in the case title; the party writing; a bare serial; a party with two cases
    # told apart by the clerk the writer greets.
    assert case("beboerlicens", "Nummerplade DS 11 934, kan I forny den?") == [
        "05.09.02-G01-134-24"]
    assert case("Om min tilladelse", "Tilladelsen på Kirkegade (sagsnr 1772 tror jeg)") == [
        "05.09.12-P20-1772-24"]
    assert case("Spanden glemt igen", "Til Bo Kristensen\nDen er glemt igen.",
                "Ib Rasmussen") == ["07.18.06-G01-3167-24"]
    # The same party without a clerk named: two cases tie, so no match.
    assert case("Spørgsmål", "Hvornår sker der noget?", "Ib Rasmussen") == []
    # Nobody the register knows.
    assert case("Spørgsmål", "Hej Amalie, hvornår?", "Ole Hansen") == []
    # The clerk's first name as a word tells the party's two cases apart as well.
    assert case("Spanden", "Jeg fik at vide af Bo at det var ordnet.", "Ib Rasmussen") == [
        "07.18.06-G01-3167-24"]
    # The title's address and its topic; a long phrase of the title; an address alone is not
    # enough (another matter at the same house).
    assert case("", "Min ejendomsskattebillet for Engvej 78 er trukket to gange.") == [
        "25.02.00-G01-2613-26"]
    assert case("Ansøgning - ingeniør til Vej og Park", "Hermed min ansøgning.", "Ny Person"
                ) == ["81.02.00-G01-3344-26"]
    assert case("Information request", "About the property at Kirkegade 115.") == []
    # A closed case needs more than its party: the party and the clerk greeted.
    assert case("Sundhedskort", "Hej Lone Kjær, der står forkert læge.", "Birgit Poulsen") == [
        "29.03.00-G01-2407-26"]
    assert case("Spørgsmål", "Hvornår?", "Birgit Poulsen") == []
    # Mail no person wrote is not looked up, however much of a title it repeats.
    assert kinds(extract("Du har 4 nye notifikationer", "Nyt job: Ingeniør til Vej og Park",
                         sender="notifications-noreply@linkedin.com", knowledge=REGISTER),
                 "case_number") == []


def test_local_organisations_are_not_lookalikes_but_spelled_out_domains_are() -> None:
    for sender in ("kursus@eksempelby-sprogcenter.dk", "træner@eksempelby-fc.dk"):
        assert "lookalike" not in kinds(extract("Hej", "", sender=sender, knowledge=KNOW),
                                        "sender_kind")
    assert "lookalike" in kinds(extract("Konto", "", knowledge=KNOW,
                                        sender="it@eksempelby-dk.support-portal.info"),
                                "sender_kind")


def test_sales_offers_are_commercial_and_citizens_are_not() -> None:
    offer = ("Sikr jer vejsalt til sommerpris: 1.190 kr. ekskl. moms. Tilbuddet gælder til 1. "
             "september. Afmeld fremtidige tilbud: svar AFMELD")
    assert kinds(extract("Sommerpris på vejsalt", offer), "commercial") == ["true"]
    assert kinds(extract("Glat vej", "Der er ikke saltet på Bakkedraget. Afmeld min "
                         "tilmelding til storskrald."), "commercial") == []
    # Advertising by post: delivery terms and a web shop.
    letter = ("Med vores gavekoncept får hver medarbejder et gavekort til vores webshop. Priser "
              "fra 250 kr. Gratis levering ved bestilling af mindst 50 gaver.")
    assert kinds(extract("", letter), "commercial") == ["true"]
    assert kinds(extract("Sofa", "Jeg har købt en sofa i en webshop og vil af med den gamle."),
                 "commercial") == []
    # "afmelde" and "afmelding" are one sign, not two.
    assert kinds(extract("Afmelding af nummerplader", "Ophuggeren siger jeg selv skal afmelde "
                         "bilen."), "commercial") == []


def test_an_authoritys_no_reply_address_is_not_a_newsletter() -> None:
    ask = "Vi beder jer udfylde anmeldelsen i NemRefusion. Denne e-mail kan ikke besvares."
    assert kinds(extract("Anmodning om oplysninger", ask, sender="noreply.barsel@udbetaling.dk",
                         knowledge=KNOW), "newsletter") == []
    assert kinds(extract("Nyt fra os", "Læs mere", sender="noreply@shop.dk", knowledge=KNOW),
                 "newsletter") == ["true"]


def test_register_names_pattern_takes_the_longest_name_that_ends_a_word() -> None:
    import re

    from services.classifier.entities import _longest_first

    names = ["birkevej 5", "birkevej 50", "birkevej", "ib", "ib møller", "møller", "a/s", "a"]
    plain = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    text = ("birkevej 50, birkevej 5a, birkevej 500 og birkevej. ib møllers a/s, "
            "ib møller a/s ibx a")
    found = [(m.start(), m.group(1)) for m in re.finditer(
        rf"(?<!\w)(?=({_longest_first(names)})(?!\w))", text)]
    assert found == [(m.start(), m.group(1)) for m in re.finditer(
        rf"(?<!\w)(?=({plain})(?!\w))", text)]
    assert found[:3] == [(0, "birkevej 50"), (13, "birkevej"), (26, "birkevej")]
    assert (text.index("ib møller a/s"), "ib møller") in found


def test_phrases_inside_an_earlier_phrase_have_their_own_positions() -> None:
    from services.classifier.entities import phrases

    table = compile_phrases([("Parkering og Trafik", "department", "parkering"),
                             ("trafik", "department", "trafik")])
    text = "Til Parkering og Trafik, om trafik"
    found = [(e.value, text[e.start:e.end]) for e in phrases(text, table)]
    assert found == [("parkering", "Parkering og Trafik"), ("trafik", "Trafik"),
                     ("trafik", "trafik")]


def test_kle_context_is_case_blind_as_the_pattern_is() -> None:
    # "\u212a" (the Kelvin sign) is a k to a case-blind pattern; "12.30" alone is no KLE group.
    assert kinds(extract("", "\u212aLE 05.09 og Emnenr 05", knowledge=KNOW), "kle") == ["05.09",
                                                                                      "05"]
    assert kinds(extract("", "mødet kl. 05.09", knowledge=KNOW), "kle") == []


def test_a_very_long_register_name_does_not_break_the_pattern() -> None:
    import re

    from services.classifier.entities import _longest_first

    long = "a" * 600
    pattern = re.compile(_longest_first({long, long + "b", "abe", "ab"}))
    assert pattern.match(long + "b").group() == long + "b"
    assert pattern.match("abe").group() == "abe"
    assert pattern.match("abx").group() == "ab"
    assert pattern.match("a" * 5) is None
