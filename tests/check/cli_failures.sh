#!/bin/sh
# bitcpm-check when part of the run cannot be done. A run that exits 2 never
# reports "pass". An unreadable reference adds a critical format.unreadable
# finding naming its path, and the JUnit report then lists no reference.*
# test case. A report file that cannot be written adds a critical
# report.unwritable finding and is named on stderr. An unreadable checkpoint gets a JUnit suite of its
# own, named by its path, and a file row in the audit database that
# `bitcpm-audit history PATH` finds. A byte changed in a stored tensor entry
# of a zip checkpoint passes by default and is a critical format.crc finding
# with --verify-crc. -V prints the version of both commands.
# Usage: cli_failures.sh BITCPM_CHECK BITCPM_AUDIT JSON_PROBE BITCPM_LS
set -u
check=$1
audit=$2
probe=$3
ls_tool=$4
good=$BCPM_FIXTURES/quant/pairs/pseudo.pt
[ -f "$good" ] || { echo "fixture $good not found; skipping"; exit 77; }

test_name=failures
. "$(dirname "$0")/common.sh"

# expect_probe FILE PATH VALUE: the JSON value at PATH in FILE is VALUE.
expect_probe() {
    got=$("$probe" "$1" "$2")
    [ "$got" = "$3" ] || fail "$(basename "$1"): $2 is '$got', expected '$3'"
}

# An unreadable reference: exit 2, verdict fail, a critical finding on its path.
missing_ref=$tmp/no-such-latent.pt
"$check" --no-audit --format json --reference "$missing_ref" "$good" \
    >"$tmp/ref.json" 2>"$tmp/ref.err"
code=$?
[ "$code" = 2 ] || fail "unreadable reference: exit $code, expected 2"
expect_probe "$tmp/ref.json" verdict fail
expect_probe "$tmp/ref.json" findings.0.rule format.unreadable
expect_probe "$tmp/ref.json" findings.0.severity critical
expect_probe "$tmp/ref.json" findings.0.file "$missing_ref"
grep -q "no-such-latent.pt" "$tmp/ref.err" || fail "unreadable reference: not named on stderr"

# No comparison ran, so the JUnit report lists no reference.* test case.
"$check" --no-audit --junit "$tmp/ref.xml" --reference "$missing_ref" "$good" >/dev/null 2>&1
[ -f "$tmp/ref.xml" ] || fail "unreadable reference: no JUnit report"
grep -q 'classname="reference\.' "$tmp/ref.xml" &&
    fail "unreadable reference: the JUnit report has reference.* test cases"

# A JUnit file that cannot be created: exit 2, verdict fail, the file on stderr.
bad_report=$tmp/no-such-dir/r.xml
"$check" --no-audit --format json --junit "$bad_report" "$good" \
    >"$tmp/junit.json" 2>"$tmp/junit.err"
code=$?
[ "$code" = 2 ] || fail "unwritable JUnit file: exit $code, expected 2"
expect_probe "$tmp/junit.json" verdict fail
expect_probe "$tmp/junit.json" findings.0.rule report.unwritable
expect_probe "$tmp/junit.json" findings.0.file "$bad_report"
grep -q "no-such-dir/r.xml" "$tmp/junit.err" || fail "unwritable JUnit file: not named on stderr"
# The finding says once that the JUnit report was not written.
[ "$("$probe" "$tmp/junit.json" findings.0.message | grep -o "JUnit report" | wc -l)" = 1 ] ||
    fail "unwritable JUnit file: message '$("$probe" "$tmp/junit.json" findings.0.message)'"

# The audit record of such a run stores exit code 2 and the finding.
"$check" --audit-db "$tmp/junit.db" --junit "$bad_report" "$good" >/dev/null 2>&1
"$audit" --audit-db "$tmp/junit.db" --format json history "$good" >"$tmp/junit-history.json" ||
    fail "bitcpm-audit history after an unwritable JUnit file failed"
expect_probe "$tmp/junit-history.json" 0.exit_code 2
expect_probe "$tmp/junit-history.json" 0.finding_counts.critical 1

