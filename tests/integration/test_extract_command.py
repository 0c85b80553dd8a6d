"""`postfordeler extract PATH` as an administrator runs it: the item as JSON and exit 0, or one
line on stderr and exit 2 for input it refuses, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

from postfordeler.demo.mailbox import demo_messages


def run(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTFORDELER_")}
    return subprocess.run([sys.executable, "-m", "postfordeler", "extract", str(path), *args],
                          capture_output=True, text=True, timeout=120, env=env)


def test_a_mail_is_printed_as_the_item_the_classifier_sees(tmp_path: Path) -> None:
    mail = next(m for m in demo_messages() if m.note == "HTML with attachment")
    path = tmp_path / "brev.eml"
    path.write_bytes(mail.raw)
    done = run(path)
    assert done.returncode == 0, done.stderr
    item = json.loads(done.stdout)
    text = json.dumps(item, ensure_ascii=False)
    assert "Storskrald - bestilling" in text
    assert "storskrald-æøå.txt" in text and "alert(1)" not in text


def test_refused_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.eml"
    garbage.write_bytes(b"\x00\x01\x02 not a mail \xff\xfe")
    missing = tmp_path / "missing.pdf"
    broken_pdf = tmp_path / "broken.pdf"
    broken_pdf.write_bytes(b"%PDF-1.7\n1 0 obj <<>>\n%%EOF trailing garbage")
    for path in (garbage, missing, broken_pdf):
        done = run(path)
        assert done.returncode == 2, (path.name, done.stdout[:200], done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("postfordeler extract:"), done.stderr
        assert "Traceback" not in done.stderr


def test_a_zip_bomb_is_not_unpacked_but_reported(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("nul.txt", b"\x00" * (200 * 1024 * 1024))  # ~200 KB on disk, 200 MB inside
    done = run(bomb)
    assert done.returncode == 0, done.stderr
    member = json.loads(done.stdout)["attachments"][0]
    assert "too large" in member["problem"] and member["text"] is None
