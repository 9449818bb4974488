"""A stand-in agent executable for tests of the real subprocess path.

Behaviour comes from the environment so the same file can sit behind any driver's argv:
  FAKE_MODE      replay | hang | crash | garbage | flood | grandchild | echo-stdin | slow-lines |
                 escape (a setsid double-forked child keeps stdout open, the CLI hangs) |
                 exit-leaving-child (the same child, but the CLI prints a line and exits 0)
  FAKE_SCRIPT    transcript to replay (replay, crash)
  FAKE_EXIT      exit code after replaying (default 0)
  FAKE_STDERR    text to print on stderr first
  FAKE_MB        megabytes to print (flood)
  FAKE_PIDFILE   where grandchild mode writes the grandchild's pid
  FAKE_ARGV_OUT  where to write the argv it was called with (JSON)
  FAKE_VERSION   what `--version` prints
"""

import json
import os
import signal
import sys
import time


def _escaped_child() -> None:
    """Leave the process group the way daemons do: fork, setsid, fork again; the grandchild
    ignores SIGINT and SIGTERM and keeps the inherited stdout and stderr open."""
    first = os.fork()
    if first == 0:
        os.setsid()
        if os.fork() != 0:
            os._exit(0)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        pidfile = os.environ.get("FAKE_PIDFILE")
        if pidfile:
            with open(pidfile + ".tmp", "w") as f:
                f.write(str(os.getpid()))
            os.replace(pidfile + ".tmp", pidfile)
        while True:
            time.sleep(3600)
    os.waitpid(first, 0)  # the middle process exits at once: the grandchild is an orphan


def main() -> int:
    mode = os.environ.get("FAKE_MODE", "replay")
    if sys.argv[1:] == ["--version"]:
        print(os.environ.get("FAKE_VERSION", "fake-agent 1.0"))
        return 0
    argv_out = os.environ.get("FAKE_ARGV_OUT")
    if argv_out:
        with open(argv_out, "w") as f:
            json.dump({"argv": sys.argv[1:], "cwd": os.getcwd()}, f)
    if os.environ.get("FAKE_STDERR"):
        sys.stderr.write(os.environ["FAKE_STDERR"] + "\n")
        sys.stderr.flush()
    out = sys.stdout.buffer
    if mode in ("replay", "crash"):
        with open(os.environ["FAKE_SCRIPT"], "rb") as f:
            lines = f.read().splitlines(keepends=True)
        if mode == "crash":
            lines = lines[: max(1, len(lines) // 2)]
        for line in lines:
            out.write(line if line.endswith(b"\n") else line + b"\n")
            out.flush()
        if mode == "crash":
            os.kill(os.getpid(), signal.SIGSEGV)
        return int(os.environ.get("FAKE_EXIT", "0"))
    if mode == "hang":
        while True:
            time.sleep(3600)
    if mode == "slow-lines":
        for i in range(1000):
            out.write(b'{"type":"tick","n":%d}\n' % i)
            out.flush()
            time.sleep(0.1)
        return 0
    if mode == "garbage":
        out.write(b'\xff\xfe not json \x80\x81\n{"half": \n\n[1,2,3]\n\x00\x01\x02\n')
        out.write(b"x" * 200_000 + b"\n")  # one line far longer than a pipe buffer
        out.flush()
        return 0
    if mode == "flood":
        target = int(float(os.environ.get("FAKE_MB", "50")) * 1024 * 1024)
        line = b'{"type":"noise","data":"' + b"a" * 1000 + b'"}\n'
        sent = 0
        while sent < target:
            out.write(line)
            sent += len(line)
        sys.stderr.buffer.write(b"e" * 2_000_000)  # also a stderr far beyond its tail
        out.flush()
        return 0
    if mode == "echo-stdin":
        data = sys.stdin.buffer.read()
        out.write(json.dumps({"stdin": data.decode("utf-8", "replace")}).encode() + b"\n")
        return 0
    if mode == "grandchild":
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            pidfile = os.environ.get("FAKE_PIDFILE")
            if pidfile:
                with open(pidfile, "w") as f:
                    f.write(str(os.getpid()))
            while True:
                time.sleep(3600)
        out.write(b'{"type":"started"}\n')
        out.flush()
        while True:
            time.sleep(3600)
    if mode in ("escape", "exit-leaving-child"):
        _escaped_child()
        out.write(b'{"type":"started"}\n')
        out.flush()
        if mode == "exit-leaving-child":
            return 0
        while True:
            time.sleep(3600)
    sys.stderr.write(f"unknown FAKE_MODE {mode}\n")
    return 2


if __name__ == "__main__":
    sys.exit(main())
