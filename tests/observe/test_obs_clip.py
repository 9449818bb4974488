"""A text cut for a preview or a tail is redacted before the cut, never after."""

from __future__ import annotations

import pytest

from orchestrator_nb.observe.redact import clip, clip_tail
from orchestrator_nb.process import _Tail

SECRET = "svc7f3a9b2c4d5e6f708192a3b4c5d6"


def _pieces(text: str) -> list[str]:
    return [SECRET[i : i + 12] for i in range(len(SECRET) - 11) if SECRET[i : i + 12] in text]


@pytest.mark.parametrize("at", range(170, 200, 3))
def test_no_cut_leaves_a_piece_of_a_secret(monkeypatch: pytest.MonkeyPatch, at: int) -> None:
    monkeypatch.setenv("MY_SERVICE_TOKEN", SECRET)
    text = "x" * at + SECRET + " and more words after it"
    assert not _pieces(clip(text, 200, tail="…"))
    assert not _pieces(clip_tail(text, len(text) - at - 5))


def test_a_stream_tail_starts_at_a_whole_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_SERVICE_TOKEN", SECRET)
    tail = _Tail(64)
    for _ in range(5):
        tail.add(("token " + SECRET + "\n").encode())
    tail.add(b"last line\n")
    text = tail.text()
    assert text.endswith("last line\n")
    assert all(line.endswith(SECRET) for line in text.splitlines()[:-1])  # whole lines only
