#!/usr/bin/env python3
"""Print one 'N passed, N failed, N skipped' line from meson test logs.

meson writes one JSON object per test to meson-logs/testlog.json. OK and
EXPECTEDFAIL count as passed; FAIL, UNEXPECTEDPASS, TIMEOUT and ERROR as
failed; SKIP as skipped. --extra adds a line of the same form (the ARM64 run).
Exits 1 when anything failed or no test ran.
"""
import argparse
import json
import re
import sys

PASSED = {"OK", "EXPECTEDFAIL"}
SKIPPED = {"SKIP"}


def count_log(path):
    passed = failed = skipped = 0
    try:
        with open(path, encoding="utf-8") as log:
            for line in log:
                line = line.strip()
                if not line:
                    continue
                result = json.loads(line).get("result", "ERROR")
                if result in PASSED:
                    passed += 1
                elif result in SKIPPED:
                    skipped += 1
                else:
                    failed += 1
    except FileNotFoundError:
        print(f"summarize: {path} not found, counted as one failure", file=sys.stderr)
        failed += 1
    return passed, failed, skipped


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("logs", nargs="+")
    parser.add_argument("--extra", default="")
    args = parser.parse_args()

    passed = failed = skipped = 0
    for path in args.logs:
        p, f, s = count_log(path)
        passed, failed, skipped = passed + p, failed + f, skipped + s

    match = re.match(r"(\d+) passed, (\d+) failed", args.extra or "")
    if match:
        passed += int(match.group(1))
        failed += int(match.group(2))

    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed or passed == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
