"""Personal data helpers shared by the classifier (which finds CPR numbers) and the audit API
(where an auditor asks for a person's items).

A CPR number is never stored: entities carry it masked (`DDMMYY-XXXX`) plus a keyed
fingerprint, HMAC-SHA256 under the installation's secret `cpr_key`. Without the key the
fingerprint cannot be turned back into a number by trying every date and serial; with it, an
auditor's query finds the items that mentioned the number.
"""

from __future__ import annotations

import hashlib
import hmac
import re

_DIGITS = re.compile(r"\D")


def cpr_digest(number: str, key: bytes) -> str:
    """The keyed fingerprint of a CPR number (with or without the hyphen)."""
    digits = _DIGITS.sub("", number)
    return hmac.new(key, f"cpr:{digits}".encode(), hashlib.sha256).hexdigest()


CPR_MARK = "[CPR-nr.]"
# Digits (or the mask's X) at word edges: a date of six digits, then four more. Deliberately
# wider than the classifier's validated CPR pattern: a false alarm costs a few digits of title,
# a miss puts a CPR number in front of everyone with access to the ESDH.
# Between date and serial any of the separators people and file names use: "010190-1234",
# "010190 1234", "cpr_010190_1234.pdf", "010190/1234", "010190.1234", an en dash.
_CPR = re.compile(r"(?<![0-9])[0-3][0-9][. ]?[01][0-9][. ]?[0-9]{2}[ ._/\u2013-]?"
                  r"(?:[0-9]{4}|[xX]{4})(?![0-9])")


def scrub_cpr(text: str, mark: str = CPR_MARK) -> str:
    """`text` with anything shaped like a CPR number replaced by `mark`."""
    return _CPR.sub(mark, text)


# The start of the file names the journal gives an item's own original (`PF-<ref>.eml`): the
# reference is ten hex digits of the item id, about one in 200 of them all decimal and shaped
# like a CPR number, and masking it would cut the document off from its item.
_OWN_FILE = re.compile(r"PF-[0-9A-F]{10}(?=\.)")


def scrub_file_name(name: str, mark: str = "CPR") -> str:
    """A file name with CPR-shaped numbers masked, except the journal's own reference at its
    start (names that came from a sender are masked where they are read, see
    services/journal/filing.files_of, so a sender cannot pass a number off as one)."""
    own = _OWN_FILE.match(name)
    head = own.group() if own else ""
    return head + scrub_cpr(name[len(head):], mark)
