"""A plain-text agent CLI for the dashboard tests, run through the real `command` driver.

It obeys the last line of its prompt (a follow-up's context comes before it): ``write NAME
saying WORD`` writes a file, ``sleep S`` waits. It prints that line back and the prompt's first
line, so tests can see what the agent was given. ``wait for PATH`` waits until PATH exists
(a test lets the step end when it has seen what it wanted to see mid-run).
"""

import re
import sys
import time
from pathlib import Path

prompt = sys.argv[1]
order = prompt.strip().splitlines()[-1]
for path in re.findall(r"wait for (\S+)", order):
    deadline = time.monotonic() + 120
    while not Path(path).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
for seconds in re.findall(r"sleep (\d+(?:\.\d+)?)", order):
    time.sleep(float(seconds))
for name, word in re.findall(r"write (\S+) saying (\w+)", order):
    Path(name).write_text(word + "\n")
print(f"did: {order}")
print(f"first line: {prompt.strip().splitlines()[0]}")
sys.stdout.flush()
