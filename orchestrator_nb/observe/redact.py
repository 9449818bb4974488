"""Secret redaction for everything this project writes or shows.

Two sources of secrets:

* values of environment variables whose *names* look like credentials (``*_API_KEY``,
  ``*_TOKEN``, ``*_SECRET``, ``*_PASSWORD`` ...), read live from the environment so a key set
  after import is still caught;
* well-known key *formats* (``sk-``, ``sk-ant-``, ``ghp_``, ``gho_``, ``github_pat_``, ``AIza``,
  ``AKIA``, Slack tokens, PEM private keys), caught wherever they appear, even when no variable
  holds them (an agent that prints a key it found in a file).

Three more sources are registered rather than guessed: values the user adds
(:func:`orchestrator_nb.secrets.add`), variables named in the settings' ``secrets:`` list, and the
variables (and literal values) of an agent's configured ``env:``.

Values shorter than :data:`MIN_SECRET_LEN`, or common words (``true``, ``localhost``), are never
treated as secrets: ``DEBUG_TOKEN=1`` must not turn every "1" in a log into ``[REDACTED]``.

Streams: :class:`StreamRedactor` holds back the tail of what it was given while that tail could
still be the start of a secret (a proper prefix of a known value, the head of a key format, a key
that may go on), so a value split across chunks, lines or deltas is masked whole; the held text is
never longer than the longest secret, or :data:`HOLD_CAP` for a key format that keeps growing.
:meth:`Redactor.redact_live` applies the same rule to accumulated text that is still growing.
"""

from __future__ import annotations

import dataclasses
import html
import json
import os
import re
import threading
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .redact_stream import StreamRedactor

MIN_SECRET_LEN = 8
# Values that are long enough but are settings, not credentials (``USE_TOKEN_CACHE=disabled``).
COMMON_VALUES = frozenset(
    {"true", "false", "yes", "no", "none", "null", "on", "off", "enabled", "disabled"}
    | {"localhost", "undefined", "default", "changeme", "password", "required", "optional"}
)
# A key format match longer than this is released even while it still grows (a base64 blob that
# happens to start with ``sk-`` must not stall a stream forever); it is masked all the same.
HOLD_CAP = 1 << 16


def is_secret_value(value: object) -> bool:
    """Whether a value is long and uncommon enough to be masked wherever it appears."""
    return (
        isinstance(value, str)
        and len(value.strip()) >= MIN_SECRET_LEN
        and value.strip().lower() not in COMMON_VALUES
    )


# Matched against whole ``_``-separated words of the name, so PATH, TOKENIZERS_PARALLELISM,
# KEYBOARD_LAYOUT or PWD (the current folder) are not mistaken for credentials.
_SECRET_NAME = re.compile(
    r"(?:^|_)(?:API_?KEY|KEY|KEYS|TOKEN|TOKENS|SECRET|SECRETS|PASSWORD|PASSWD|PASSPHRASE|"
    r"CREDENTIAL|CREDENTIALS|PAT|PRIVATE_KEY|ACCESS_KEY|AUTH_TOKEN|COOKIE|SESSION_KEY)(?:_|$)",
    re.IGNORECASE,
)

# (label, pattern). The label replaces the match, so a reader still sees which kind of key it was.
KNOWN_FORMATS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("sk-ant-", re.compile(r"(?<![A-Za-z0-9_])sk-ant-[A-Za-z0-9_\-]{8,}")),
    ("sk-", re.compile(r"(?<![A-Za-z0-9_])sk-[A-Za-z0-9_\-]{16,}")),
    ("github_pat_", re.compile(r"(?<![A-Za-z0-9_])github_pat_[A-Za-z0-9_]{16,}")),
    ("gh?_", re.compile(r"(?<![A-Za-z0-9_])gh[pousr]_[A-Za-z0-9]{16,}")),
    ("AIza", re.compile(r"(?<![A-Za-z0-9_])AIza[0-9A-Za-z_\-]{30,}")),
    ("AKIA", re.compile(r"(?<![A-Za-z0-9])(?:AKIA|ASIA)[0-9A-Z]{16}(?![0-9A-Z])")),
    ("xox?-", re.compile(r"(?<![A-Za-z0-9_])xox[abprs]-[A-Za-z0-9\-]{10,}")),
    (
        "private key",
        re.compile(
            r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(?:-----END [A-Z ]*PRIVATE KEY-----|\Z)",
            re.DOTALL,
        ),
    ),
)
# Every known format starts with one of these characters; the lookahead lets the regex engine
# skip all other positions cheaply (about 6x faster on a long agent stream, same matches).
_FORMATS = re.compile(
    "(?=[sgAx-])(?:" + "|".join(f"(?:{p.pattern})" for _, p in KNOWN_FORMATS) + ")", re.DOTALL
)


def is_secret_name(name: str) -> bool:
    """Whether an environment variable's name says it holds a credential."""
    return bool(_SECRET_NAME.search(name))


