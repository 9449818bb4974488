"""Redaction of text that arrives in pieces: streams, deltas, live views.

A secret can be split wherever a stream is cut: between two reads of a pipe, at the 1 MiB cut of
a long line, between two deltas of a model's answer. :class:`StreamRedactor` holds back the tail of
what it was given while that tail could still grow into a secret (a proper prefix of a known
value, the head of a key format, a key that may go on) and releases it once it cannot, so a
split value is masked whole. The held tail is never longer than the longest secret, or
:data:`~orchestrator_nb.observe.redact.HOLD_CAP` for a key format that keeps growing.

Raw stream logs need one more rule. An agent CLI's own protocol (gemini's ``stream-json``,
copilot's events) writes each delta as its own JSON line, so a secret the model says in pieces
sits in the log as pieces with JSON between them; no whole value is ever there to match. With
``fragments=True`` every run of at least :data:`FRAGMENT_LEN` characters of a known value is
masked too (``[REDACTED:NAME…]``), and the held tail is any end that is part of a known value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from .redact import _FORMATS, HOLD_CAP, Redactor, default_redactor

# A piece of a known value this long or longer is masked in raw stream logs. Shorter than the
# 12-character window a reader could recognise, long enough that ordinary words do not match.
FRAGMENT_LEN = 10

# The literal heads of the key formats and the characters that may follow them: text ending in a
# head, or in a head and some body, may become a key with the next chunk.
_HEADS: tuple[tuple[str, str], ...] = (
    ("sk-", r"[A-Za-z0-9_\-]*"),
    ("github_pat_", r"[A-Za-z0-9_]*"),
    *((f"gh{c}_", r"[A-Za-z0-9]*") for c in "pousr"),
    ("AIza", r"[0-9A-Za-z_\-]*"),
    ("AKIA", r"[0-9A-Z]*"),
    ("ASIA", r"[0-9A-Z]*"),
    *((f"xox{c}-", r"[A-Za-z0-9\-]*") for c in "abprs"),
)
_PARTIAL = re.compile(
    r"(?:(?<![A-Za-z0-9_])(?:"
    + "|".join(
        sorted(
            {re.escape(h[:k]) for h, _ in _HEADS for k in range(1, len(h))}
            | {re.escape(h) + body for h, body in _HEADS}
        )
    )
    + r")|-{1,5}(?:B(?:E(?:G(?:I(?:N(?: [A-Z ]*-{0,5})?)?)?)?)?)?)\Z"
)
# How far back a partial key head can start (the longest head plus room for its body).
_PARTIAL_SPAN = 64


def hold_start(
    text: str,
    pattern: re.Pattern[str] | None,
    names: Mapping[str, str],
    *,
    fragments: bool = False,
) -> int:
    """Where the tail of ``text`` that could still grow into a secret starts (``len`` if none)."""
    n = len(text)
    cut = n
    # A key format matched up to the very end may go on with the next chunk.
    floor = max(0, n - HOLD_CAP)
    for m in _FORMATS.finditer(text, floor):
        if m.end() == n:
            cut = min(cut, m.start())
    # The head of a key format, or a head with a short body, at the end.
    head = _PARTIAL.search(text, max(0, n - _PARTIAL_SPAN))
    if head is not None:
        cut = min(cut, head.start())
    # A proper prefix of a known secret at the end (with fragments: any part of one).
    if names:
        longest = max(map(len, names))
        for i in range(max(0, n - longest + 1), n):
            rest = text[i:]
            if any(
                len(v) > len(rest) and (rest in v if fragments else v.startswith(rest))
                for v in names
            ):
                cut = min(cut, i)
                break
    # A complete secret must not be split by the cut: move the cut to its start.
    longest = max(map(len, names), default=0)
    moved = True
    while moved and cut < n:
        moved = False
        lo = max(0, cut - max(HOLD_CAP, longest))
        for regex in (pattern, _FORMATS, _fragment_index(names)[0] if fragments else None):
            if regex is None:
                continue
            for m in regex.finditer(text, lo, min(n, cut + HOLD_CAP)):
                if m.start() < cut < m.end() and m.start() >= floor:
                    cut, moved = m.start(), True
    return cut


_FRAGMENT_CACHE: dict[frozenset[tuple[str, str]], tuple[re.Pattern[str] | None, dict[str, str]]]
_FRAGMENT_CACHE = {}


def _fragment_index(names: Mapping[str, str]) -> tuple[re.Pattern[str] | None, dict[str, str]]:
    """A pattern of every :data:`FRAGMENT_LEN`-character piece of every known value."""
    key = frozenset(names.items())
    found = _FRAGMENT_CACHE.get(key)
    if found is None:
        grams = {
            v[i : i + FRAGMENT_LEN]: source
            for v, source in names.items()
            for i in range(len(v) - FRAGMENT_LEN + 1)
        }
        pattern = re.compile("|".join(map(re.escape, sorted(grams)))) if grams else None
        if len(_FRAGMENT_CACHE) > 32:
            _FRAGMENT_CACHE.clear()
        found = _FRAGMENT_CACHE[key] = (pattern, grams)
    return found


def mask_fragments(text: str, names: Mapping[str, str]) -> str:
    """``text`` with every run of known-value characters of :data:`FRAGMENT_LEN` or more masked.

    A match is widened both ways for as long as the text goes on spelling the same value, so a
    piece is masked as one marker, not one per window.
    """
    pattern, grams = _fragment_index(names)
    if pattern is None or not text:
        return text
    out: list[str] = []
    pos = 0
    m = pattern.search(text)
    while m is not None:
        start, end = m.start(), m.end()
        for value in names:
            offset = value.find(m.group(0))
            while offset >= 0:
                s, e = start, end
                while (
                    s > pos
                    and offset - (start - s) > 0
                    and text[s - 1] == value[offset - (start - s) - 1]
                ):
                    s -= 1
                while (
                    e < len(text)
                    and offset + (e - start) < len(value)
                    and text[e] == value[offset + (e - start)]
                ):
                    e += 1
                start, end = min(start, s), max(end, e)
                offset = value.find(m.group(0), offset + 1)
        out.append(text[pos:start])
        out.append(f"[REDACTED:{grams[m.group(0)]}…]")
        pos = end
        m = pattern.search(text, pos)
    out.append(text[pos:])
    return "".join(out)


class StreamRedactor:
    """Redacts a stream given in pieces; a secret split across pieces is still masked whole.

    ``feed`` returns the redacted text that is safe to release now; ``flush`` the rest at the end.
    Concatenating every result equals redacting the whole stream at once (up to the masking of a
    key that grew past ``HOLD_CAP``). With ``fragments`` (raw logs), pieces of known values are
    masked as well; see the module's docstring.
    """

    def __init__(self, redactor: Redactor | None = None, *, fragments: bool = False) -> None:
        self._redactor = redactor
        self._fragments = fragments
        self._carry = ""

    @property
    def held(self) -> int:
        """How many characters wait for more input."""
        return len(self._carry)

    def _clean(self, text: str, pattern: re.Pattern[str] | None, names: dict[str, str]) -> str:
        text = Redactor._redact(text, pattern, names)
        return mask_fragments(text, names) if self._fragments else text

    def feed(self, text: str) -> str:
        r = self._redactor or default_redactor()
        buf = self._carry + text
        if not buf:
            return ""
        pattern, names = r._env_pattern()
        cut = hold_start(buf, pattern, names, fragments=self._fragments)
        self._carry = buf[cut:]
        return self._clean(buf[:cut], pattern, names) if cut else ""

    def flush(self) -> str:
        r = self._redactor or default_redactor()
        rest, self._carry = self._carry, ""
        pattern, names = r._env_pattern()
        return self._clean(rest, pattern, names) if rest else ""


__all__ = ["FRAGMENT_LEN", "StreamRedactor", "hold_start", "mask_fragments"]
