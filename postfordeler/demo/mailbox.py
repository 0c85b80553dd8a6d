"""Generates the demo mailbox: a few dozen Danish municipal e-mails with known outcomes.

The same generator feeds the end-to-end tests and the benchmark, so what the demo shows is
what the tests check. Everything here is invented; addresses use example domains.
"""

from __future__ import annotations

import mailbox
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path


@dataclass(frozen=True)
class DemoMessage:
    raw: bytes
    expect_state: str          # terminal state the item should reach
    expect_unit: str | None    # unit it should be routed to (None: not routed)
    receipt: bool              # whether the sender should get one receipt
    note: str


# (from, subject, body, state, unit, receipt)
_MAILS: tuple[tuple[str, str, str, str, str | None, bool], ...] = (
    ("Jonas Holm <jonas.holm@example.net>", "Parkeringsafgift på Havnegade",
     "Hej\n\nJeg har fået en parkeringsafgift på min bil AB 12 345, men jeg havde betalt.\n"
     "Kan I annullere den?\n\nVenlig hilsen\nJonas", "done", "parkering", True),
    ("Maja Lund <maja.lund@example.org>", "Sv: Byggetilladelse (sag 02.34.02-P19-412-26)",
     "Hermed de manglende tegninger til carporten.\n\nMvh Maja", "done", "byggeri", True),
    ("Peter Dahl <peter@example.com>", "Storskrald blev ikke hentet",
     "Vores storskrald på Skovvej 3 står der stadig. Sofa og køleskab.", "done", "affald", True),
    ("Aske Berg <aske.berg@example.net>", "Rotter i haven",
     "Der løber rotter rundt ved vores skur på Engvej 30. Hvad gør jeg?", "done",
     "natur-miljoe", True),
    ("Line Friis <line.friis@example.org>", "Hul i vejen",
     "Der er et stort hul i vejen ud for Skolevej 12. Det er farligt for cyklister.", "done",
     "vej-park", True),
    ("Karim Saleh <karim.saleh@example.com>", "Nyt sundhedskort",
     "Jeg har mistet mit sundhedskort. Hvordan får jeg et nyt?", "done", "borgerservice", True),
    ("Ole Vinter <ole.vinter@example.net>", "Jobsamtale i næste uge",
     "Jeg kan ikke komme til min jobsamtale tirsdag. Kan vi flytte den?", "done", "jobcenter",
     True),
    ("Nyheder <nyheder@newsletter.example>", "Månedens nyhedsbrev",
     "Læs månedens nyhedsbrev. Klik her for at afmelde.", "not_relevant", None, False),
    ("Sara Munk <sara.munk@example.org>", "Spørgsmål",
     "Hej, jeg har et spørgsmål om noget helt andet. Hvem kan hjælpe mig?", "triage", None, True),
    ("Anders Krog <anders@example.com>", "Klage over p-afgift - jeres sag 05.09.04-K07-131-25",
     "Jeg vil gerne klage igen over afgiften i sag 05.09.04-K07-131-25.", "done", "parkering",
     True),
    ("Birthe Skov <birthe.skov@example.net>", "Skraldespanden er ikke tømt",
     "Skraldespanden på Birkevej 4 er ikke blevet tømt i tre uger!", "done", "affald", True),
    ("Hans Lind <hans.lind@example.org>", "Gadelys virker ikke",
     "Gadelys på Mosevej er gået ud. Der er helt mørkt om aftenen.", "done", "vej-park", True),
    ("Mette Ravn <mette.ravn@example.com>", "Ansøgning om tilbygning",
     "Jeg vil gerne bygge en tilbygning på 20 m2. Skal jeg søge byggetilladelse?", "done",
     "byggeri", True),
    ("Webinar <events@marketing.example>", "Gratis webinar om digitalisering",
     "Tilmeld dig vores webinar. Unsubscribe her.", "not_relevant", None, False),
    ("Tina Holst <tina.holst@example.net>", "Flytning og nyt pas",
     "Jeg er flyttet og skal have fornyet mit pas. Mit CPR er 010190-1234.", "done",
     "borgerservice", True),
    ("Erik Bak <erik.bak@example.org>", "Bil parkeret ulovligt",
     "En bil med nummerplade CD-34-567 holder på fortovet hver dag.", "done", "parkering", True),
    ("Lars Due <lars.due@example.com>", "Dagpenge",
     "Hvornår bliver mine dagpenge udbetalt denne måned?", "done", "jobcenter", True),
    ("Ida Kjær <ida.kjaer@example.net>", "Tak for sidst",
     "Hej, tak for en god dag i går. Hilsen Ida", "triage", None, True),
)


def _mail(sender: str, subject: str, body: str, when: datetime, **headers: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "post@demoby.dk"
    msg["Subject"] = subject
    msg["Date"] = format_datetime(when)
    msg["Message-ID"] = make_msgid(domain="demo.example")
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(body)
    return msg


def demo_messages(count: int | None = None, *, start: datetime | None = None) -> list[DemoMessage]:
    """The demo mailbox; with `count`, the plain mails repeated to that many items (the special
    cases, a malformed message, a duplicate and an auto-reply, are always included)."""
    when = start or datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
    out: list[DemoMessage] = []
    plain = count - 5 if count is not None else len(_MAILS) * 2
    for i in range(max(plain, 0)):
        sender, subject, body, state, unit, receipt = _MAILS[i % len(_MAILS)]
        msg = _mail(sender, subject, body, when + timedelta(minutes=7 * i))
        out.append(DemoMessage(bytes(msg), state, unit, receipt, subject))
    html = _mail("Signe Bjerre <signe@example.org>", "Storskrald - bestilling",
                 "Jeg vil bestille afhentning af storskrald.", when)
    html.add_alternative("<html><body><p>Jeg vil <b>bestille</b> afhentning af "
                         "<i>storskrald</i>.</p><script>alert(1)</script></body></html>",
                         subtype="html")
    html.add_attachment(b"Liste: sofa, reol, cykel", maintype="text", subtype="plain",
                        filename="storskrald-æøå.txt")
    out.append(DemoMessage(bytes(html), "done", "affald", True, "HTML with attachment"))
    auto = _mail("Kim Fog <kim.fog@example.com>", "Automatisk svar: Parkering",
                 "Jeg er på ferie til og med mandag.", when, Auto_Submitted="auto-replied")
    out.append(DemoMessage(bytes(auto), "not_relevant", None, False, "auto-reply"))
    first = _mail("Jonas Holm <jonas.holm@example.net>", "Parkering igen",
                  "Jeg har fået en ny parkeringsafgift på AB 12 345.", when)
    out.append(DemoMessage(bytes(first), "done", "parkering", True, "duplicate (original)"))
    # The same message delivered twice (same Message-ID): one item, no second receipt.
    out.append(DemoMessage(bytes(first), "duplicate", None, False, "duplicate (copy)"))
    out.append(DemoMessage(b"\x00\x01\x02 this is not a mail message \xff\xfe\n",
                           "failed", None, False, "malformed"))
    return out


def write_maildir(path: Path, messages: list[DemoMessage]) -> None:
    """Deliver `messages` into the Maildir at `path` (created if missing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    box = mailbox.Maildir(str(path), create=True)
    try:
        for m in messages:
            box.add(m.raw)
    finally:
        box.close()
