#!/usr/bin/env bash
# Installs the system packages Postfordeler's OCR, its IMAP and its browser tests need, when they are
# missing and we are root (a CI machine or a fresh server). On a laptop without root it only
# says what is missing: the tests that need these skip with a clear message there.
set -euo pipefail
need=()
command -v tesseract >/dev/null 2>&1 || need+=(tesseract-ocr tesseract-ocr-dan tesseract-ocr-eng)
if command -v tesseract >/dev/null 2>&1 && ! tesseract --list-langs 2>/dev/null | grep -qx dan; then need+=(tesseract-ocr-dan); fi
command -v dovecot >/dev/null 2>&1 || need+=(dovecot-imapd)
command -v pdftoppm >/dev/null 2>&1 || need+=(poppler-utils)
[ -d /usr/share/fonts/truetype/dejavu ] || need+=(fonts-dejavu-core)
# The web interface's browser tests drive the system Chromium (browsers cannot be downloaded).
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" != "0" ]; then
  echo "postfordeler: missing system packages (${need[*]}); install them as root to run every test." >&2
  exit 0
fi
echo "postfordeler: installing system packages: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