# The same for SARIF, in the text report's verdict line.
"$check" --no-audit --sarif "$bad_report" "$good" >"$tmp/sarif.out" 2>"$tmp/sarif.err"
code=$?
[ "$code" = 2 ] || fail "unwritable SARIF file: exit $code, expected 2"
head -n 1 "$tmp/sarif.out" | grep -q "^FAIL" || fail "unwritable SARIF file: verdict line is not FAIL"

# An unreadable checkpoint beside a readable one: its own JUnit suite, the
# path in the failure message, no passing cases for rules that never ran on it.
missing=$tmp/no-such-model.bin
"$check" --audit-db "$tmp/audit.db" --junit "$tmp/r.xml" "$good" "$missing" \
    >/dev/null 2>"$tmp/unread.err"
code=$?
[ "$code" = 2 ] || fail "unreadable checkpoint: exit $code, expected 2"
grep -q "<testsuite name=\"$missing\" tests=\"1\" failures=\"1\"" "$tmp/r.xml" ||
    fail "unreadable checkpoint: no JUnit suite of its own with one failing case"
grep -q "critical: $missing: the checkpoint could not be checked" "$tmp/r.xml" ||
    fail "unreadable checkpoint: its path is not in the failure message"
grep -q "<testsuite name=\"$good\" tests=\"[0-9]*\" failures=\"0\"" "$tmp/r.xml" ||
    fail "unreadable checkpoint: its failure was filed under the readable checkpoint"

# Alone, the unreadable checkpoint still names its suite.
"$check" --no-audit --junit "$tmp/alone.xml" "$missing" >/dev/null 2>&1
grep -q "<testsuite name=\"$missing\"" "$tmp/alone.xml" ||
    fail "unreadable checkpoint alone: suite not named by its path"

# The audit record has a file row for it, so its history finds the run.
"$audit" --audit-db "$tmp/audit.db" --format json history "$missing" >"$tmp/history.json" ||
    fail "bitcpm-audit history of the unreadable path failed"
expect_probe "$tmp/history.json" "#" 1
expect_probe "$tmp/history.json" 0.exit_code 2

# --verify-crc: change one byte of a norm weight (its low mantissa byte, so the
# value stays finite and no value rule fires) in a copy of a zip checkpoint.
zip=$BCPM_FIXTURES/check/minicpm-pseudo-zip/pytorch_model.bin
norm=model.layers.0.input_layernorm.weight
cp "$zip" "$tmp/crc.bin"
"$ls_tool" --format json "$tmp/crc.bin" >"$tmp/ls.json"
n=$("$probe" "$tmp/ls.json" tensors.#)
k=0
offset=
while [ "$k" -lt "$n" ]; do
    [ "$("$probe" "$tmp/ls.json" "tensors.$k.name")" = "$norm" ] &&
        offset=$("$probe" "$tmp/ls.json" "tensors.$k.byte_offset")
    k=$((k + 1))
done
if [ -z "$offset" ]; then
    fail "--verify-crc: $norm not listed by bitcpm-ls"
else
    byte=$(od -An -tu1 -j "$offset" -N1 "$tmp/crc.bin" | tr -d ' ')
    printf "\\$(printf '%03o' $((byte ^ 1)))" |
        dd of="$tmp/crc.bin" bs=1 seek="$offset" conv=notrunc 2>/dev/null
    "$check" --no-audit --format json "$tmp/crc.bin" >"$tmp/nocrc.json" 2>/dev/null
    code=$?
    [ "$code" = 0 ] || fail "changed byte without --verify-crc: exit $code, expected 0"
    "$check" --no-audit --format json --verify-crc "$tmp/crc.bin" >"$tmp/crc.json" 2>/dev/null
    code=$?
    [ "$code" = 1 ] || fail "changed byte with --verify-crc: exit $code, expected 1"
    expect_probe "$tmp/crc.json" findings.0.rule format.crc
    expect_probe "$tmp/crc.json" findings.0.severity critical
    "$check" --no-audit --verify-crc "$zip" >/dev/null 2>&1 ||
        fail "--verify-crc on the unchanged checkpoint does not pass"
fi

# -V is --version in both commands.
"$check" -V | grep -q "^bitcpm-check " || fail "bitcpm-check -V does not print the version"
"$audit" -V | grep -q "^bitcpm-audit " || fail "bitcpm-audit -V does not print the version"

[ "$failed" = 0 ] && echo "all bitcpm-check failure checks passed"
exit "$failed"
