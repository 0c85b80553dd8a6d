"""ZIP archives unpacked within limits: member count, bytes unpacked (in all, per item),
compression ratio per member, nesting depth; path traversal, links and encryption refused.

Declared sizes in a ZIP are not trusted: every member is read in chunks and reading stops as
soon as it passes what was declared or what the limits allow.
"""

from __future__ import annotations

import stat
import zipfile
from dataclasses import dataclass
from io import BytesIO
from pathlib import PurePosixPath

from .limits import Limits, Refused

CHUNK = 1 << 16


@dataclass(frozen=True)
class Member:
    name: str  # the path inside the archive, checked to be relative and inside it
    data: bytes


class Budget:
    """Bytes one item may still unpack, shared by every archive (and nested ones) in it."""

    def __init__(self, total: int) -> None:
        self.left = total

    def take(self, n: int) -> None:
        self.left -= n
        if self.left < 0:
            raise Refused("archive unpacks to more than the limit (zip bomb?)")


def is_zip(data: bytes) -> bool:
    return data[:4] in (b"PK\x03\x04", b"PK\x05\x06")


def safe_member_name(name: str) -> str:
    """The member's path, or Refused when it would land outside the folder it is unpacked in."""
    clean = name.replace("\\", "/")
    path = PurePosixPath(clean)
    if clean.startswith("/") or (len(clean) > 1 and clean[1] == ":") or ".." in path.parts:
        raise Refused(f"archive member with an unsafe path refused (path traversal): {name!r}")
    if any(ord(c) < 32 for c in clean):
        raise Refused("archive member name with control characters refused")
    return str(path)


def unzip(data: bytes, limits: Limits, budget: Budget) -> list[Member]:
    try:
        archive = zipfile.ZipFile(BytesIO(data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise Refused(f"not a readable ZIP archive ({exc})") from None
    files = [i for i in infos if not i.is_dir()]
    if len(files) > limits.archive_members:
        raise Refused(f"archive has {len(files)} files (limit {limits.archive_members})")
    members = []
    for info in files:
        name = safe_member_name(info.filename)
        if stat.S_ISLNK(info.external_attr >> 16):
            raise Refused(f"archive member is a symbolic link: {name!r}")
        if info.flag_bits & 0x1:
            raise Refused("archive is encrypted")
        if info.file_size > limits.max_bytes:
            raise Refused(f"archive member {name!r} too large ({info.file_size} bytes)")
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > CHUNK and ratio > limits.archive_ratio:
            raise Refused(f"archive member {name!r} compressed {ratio:.0f}:1 "
                          f"(limit {limits.archive_ratio}:1, zip bomb?)")
        members.append(Member(name, _read(archive, info, limits, budget)))
    return members


def _read(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limits: Limits,
          budget: Budget) -> bytes:
    cap = min(info.file_size, limits.max_bytes)
    out = bytearray()
    try:
        with archive.open(info) as fh:
            while chunk := fh.read(CHUNK):
                out += chunk
                budget.take(len(chunk))
                if len(out) > cap:
                    raise Refused(f"archive member {info.filename!r} unpacks to more than it "
                                  "declares (zip bomb?)")
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, NotImplementedError) as exc:
        raise Refused(f"archive member {info.filename!r} unreadable ({exc})") from None
    return bytes(out)
