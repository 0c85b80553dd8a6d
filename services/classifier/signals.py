"""Sender signals (pure): who sent an item and whether a person wrote it at all.

Auto-replies, delivery reports, read receipts, newsletters and notifications need no case work;
mail from other authorities and from look-alike domains of well-known senders is worth knowing
about before the text is read. Each signal is an entity the rules and the model can use.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping

from shared.contracts import Entity

_EMAIL_DOMAIN = re.compile(r"@([A-Za-z0-9.-]+\.[A-Za-z]{2,})$")
_AUTO_SUBJECT = re.compile(
    r"^\s*(?:(?:automatisk svar|autosvar|auto(?:matic)?[ -]?reply|out of (?:the )?office|"
    r"abwesenheitsnotiz|automatische antwort)\b|(?:fraværende|ferie)\s*:)"
    # An authority's or company's automatic acknowledgement of mail we sent: a receipt for
    # our own letter, nothing to act on (its answer comes later, as a mail of its own). The
    # whole subject, or the phrase and then a reference: "Kvittering for modtagelse af
    # hjælpemidler" is a citizen returning a signed receipt.
    r"|^\s*(?:vi har modtaget din (?:henvendelse|e-?mail|besked)|automatisk kvittering|"
    r"kvittering for (?:modtagelse af )?din (?:henvendelse|e-?mail|besked)|"
    r"we have received your (?:message|e-?mail|enquiry|inquiry|request)|"
    r"wir haben ihre (?:nachricht|e-?mail|anfrage) erhalten|eingangsbestätigung)"
    r"\s*(?:$|[\[(:#-]|ref)",
    re.IGNORECASE)
_BOUNCE_SUBJECT = re.compile(
    r"^\s*(?:undeliverable|undelivered mail|kan ikke leveres|mail delivery (?:failed|failure)|"
    r"delivery status notification|returned mail|forsinket levering|delivery delayed|"
    r"levering mislykkedes|nicht zustellbar|unzustellbar)\b", re.IGNORECASE)
_READ_SUBJECT = re.compile(r"^\s*(?:(?:læst|read|gelesen)\s*:|læsekvittering|read receipt)",
                           re.IGNORECASE)
_SYSTEM_LOCAL = re.compile(r"^(?:mailer-daemon|postmaster|microsoftexchange[0-9a-f]*)$",
                           re.IGNORECASE)
_NOREPLY_LOCAL = re.compile(r"no-?reply|do-?not-?reply|notifications?|nyhedsbrev|newsletter|"
                            r"marketing|news|kampagne|info-?mail", re.IGNORECASE)
_UNSUBSCRIBE = re.compile(r"afmeld(?:e|ing)? (?:nyhedsbrev|her)|unsubscribe|frameld",
                          re.IGNORECASE)
# Sales offers and event invitations: prices without VAT, offer deadlines, sign-up and
# opt-out lines. Two of them make a commercial mail (one alone is common in citizens' mail).
_COMMERCIAL = re.compile(
    r"ekskl\.? moms|excl\.? vat|tilbuddet gælder|early bird|uforpligtende tilbud|"
    r"tilmelding (?:på|via|her)|tilmeld dig|sommerpris|kampagnepris|rabatkode|webinar|"
    r"afmeld(?:e|ing)?\b|unsubscribe|bestil (?:før|inden)|invitation:|"
    # Advertising by post: delivery terms, a catalogue, a web shop (not "priser fra" or "ved
    # bestilling af", which citizens write about their own purchases).
    r"gratis levering|fri fragt|free (?:shipping|delivery)|bestil (?:nu|i dag)|"
    r"order (?:now|today)|katalog(?:et)? på|webshop|special offer")
# (all on lower-case text)
# How each of those begins: most mail has none of them, and a few substring tests are
# cheaper than the scan.
_COMMERCIAL_STARTS = ("eksk", "excl", "tilbuddet", "early bird", "uforpligtende", "tilmeld",
                      "sommerpris", "kampagnepris", "rabatkode", "webinar", "afmeld",
                      "unsubscribe", "bestil ", "invitation:", "gratis levering", "fri fragt",
                      "free shipping", "free delivery", "order now", "order today", "katalog",
                      "webshop", "special offer")
# Danish public authorities that write to municipalities; a tenant may add its own.
AUTHORITY_DOMAINS = frozenset({
    "udbetaling.dk", "skat.dk", "sktst.dk", "borger.dk", "politi.dk", "ast.dk", "star.dk",
    "sst.dk", "stps.dk", "mst.dk", "sik.dk", "ankestyrelsen.dk", "kl.dk", "digst.dk",
    "uvm.dk", "bm.dk", "sm.dk", "im.dk", "domstol.dk", "kriminalforsorgen.dk", "rm.dk",
    "rsyd.dk", "regionh.dk", "regionsjaelland.dk", "rn.dk", "fstyr.dk", "motorst.dk",
})
# Brands phishing imitates: a domain naming one of them that is not its real domain is suspect.
_BRANDS = {"mitid": ("mitid.dk",), "postnord": ("postnord.dk", "postnord.com"),
           "nemid": ("nemid.nu",), "borger": ("borger.dk",), "skat": ("skat.dk",),
           "e-boks": ("e-boks.dk", "e-boks.com"), "microsoft": ("microsoft.com",)}


def _lookalike(domain: str, own_domains: frozenset[str]) -> bool:
    for brand, real in _BRANDS.items():
        if brand in domain and not any(domain == r or domain.endswith("." + r) for r in real):
            return True
    for own in own_domains:
        # Local clubs, schools and firms take the town's name under .dk ("eksempelby-fc.dk");
        # a look-alike puts it under another top-level domain or spells out the real domain
        # ("eksempelby-dk.support-portal.info").
        stem, tld = own.split(".")[0], own.rsplit(".", 1)[-1]
        if stem and stem in domain and not (domain == own or domain.endswith("." + own)) and (
                not domain.endswith("." + tld) or own.replace(".", "-") in domain):
            return True
    return False


def _unsubscribes(text: str) -> bool:
    # "afmeld"/"frameld" hold "meld", "unsubscribe" holds "cr" (letters no other character
    # matches case-blind, unlike s and i): the scan only when one of them is there.
    lowered = text.lower()
    return ("meld" in lowered or "cr" in lowered) and _UNSUBSCRIBE.search(text) is not None


def sender_signals(subject: str, body: str, sender: str, *, auto_submitted: bool = False,
                   headers: Mapping[str, str], own_domains: frozenset[str]) -> Iterator[Entity]:
    address = sender.strip().lower()
    local, _, _ = address.partition("@")
    domain = m.group(1).lower() if (m := _EMAIL_DOMAIN.search(address)) else ""
    if domain:
        yield Entity(kind="sender_domain", value=domain, source="sender")
        if domain in own_domains or any(domain.endswith("." + d) for d in own_domains):
            yield Entity(kind="sender_kind", value="own", source="sender")
        elif domain in AUTHORITY_DOMAINS or domain.endswith(".kommune.dk"):
            yield Entity(kind="sender_kind", value="authority", source="sender")
        if _lookalike(domain, own_domains):
            yield Entity(kind="sender_kind", value="lookalike", source="sender")
        if not domain.endswith((".dk", ".com", ".net", ".org", ".eu", ".nu")):
            yield Entity(kind="sender_kind", value="foreign", source="sender")
    precedence = headers.get("precedence", "").lower()
    if auto_submitted or _AUTO_SUBJECT.match(subject) or precedence in {"auto_reply"}:
        yield Entity(kind="auto_reply", value="true", source="headers")
    if _BOUNCE_SUBJECT.match(subject) or _SYSTEM_LOCAL.match(local):
        yield Entity(kind="auto_reply", value="true", source="headers")
        yield Entity(kind="delivery_report", value="true", source="headers")
    if _READ_SUBJECT.match(subject):
        yield Entity(kind="auto_reply", value="true", source="headers")
        yield Entity(kind="read_receipt", value="true", source="headers")
    # "afmelde" and "afmelding" are one sign (and a citizen deregistering a car uses both).
    text = f"{subject}\n{body}".lower()
    marks: set[str] = set()
    if any(start in text for start in _COMMERCIAL_STARTS):
        marks = {re.sub(r"^afmeld\w*", "afmeld", m.group().lower())
                 for m in _COMMERCIAL.finditer(text)}
    if len(marks) >= 2:
        yield Entity(kind="commercial", value="true", source="text")
    # An authority's no-reply address still asks something of the municipality (Udbetaling
    # Danmark asking an employer for data); only its list headers make it a newsletter.
    authority = domain in AUTHORITY_DOMAINS or domain.endswith(".kommune.dk")
    if ((_NOREPLY_LOCAL.search(local) and not authority) or "list-unsubscribe" in headers
            or precedence in {"bulk", "list"} or _unsubscribes(body[-2000:])):
        yield Entity(kind="newsletter", value="true", source="sender")

