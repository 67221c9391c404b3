"""Text for people and for machines, safe from what the input puts in it.

Identity ids, system names and file names come from the input. Shown to a person as they are, a
newline in an id forges a second line (a fake `RESOLVED`) and an ANSI escape rewrites the
terminal; so everything meant for people goes through `printable`. JSON for machines is escaped
by the encoder, except three characters that are valid in JSON strings yet split lines for many
consumers: `json_safe` escapes those.
"""

from __future__ import annotations

import reprlib
from typing import Final

#: How much of a bad value an error message echoes.
ECHO_LIMIT: Final = 60

_JSON_LINE_BREAKS: Final = (
    (b"\xe2\x80\xa8", b"\\u2028"),
    (b"\xe2\x80\xa9", b"\\u2029"),
    (b"\xc2\x85", b"\\u0085"),
)


def _escape(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def printable(text: str, limit: int | None = None) -> str:
    """`text` safe to show a person: every character that is not printable (controls, ANSI
    escapes, line and paragraph separators, bidirectional overrides) written as a visible
    `\\x1b` / `\\u202e` escape, and the result cut to `limit` characters with `…`."""
    if not text.isprintable():
        text = "".join(char if char.isprintable() else _escape(char) for char in text)
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


_SHORT_REPR: Final = reprlib.Repr()
_SHORT_REPR.maxlevel, _SHORT_REPR.maxlist, _SHORT_REPR.maxdict = 2, 4, 4
_SHORT_REPR.maxstring = _SHORT_REPR.maxother = ECHO_LIMIT


def parse_switch(text: str) -> bool | None:
    """A true/false setting as written in a flag or variable (`true`, `1`, `yes`, `on`; `false`,
    `0`, `no`, `off`, empty), or None when it is neither."""
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("", "0", "false", "no", "off"):
        return False
    return None


def echo(value: object) -> str:
    """A bad value quoted for an error message: printable and at most ECHO_LIMIT characters
    (a large structure is abbreviated before it is turned into text, never after)."""
    text = value if isinstance(value, str) else _SHORT_REPR.repr(value)
    return repr(printable(text, ECHO_LIMIT))


def json_safe(data: bytes) -> bytes:
    """Encoded JSON with U+2028, U+2029 and U+0085 escaped (JSON allows them raw inside strings,
    but JavaScript and many line-based consumers break lines on them)."""
    if b"\xe2\x80" in data or b"\xc2\x85" in data:
        for raw, escaped in _JSON_LINE_BREAKS:
            data = data.replace(raw, escaped)
    return data
