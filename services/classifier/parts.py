"""Splits a mail body into the writer's own text, quoted replies and the signature (pure).

The routing model down-weights quoted text (it is usually our own earlier mail, whose words
say little about what the citizen wants now) and signatures (names, titles, addresses).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# A line that starts a quoted original: "Den 9. februar 2026 kl. 10.14 skrev ...:",
# "On ... wrote:", Outlook's "-----Original Message-----" / "Fra: ..." header block.
_QUOTE_START = re.compile(
    r"^\s*(?:(?:den|on|am|le)\s.{0,120}(?:skrev|wrote|schrieb|a écrit)\s*.{0,80}:\s*$"
    r"|-{2,}\s*(?:original (?:message|meddelelse)|oprindelig meddelelse|videresendt"
    r"|forwarded message|ursprüngliche nachricht)\s*-{2,}"
    r"|(?:fra|from|von):\s.+)",
    re.IGNORECASE)
_SIGNATURE_START = re.compile(
    r"^\s*(?:--\s*|(?:med\s+)?venlig(?:st)?\s+hilsen\b.*|mvh\.?\b.*|vh\.?\s*$|hilsen\b.*"
    r"|kind regards\b.*|best regards\b.*|regards,?\s*$|mit freundlichen grüßen\b.*"
    r"|sendt fra min \w+.*|sent from my \w+.*)$",
    re.IGNORECASE)


@dataclass(frozen=True)
class Parts:
    own: str
    quoted: str
    signature: str


def split_body(body: str) -> Parts:
    own: list[str] = []
    quoted: list[str] = []
    signature: list[str] = []
    in_quote = in_signature = False
    for line in body.splitlines():
        if line.lstrip().startswith(">"):
            quoted.append(line.lstrip("> \t"))
            continue
        if not in_quote and _QUOTE_START.match(line) and own:
            in_quote = True
        if in_quote:
            quoted.append(line)
        elif in_signature or (own and _SIGNATURE_START.match(line)):
            in_signature = True
            signature.append(line)
        else:
            own.append(line)
    return Parts("\n".join(own), "\n".join(quoted), "\n".join(signature))
