"""A plain-text agent CLI for engine tests, run through the real `command` driver.

argv: scripted_cli.py RULES_JSON PROMPT. The first rule whose `match` occurs in the prompt
decides: `write` {path: content} (relative to the working folder), `say` (printed; `{n}` is the
call number of that rule), `sleep` seconds, `exit` code, and `fail_first` (exit 1 on the first
call of that rule only), `ignore_sigint` (stops only on SIGTERM), `wait_file` (a path: wait
until it exists, for tests that order two runs without timers). Every call is appended to
CALLS_LOG (JSON lines) for assertions.
"""

import json
import os
import signal
import sys
import time


def main() -> int:
    with open(sys.argv[1]) as f:
        rules = json.load(f)
    prompt = sys.argv[2]
    log = os.environ.get("CALLS_LOG")
    index = next((i for i, r in enumerate(rules) if r.get("match", "") in prompt), None)
    if index is None:
        print("no rule matched")
        return 0
    rule = rules[index]
    if rule.get("ignore_sigint"):  # like a CLI that only stops on SIGTERM
        # Before the call is logged: a test that saw the call knows the handler is in place.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    n = 1
    if log:
        if os.path.exists(log):
            with open(log) as f:
                n += sum(1 for line in f if json.loads(line)["rule"] == index)
        with open(log, "a") as f:
            f.write(
                json.dumps(
                    {"rule": index, "prompt": prompt, "cwd": os.getcwd(), "start": time.time()}
                )
                + "\n"
            )
    if rule.get("fail_first") and n == 1:
        print("first call fails", file=sys.stderr)
        return 1
    time.sleep(rule.get("sleep", 0))
    while rule.get("wait_file") and not os.path.exists(rule["wait_file"]):
        time.sleep(0.05)
    for path, content in rule.get("write", {}).items():
        with open(path, "w") as f:
            f.write(content)
    print(rule.get("say", "ok").replace("{n}", str(n)))
    sys.stdout.flush()
    if log:
        with open(log, "a") as f:
            f.write(json.dumps({"rule": -1, "end_of": index, "end": time.time()}) + "\n")
    return int(rule.get("exit", 0))


if __name__ == "__main__":
    sys.exit(main())
