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
# How far around a cut a match that crosses it is looked for (a PEM private key is ~3.3 KiB).
_CROSS_WINDOW = 8192
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
    # A complete secret (or a piece of one) must not be split by the cut: move the cut to its
    # start. Only matches near the cut can cross it; a PEM block, the longest, fits in the window.
    reach = max(_CROSS_WINDOW, max(map(len, names), default=0))
    moved = True
    while moved and cut < n:
        moved = False
        lo, hi = max(0, cut - reach), min(n, cut + reach)
        spans = [
            m.span() for r in (pattern, _FORMATS) if r is not None for m in r.finditer(text, lo, hi)
        ]
        if fragments:
            spans += [(a, b) for a, b, _ in fragment_spans(text, names, lo, hi)]
        for a, b in spans:
            if a < cut < b and a >= floor:
                cut, moved = a, True
    return cut


# Pieces are found by their aligned blocks: a run of FRAGMENT_LEN (>= 2 * _BLOCK - 1) characters
# of a value always contains one whole block of it, and ``str.find`` of a few blocks is far
# faster than one regular expression with an alternative per piece.
_BLOCK = 5


def fragment_spans(
    text: str, names: Mapping[str, str], start: int = 0, end: int | None = None
) -> list[tuple[int, int, str]]:
    """``(start, end, source)`` of every run of :data:`FRAGMENT_LEN`+ characters of a known value.

    Each run is as long as the text goes on spelling the same value; overlapping runs are merged.
    """
    stop = len(text) if end is None else end
    found: list[tuple[int, int, str]] = []
    for value, source in names.items():
        if len(value) < FRAGMENT_LEN:
            continue
        for j in range(0, len(value) - _BLOCK + 1, _BLOCK):
            block = value[j : j + _BLOCK]
            hit = text.find(block, start, stop)
            while hit >= 0:
                s, e = hit, hit + _BLOCK
                while s > start and j - (hit - s) > 0 and text[s - 1] == value[j - (hit - s) - 1]:
                    s -= 1
                while e < stop and j + (e - hit) < len(value) and text[e] == value[j + (e - hit)]:
                    e += 1
                if e - s >= FRAGMENT_LEN:
                    found.append((s, e, source))
                hit = text.find(block, hit + 1, stop)
    found.sort()
    merged: list[tuple[int, int, str]] = []
    for s, e, source in found:
        if merged and s <= merged[-1][1]:
            ps, pe, psource = merged[-1]
            merged[-1] = (ps, max(pe, e), psource)
        else:
            merged.append((s, e, source))
    return merged


def mask_fragments(text: str, names: Mapping[str, str]) -> str:
    """``text`` with every run of known-value characters of :data:`FRAGMENT_LEN` or more masked.

    A run is masked as one marker, as far as the text goes on spelling the same value.
    """
    if not text or not names:
        return text
    out: list[str] = []
    pos = 0
    for s, e, source in fragment_spans(text, names):
        out.append(text[pos:s])
        out.append(f"[REDACTED:{source}…]")
        pos = e
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


__all__ = ["FRAGMENT_LEN", "StreamRedactor", "fragment_spans", "hold_start", "mask_fragments"]
