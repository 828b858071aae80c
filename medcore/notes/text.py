"""Case-note text in: validated, normalised, tokenised with character offsets.

Bad input gets a clear message (NoteRejected) or a warning next to a sensible result; the text is
never executed or rendered as markup here. Tokens keep their offsets into the cleaned note so
attributions can be drawn on the words the clinician wrote.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

MAX_CHARS = 20_000  # about 3,000 words: longer notes are cut, with a warning
MAX_UPLOAD_BYTES = 1_000_000
WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)?", re.UNICODE)


class NoteRejected(ValueError):
    """The input cannot be used as a note; str(error) says why."""


@dataclass(frozen=True)
class Token:
    text: str  # lower-cased form used by the model
    start: int
    end: int


@dataclass(frozen=True)
class Note:
    text: str
    tokens: list[Token]
    warnings: list[str] = field(default_factory=list)


def decode_upload(data: bytes) -> str:
    """Bytes of an uploaded .txt -> text; binary files are refused."""
    if len(data) > MAX_UPLOAD_BYTES:
        raise NoteRejected(f"The file is {len(data) / 1e6:.1f} MB; a case note is at most 1 MB of text.")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    if b"\x00" in data[:4096]:
        raise NoteRejected("The file is binary, not text (it contains NUL bytes).")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def prepare(raw: str) -> Note:
    """Validate and normalise a note; raise NoteRejected with a reason a clinician can act on."""
    if raw is None or not raw.strip():
        raise NoteRejected("The note is empty.")
    text = unicodedata.normalize("NFC", raw).replace("\r\n", "\n")
    warnings = []
    if len(text) > MAX_CHARS:
        warnings.append(f"The note has {len(text):,} characters; only the first {MAX_CHARS:,} were read.")
        text = text[:MAX_CHARS]
    control = sum(1 for ch in text if unicodedata.category(ch) in ("Cc", "Co", "Cs") and ch not in "\n\t")
    replacement = text.count("\ufffd")
    if (control + replacement) / len(text) > 0.05:
        raise NoteRejected("The note looks like binary data, not text.")
    tokens = [Token(m.group().lower(), m.start(), m.end()) for m in WORD.finditer(text)]
    if not tokens:
        raise NoteRejected("The note has no words to read.")
    letters = [ch for token in tokens for ch in token.text if ch.isalpha()]
    if letters and sum(ch.isascii() for ch in letters) / len(letters) < 0.6:
        warnings.append("The note is mostly not in English; the models were trained on English text, "
                        "so this result is unreliable.")
    if len(tokens) < 3:
        warnings.append("The note is very short; the prediction rests on very little evidence.")
    return Note(text=text, tokens=tokens, warnings=warnings)