def _escaped(value: str) -> set[str]:
    forms = {html.escape(value), html.escape(value, quote=False), json.dumps(value)[1:-1]}
    forms.add(json.dumps(value, ensure_ascii=False)[1:-1])
    forms.discard(value)
    return forms


def _label_for(match: str) -> str:
    for label, pattern in KNOWN_FORMATS:
        if pattern.fullmatch(match):
            return label
    return "key"


class Redactor:
    """Replaces secret values in text and in JSON-like objects.

    ``environ`` defaults to the live ``os.environ``; pass a mapping to pin it (tests). ``extra``
    adds values known to be secret whatever their name (an agent's configured ``env``).
    """

    def __init__(
        self,
        environ: Mapping[str, str] | None = None,
        *,
        extra: Iterable[str] = (),
    ) -> None:
        self._environ = environ
        self._extra: dict[str, str] = {v: "secret" for v in extra if is_secret_value(v)}
        self._extra_names: set[str] = set()
        self._lock = threading.Lock()
        self._key: frozenset[tuple[str, str]] | None = None
        self._names: dict[str, str] = {}
        self._pattern: re.Pattern[str] | None = None
        self._raw: dict[Any, Any] | None = None

    def add(self, *values: str, source: str = "secret") -> None:
        """Treat these values as secrets from now on (short and common ones are ignored).

        ``source`` names where they came from in the ``[REDACTED:…]`` marker.
        """
        with self._lock:
            for v in values:
                if is_secret_value(v):
                    self._extra.setdefault(v, source)
                    self._extra.setdefault(v.strip(), source)
            self._key = None

    def add_names(self, *names: str) -> None:
        """Treat the values of these environment variables as secrets, whatever their names."""
        with self._lock:
            self._extra_names.update(n for n in names if isinstance(n, str) and n)
            self._key = None

    def secrets(self) -> dict[str, str]:
        """The secret values currently known, mapped to where they came from."""
        env = self._environ if self._environ is not None else os.environ
        with self._lock:
            names, extra = set(self._extra_names), dict(self._extra)
        found = {
            value: name
            for name, value in env.items()
            if is_secret_value(value) and (is_secret_name(name) or name in names)
        }
        for value, source in extra.items():
            found.setdefault(value, source)
        return found

    def longest(self) -> int:
        """The length of the longest secret value known now (0 when there is none)."""
        return max(map(len, self._env_pattern()[1]), default=0)

    def env_reference(self, value: str) -> str | None:
        """The name of an environment variable that holds ``value`` now, if one does."""
        env = self._environ if self._environ is not None else os.environ
        with self._lock:
            names = set(self._extra_names)
        for name, held in env.items():
            if held == value and (is_secret_name(name) or name in names):
                return name
        return None

    def _env_pattern(self) -> tuple[re.Pattern[str] | None, dict[str, str]]:
        # The environment is re-read whenever it changed, so a key exported mid-session is caught
        # from the next line on. os.environ keeps its encoded items in ``_data``: comparing that
        # dict costs ~1 µs, decoding every item ~30 µs, and this runs for every log line.
        env = self._environ if self._environ is not None else os.environ
        raw = getattr(env, "_data", None)
        with self._lock:
            if self._key is not None and raw is not None and raw == self._raw:
                return self._pattern, self._names
        found = self.secrets()
        key = frozenset(found.items())
        with self._lock:
            if key != self._key:
                # The forms a value takes once escaped for HTML or JSON are masked too: a
                # password with ``&`` or ``"`` in it is still found in a rendered page.
                found = {**{e: n for v, n in found.items() for e in _escaped(v)}, **found}
                # Longest first, so a secret that contains another is masked whole.
                values = sorted(found, key=len, reverse=True)
                self._pattern = re.compile("|".join(map(re.escape, values))) if values else None
                self._names = found
                self._key = key
            self._raw = dict(raw) if isinstance(raw, dict) else None
            return self._pattern, self._names

    def redact(self, text: str) -> str:
        """``text`` with every known secret replaced by a ``[REDACTED:…]`` marker."""
        if not isinstance(text, str) or not text:
            return text
        return self._redact(text, *self._env_pattern())

    @staticmethod
    def _redact(text: str, pattern: re.Pattern[str] | None, names: dict[str, str]) -> str:
        if pattern is not None:
            text = pattern.sub(lambda m: f"[REDACTED:{names.get(m.group(0), 'secret')}]", text)
        return _FORMATS.sub(lambda m: f"[REDACTED:{_label_for(m.group(0))}]", text)

    def hold_start(self, text: str) -> int:
        """Where the tail of ``text`` that could still grow into a secret starts (``len`` if none).

        Everything before the result can be redacted and released; the rest must wait for more
        text (or the end of the stream).
        """
        from .redact_stream import hold_start

        pattern, names = self._env_pattern()
        return hold_start(text, pattern, names)

    def redact_live(self, text: str) -> str:
        """Redacted ``text`` that is still growing (a live view): a possible secret start is cut."""
        if not isinstance(text, str) or not text:
            return text
        from .redact_stream import hold_start

        pattern, names = self._env_pattern()
        return self._redact(text[: hold_start(text, pattern, names)], pattern, names)

    def to_references(self, text: str) -> tuple[str, list[str], bool]:
        """``text`` with each secret replaced by where it came from, for a journal to keep.

        A value held by an environment variable becomes ``${NAME}`` (listed in the second item,
        so :func:`expand_references` can put it back); any other secret is redacted and the third
        item says the text can no longer be restored.
        """
        pattern, names = self._env_pattern()
        refs: list[str] = []
        lost = False

        def swap(m: re.Match[str]) -> str:
            nonlocal lost
            name = self.env_reference(m.group(0))
            if name is None:
                lost = True
                return f"[REDACTED:{names.get(m.group(0), _label_for(m.group(0)))}]"
            if name not in refs:
                refs.append(name)
            return "${" + name + "}"

        if pattern is not None:
            text = pattern.sub(swap, text)
        text = _FORMATS.sub(swap, text)
        return text, refs, lost

    def stream(self, *, fragments: bool = False) -> StreamRedactor:
        """A :class:`StreamRedactor` that masks with this redactor."""
        from .redact_stream import StreamRedactor

        return StreamRedactor(self, fragments=fragments)

    def redact_obj(self, obj: Any) -> Any:
        """A copy of a JSON-like object (dicts, lists, tuples, dataclasses) with strings redacted.

        Other scalars come back unchanged; anything else is redacted through its ``str()``.
        """
        # The environment is read once per object, not once per string in it.
        pattern, names = self._env_pattern()

        def walk(value: Any) -> Any:
            if isinstance(value, str):
                return self._redact(value, pattern, names) if value else value
            if value is None or isinstance(value, (bool, int, float)):
                return value
            if isinstance(value, Mapping):
                return {walk(str(k)): walk(v) for k, v in value.items()}
            if isinstance(value, (list, tuple, set, frozenset)):
                return [walk(v) for v in value]
            if dataclasses.is_dataclass(value) and not isinstance(value, type):
                return walk({f.name: getattr(value, f.name) for f in dataclasses.fields(value)})
            return self._redact(str(value), pattern, names)

        return walk(obj)

    def contains_secret(self, text: str) -> bool:
        """Whether ``text`` holds any secret this redactor knows (for checks and tests)."""
        return self.redact(text) != text


