#!/usr/bin/env python3
"""Prints what a ctest run did: passed, skipped (grouped by the reason the test gave) and
failed counts. Reads ctest's console output (the file given) for each test's status and
Testing/Temporary/LastTest.log beside it for the skip reasons.

usage: summarize_ctest.py CTEST_OUTPUT BUILD_DIR
"""
import collections
import os
import re
import sys


def statuses(console):
    """{test name: 'Passed' | 'Skipped' | 'Failed' | ...} from ctest's progress lines."""
    out = {}
    for line in console.splitlines():
        m = re.match(r"\s*\d+/\d+ Test\s+#\d+: (.+?) \.{3,}\s*(\*+)?(\w[\w ]*?)\s+[\d.]+ sec", line)
        if m:
            out[m.group(1).split("  # ")[0].strip()] = m.group(3).strip()
    return out


def outputs(log):
    """{test name: its output} from LastTest.log."""
    out = {}
    for block in log.split("Testing: ")[1:]:
        name = block.split("\n", 1)[0].strip()
        body = block.split("Output:", 1)[-1].split("<end of output>", 1)[0]
        out[name] = body
    return out


def skip_reason(output):
    # GoogleTest: "file:line: Skipped" then the message; a script: its last line.
    lines = [l.strip() for l in output.splitlines() if l.strip() and not l.startswith("---")]
    for i, line in enumerate(lines):
        if line.endswith(": Skipped") and i + 1 < len(lines):
            return lines[i + 1]
    return lines[0] if lines else "(no output)"


def main():
    console_path, build_dir = sys.argv[1], sys.argv[2]
    with open(console_path, errors="replace") as f:
        status = statuses(f.read())
    log_path = os.path.join(build_dir, "Testing", "Temporary", "LastTest.log")
    logs = {}
    if os.path.exists(log_path):
        with open(log_path, errors="replace") as f:
            logs = outputs(f.read())
    counts = collections.Counter(status.values())
    reasons = collections.Counter(
        skip_reason(logs.get(name, "")) for name, s in status.items() if s == "Skipped")
    print(f"tests: {counts.get('Passed', 0)} passed, {counts.get('Skipped', 0)} skipped, "
          f"{len(status) - counts.get('Passed', 0) - counts.get('Skipped', 0)} failed "
          f"or not run, of {len(status)}")
    for reason, n in reasons.most_common():
        print(f"  skipped {n}: {reason}")


if __name__ == "__main__":
    main()
