"""A stand-in agent CLI for the benchmarks (the approach of tests/fakes/fake_agent.py, own copy).

:func:`_common.make_fake_agent` writes this file with a shebang as a real executable. It ignores
its argv; the environment says what to do:

  FAKE_MODE     replay | flood | paced | grandchild
  FAKE_SCRIPT   the transcript to write (replay: line by line, flushed; flood: as fast as possible)
  FAKE_SLEEP    seconds of "work" before writing (replay)
  FAKE_COUNT    paced: how many text deltas; FAKE_PACE: seconds between them
  FAKE_PIDDIR   grandchild: files leader-<pid> and child-<pid> for the two processes
  FAKE_VERSION  what ``--version`` prints
"""

import json
import os
import signal
import sys
import time

SESSION = "0c3695fd-5af4-4da2-911a-b49d57932613"


def _delta(text: str) -> bytes:
    event = {
        "type": "stream_event",
        "event": {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": text},
        },
        "session_id": SESSION,
        "parent_tool_use_id": None,
    }
    return json.dumps(event).encode() + b"\n"


def _result() -> bytes:
    result = {
        "type": "result",
        "subtype": "success",
        "is_error": False,
        "result": "done",
        "session_id": SESSION,
        "usage": {"input_tokens": 10, "output_tokens": 2},
        "total_cost_usd": 0.0,
    }
    return json.dumps(result).encode() + b"\n"


def main() -> int:
    if sys.argv[1:] == ["--version"]:
        print(os.environ.get("FAKE_VERSION", "fake-agent 1.0"))
        return 0
    mode = os.environ.get("FAKE_MODE", "replay")
    out = sys.stdout.buffer
    if mode == "replay":
        time.sleep(float(os.environ.get("FAKE_SLEEP", "0")))
        with open(os.environ["FAKE_SCRIPT"], "rb") as f:
            for line in f:
                out.write(line if line.endswith(b"\n") else line + b"\n")
                out.flush()
        return 0
    if mode == "flood":
        with open(os.environ["FAKE_SCRIPT"], "rb") as f:
            while True:
                chunk = f.read(1 << 16)
                if not chunk:
                    break
                out.write(chunk)
        out.flush()
        return 0
    if mode == "paced":
        pace = float(os.environ.get("FAKE_PACE", "0.01"))
        for seq in range(int(os.environ.get("FAKE_COUNT", "100"))):
            # CLOCK_MONOTONIC is system-wide on Linux: the reader compares it with its own.
            out.write(_delta(f" [{seq}@{time.monotonic():.6f}]"))
            out.flush()
            time.sleep(pace)
        out.write(_result())
        out.flush()
        return 0
    if mode == "grandchild":
        piddir = os.environ["FAKE_PIDDIR"]
        if os.fork() == 0:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # only SIGTERM or SIGKILL end it
            open(os.path.join(piddir, f"child-{os.getpid()}"), "w").close()
            while True:
                time.sleep(3600)
        open(os.path.join(piddir, f"leader-{os.getpid()}"), "w").close()
        out.write(b'{"type":"system","subtype":"init","session_id":"' + SESSION.encode() + b'"}\n')
        out.flush()
        while True:
            time.sleep(3600)
    sys.stderr.write(f"unknown FAKE_MODE {mode}\n")
    return 2


if __name__ == "__main__":
    sys.exit(main())
