"""Redaction: secret-looking environment values and well-known key formats, nothing else."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from orchestrator_nb.observe.redact import (
    MIN_SECRET_LEN,
    Redactor,
    add_secret,
    default_redactor,
    is_secret_name,
    redact,
)

# Fake keys in the real formats; none of them is valid anywhere.
KEYS = {
    "sk-ant-": "sk-ant-api03-Zx9Yq8Wp7Vo6Un5Tm4Sl3Rk2Qj1Pi0",
    "sk-": "sk-proj-AbCdEfGhIjKlMnOpQrStUv012345",
    "gh?_": "ghp_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
    "gho": "gho_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
    "github_pat_": "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz",
    "AIza": "AIzaSyA-1234567890abcdefghijklmnopqrstu",
    "AKIA": "AKIAIOSFODNN7EXAMPLE",
    "xox?-": "xoxb-123456789012-abcdefghijklmnop",
}


@pytest.mark.parametrize("key", list(KEYS.values()), ids=list(KEYS))
def test_known_formats_are_masked_anywhere(key: str) -> None:
    r = Redactor({})
    for text in (key, f"the key is {key}.", f'{{"k": "{key}"}}', f"Authorization: Bearer {key}\n"):
        out = r.redact(text)
        assert key not in out
        assert "[REDACTED:" in out


def test_private_key_block_is_masked() -> None:
    pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEabc\ndef\n-----END RSA PRIVATE KEY-----"
    out = Redactor({}).redact(f"found:\n{pem}\nend")
    assert "MIIEabc" not in out and out.startswith("found:\n[REDACTED:") and out.endswith("\nend")


@pytest.mark.parametrize(
    "name",
    [
        "OPENAI_API_KEY",
        "ANTHROPIC_API_KEY",
        "GH_TOKEN",
        "MY_SERVICE_TOKEN",
        "AWS_SECRET_ACCESS_KEY",
        "DB_PASSWORD",
        "password",
        "GITHUB_PAT",
        "GOOGLE_APPLICATION_CREDENTIALS",
        "APIKEY",
        "SIGNING_KEY",
    ],
)
def test_secret_names(name: str) -> None:
    assert is_secret_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "PATH",
        "PWD",
        "OLDPWD",
        "HOME",
        "TOKENIZERS_PARALLELISM",
        "KEYBOARD",
        "SSH_AUTH_SOCK",
        "LANG",
    ],
)
def test_ordinary_names(name: str) -> None:
    assert not is_secret_name(name)


def test_environment_values_are_masked_with_their_name() -> None:
    r = Redactor({"MY_SERVICE_TOKEN": "s3cr3t-value-123", "HOME": "/home/someone-long"})
    out = r.redact("curl -H s3cr3t-value-123 /home/someone-long")
    assert out == "curl -H [REDACTED:MY_SERVICE_TOKEN] /home/someone-long"


def test_short_values_are_not_secrets() -> None:
    r = Redactor({"DEBUG_TOKEN": "1", "X_KEY": "abc", "Y_SECRET": "x" * (MIN_SECRET_LEN - 1)})
    text = "1 abc xxxxxxx"
    assert r.redact(text) == text
    r.add("short")
    assert r.redact("short") == "short"


def test_longest_secret_wins() -> None:
    r = Redactor({"A_TOKEN": "abcdefgh", "B_TOKEN": "abcdefgh-and-more"})
    assert r.redact("abcdefgh-and-more") == "[REDACTED:B_TOKEN]"


def test_regex_metacharacters_in_values() -> None:
    r = Redactor({"X_PASSWORD": "a.b*c+d?(e)[f]"})
    assert r.redact("pw a.b*c+d?(e)[f] aXbbc") == "pw [REDACTED:X_PASSWORD] aXbbc"


def test_live_environment_is_reread(monkeypatch: pytest.MonkeyPatch) -> None:
    r = Redactor()
    value = "late-exported-value-42"
    assert r.redact(value) == value
    monkeypatch.setenv("LATE_API_KEY", value)
    assert r.redact(value) == "[REDACTED:LATE_API_KEY]"
    monkeypatch.delenv("LATE_API_KEY")
    assert r.redact(value) == value


def test_ordinary_text_is_untouched() -> None:
    r = Redactor({})
    text = "task-1234567890abcdefghijkl; risk-assessment | sk-short ghp_short AIza"
    assert r.redact(text) == text


@dataclass
class _Thing:
    name: str
    n: int


def test_redact_obj_walks_containers() -> None:
    r = Redactor({"X_TOKEN": "tok-12345678"})
    obj = {
        "a": ["tok-12345678", 3, None, True, 1.5],
        "b": {"tok-12345678": ("x", "tok-12345678")},
        "c": _Thing("tok-12345678", 2),
        "d": object,
    }
    out = r.redact_obj(obj)
    assert "tok-12345678" not in repr(out)
    assert out["a"][1:] == [3, None, True, 1.5]
    assert out["c"] == {"name": "[REDACTED:X_TOKEN]", "n": 2}


def test_process_wide_helpers(monkeypatch: pytest.MonkeyPatch) -> None:
    assert default_redactor() is default_redactor()
    add_secret("registered-secret-xyz")
    assert "registered-secret-xyz" not in redact("a registered-secret-xyz b")
    assert default_redactor().contains_secret("registered-secret-xyz")