def expand_references(
    text: str, refs: Iterable[str], environ: Mapping[str, str] | None = None
) -> tuple[str, list[str]]:
    """``text`` with ``${NAME}`` put back for each name in ``refs``; also the names not set now."""
    env = environ if environ is not None else os.environ
    missing = [name for name in refs if not env.get(name)]
    for name in refs:
        if name not in missing:
            text = text.replace("${" + name + "}", env[name])
    return text, missing


_default: Redactor | None = None
_default_lock = threading.Lock()


def default_redactor() -> Redactor:
    """The process-wide redactor: the live environment plus values given to :func:`add_secret`."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Redactor()
        return _default


def redact(text: str) -> str:
    """Redact ``text`` with the process-wide redactor."""
    return default_redactor().redact(text)


def clip(text: str, limit: int, *, tail: str = "") -> str:
    """``text`` redacted, then cut to ``limit`` characters (``tail`` marks a cut).

    Always in that order: a cut through a secret leaves a piece that no pattern and no known
    value matches any more, so it would pass every later redaction whole.
    """
    clean = redact(text)
    return clean if len(clean) <= limit else clean[:limit] + tail


def clip_tail(text: str, limit: int) -> str:
    """The last ``limit`` characters of ``text``, redacted before the cut (see :func:`clip`)."""
    return redact(text)[-limit:]


def redact_obj(obj: Any) -> Any:
    """Redact a JSON-like object with the process-wide redactor."""
    return default_redactor().redact_obj(obj)


def add_secret(*values: str, source: str = "secret") -> None:
    """Register values as secrets for the process-wide redactor (e.g. an agent's ``env``)."""
    default_redactor().add(*values, source=source)


def add_secret_names(*names: str) -> None:
    """Treat the values of these environment variables as secrets, whatever their names."""
    default_redactor().add_names(*names)


def redact_live(text: str) -> str:
    """Redact growing text (a live view) with the process-wide redactor; see ``redact_live``."""
    return default_redactor().redact_live(text)


def __getattr__(name: str) -> Any:
    # The streaming half lives beside this module (it needs the patterns defined here).
    if name == "StreamRedactor":
        from . import redact_stream

        return getattr(redact_stream, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "COMMON_VALUES",
    "HOLD_CAP",
    "KNOWN_FORMATS",
    "MIN_SECRET_LEN",
    "Redactor",
    "StreamRedactor",
    "add_secret",
    "add_secret_names",
    "clip",
    "default_redactor",
    "expand_references",
    "is_secret_name",
    "is_secret_value",
    "redact",
    "redact_live",
    "redact_obj",
]
