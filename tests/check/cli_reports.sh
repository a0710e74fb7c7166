#!/bin/sh
# bitcpm-check's verdicts and reports on the committed fixtures of
# fixtures/check, written by tools/gen_fixtures.py and described in
# expectations.json. A correct pseudo-quantized checkpoint exits 0. The
# planted NaN (a values.nonfinite error at row 3, column 5) exits 1, and 0
# with --fail-on critical. A missing path exits 2. The script also checks the
# JSON document, JUnit XML and SARIF log, colour, NO_COLOR, -q and -v, and the
# audit record with the file's digests.
# Usage: cli_reports.sh BITCPM_CHECK JSON_PROBE
set -u
check=$1
probe=$2
good=$BCPM_FIXTURES/check/minicpm-pseudo-safetensors/model.safetensors
nan=$BCPM_FIXTURES/check/defect-nan/pytorch_model.bin
nan_tensor=model.layers.0.mlp.up_proj.weight
for f in "$good" "$nan"; do
    [ -f "$f" ] || { echo "fixture $f not found; skipping"; exit 77; }
done

test_name=reports
. "$(dirname "$0")/common.sh"
export BITCPM_AUDIT_DB="$tmp/audit.db"
unset NO_COLOR

# expect_probe FILE PATH VALUE: the JSON value at PATH in FILE is VALUE.
expect_probe() {
    got=$("$probe" "$1" "$2")
    [ "$got" = "$3" ] || fail "$(basename "$1"): $2 is '$got', expected '$3'"
}

# find_finding JSON RULE TENSOR: print the index of the first such finding, or nothing.
find_finding() {
    n=$("$probe" "$1" findings.#)
    k=0
    while [ "$k" -lt "$n" ]; do
        if [ "$("$probe" "$1" "findings.$k.rule")" = "$2" ] &&
            [ "$("$probe" "$1" "findings.$k.tensor")" = "$3" ]; then
            echo "$k"
            return
        fi
        k=$((k + 1))
    done
}

# A correct pseudo-quantized checkpoint passes.
run pass --format json --junit "$tmp/pass.xml" --sarif "$tmp/pass.sarif" "$good"
expect_code pass 0
"$probe" "$tmp/pass.out" >/dev/null || fail "pass: stdout is not JSON"
expect_probe "$tmp/pass.out" keys \
    "schema_version tool verdict fail_on stage rules_digest summary files findings tensors reference"
expect_probe "$tmp/pass.out" schema_version 1
expect_probe "$tmp/pass.out" verdict pass
expect_probe "$tmp/pass.out" stage pseudo
expect_probe "$tmp/pass.out" files.# 1
expect_probe "$tmp/pass.out" files.0.family minicpm
expect_probe "$tmp/pass.out" files.0.format safetensors
expect_probe "$tmp/pass.out" findings.# 0
expect_probe "$tmp/pass.out" reference null
expect_probe "$tmp/pass.out" tensors.0.keys \
    "name file dtype shape role numel nan inf min max mean std ternary preview"
expect_probe "$tmp/pass.out" tensors.0.preview null
xmllint --noout "$tmp/pass.xml" || fail "pass: JUnit XML is not well-formed"
grep -q '<failure' "$tmp/pass.xml" && fail "pass: JUnit XML has a failure"
expect_probe "$tmp/pass.sarif" version 2.1.0
expect_probe "$tmp/pass.sarif" runs.0.results.# 0

# The planted NaN fails with a values.nonfinite error at its position.
run nan --format json --junit "$tmp/nan.xml" --sarif "$tmp/nan.sarif" "$nan"
expect_code nan 1
expect_probe "$tmp/nan.out" verdict fail
k=$(find_finding "$tmp/nan.out" values.nonfinite "$nan_tensor")
if [ -z "$k" ]; then
    fail "nan: no values.nonfinite finding on $nan_tensor"
else
    expect_probe "$tmp/nan.out" "findings.$k.keys" \
        "rule severity file tensor message row column offset value"
    expect_probe "$tmp/nan.out" "findings.$k.severity" error
    expect_probe "$tmp/nan.out" "findings.$k.row" 3
    expect_probe "$tmp/nan.out" "findings.$k.column" 5
    # NaN has no JSON number, so the value is null.
    expect_probe "$tmp/nan.out" "findings.$k.value" null
fi
nfindings=$("$probe" "$tmp/nan.out" findings.#)
xmllint --noout "$tmp/nan.xml" || fail "nan: JUnit XML is not well-formed"
grep -q '<failure' "$tmp/nan.xml" || fail "nan: JUnit XML has no failure"
grep -q 'classname="values.nonfinite"' "$tmp/nan.xml" || fail "nan: no values.nonfinite case"
expect_probe "$tmp/nan.sarif" version 2.1.0
expect_probe "$tmp/nan.sarif" runs.0.results.# "$nfindings"
expect_probe "$tmp/nan.sarif" '$schema' https://json.schemastore.org/sarif-2.1.0.json
expect_probe "$tmp/nan.sarif" runs.0.tool.driver.name bitcpm-check
if [ -n "$k" ]; then
    expect_probe "$tmp/nan.sarif" "runs.0.results.$k.ruleId" values.nonfinite
    expect_probe "$tmp/nan.sarif" "runs.0.results.$k.level" error
    expect_probe "$tmp/nan.sarif" "runs.0.results.$k.locations.0.logicalLocations.0.name" \
        "$nan_tensor"
fi

# --fail-on critical: the same error-level finding no longer fails the run.
run critical --fail-on critical "$nan"
expect_code critical 0
grep -q '^PASS' "$tmp/critical.out" || fail "critical: verdict is not PASS"
grep -q 'values.nonfinite' "$tmp/critical.out" || fail "critical: finding not listed"

# Asserted latent, the correct pseudo-quantized checkpoint fails with stage.mismatch.
run latent --stage latent --format json "$good"
expect_code latent 1
[ -n "$(find_finding "$tmp/latent.out" stage.mismatch "$("$probe" "$tmp/latent.out" \
    findings.0.tensor)")" ] || fail "latent: no stage.mismatch finding"

# Two paths: one report, the worse verdict. A missing path makes it exit 2, never a pass.
run both --format json "$good" "$nan"
expect_code both 1
expect_probe "$tmp/both.out" files.# 2
run missing --format json "$good" "$tmp/no-such.bin"
expect_code missing 2
expect_probe "$tmp/missing.out" verdict fail
grep -q "no-such.bin" "$tmp/missing.err" || fail "missing: stderr does not name the file"

# Text report: no escape bytes when NO_COLOR is set, with --color never, or
# when stdout is not a terminal; --color always colours.
esc=$(printf '\033')
run auto "$nan"
grep -q "$esc" "$tmp/auto.out" && fail "auto on a pipe: output has escape bytes"
NO_COLOR=1 "$check" "$nan" >"$tmp/nocolor.out" 2>&1
grep -q "$esc" "$tmp/nocolor.out" && fail "NO_COLOR: output has escape bytes"
"$check" --color never "$nan" >"$tmp/never.out" 2>&1
grep -q "$esc" "$tmp/never.out" && fail "--color never: output has escape bytes"
"$check" --color always "$nan" >"$tmp/always.out" 2>&1
grep -q "$esc" "$tmp/always.out" || fail "--color always: no escape bytes"
grep -q '^FAIL ' "$tmp/auto.out" || fail "text: first line is not the verdict"
grep -q "values.nonfinite  *error  *1  *$nan_tensor" "$tmp/auto.out" ||
    fail "text: the rule table lacks the values.nonfinite row"

# -q: the verdict line only. -v: per-tensor statistics.
run quiet -q "$nan"
expect_code quiet 1
[ "$(wc -l <"$tmp/quiet.out")" -eq 1 ] || fail "-q: $(wc -l <"$tmp/quiet.out") lines"
grep -q '^FAIL .*defect-nan' "$tmp/quiet.out" || fail "-q: not the verdict line"
run verbose -v "$nan"
grep -q '^Tensors' "$tmp/verbose.out" || fail "-v: no per-tensor statistics"
grep -q 'row 3, column 5' "$tmp/verbose.out" || fail "-v: finding position not shown"

# Audit: each run adds one record with its exit code; --sha256 stores the
# same digests as sha256sum and xxh128sum of the file.
if command -v sqlite3 >/dev/null; then
    before=$(sqlite3 "$BITCPM_AUDIT_DB" "SELECT count(*) FROM runs")
    run sha --sha256 -q "$good"
    expect_code sha 0
    after=$(sqlite3 "$BITCPM_AUDIT_DB" "SELECT count(*) FROM runs")
    [ "$after" = $((before + 1)) ] || fail "audit: $before runs before, $after after"
    last="run_id = (SELECT max(id) FROM runs)"
    if command -v sha256sum >/dev/null; then
        want=$(sha256sum "$good" | cut -d' ' -f1)
        got=$(sqlite3 "$BITCPM_AUDIT_DB" "SELECT sha256 FROM files WHERE $last")
        [ "$got" = "$want" ] || fail "audit: sha256 '$got', expected '$want'"
    fi
    if command -v xxh128sum >/dev/null; then
        want=$(xxh128sum "$good" | cut -d' ' -f1)
        got=$(sqlite3 "$BITCPM_AUDIT_DB" "SELECT xxh3_128 FROM files WHERE $last")
        [ "$got" = "$want" ] || fail "audit: xxh3_128 '$got', expected '$want'"
    fi
    code=$(sqlite3 "$BITCPM_AUDIT_DB" \
        "SELECT exit_code FROM runs WHERE command_line LIKE '%--fail-on critical%'")
    [ "$code" = 0 ] || fail "audit: the --fail-on critical run recorded exit '$code', expected 0"
    code=$(sqlite3 "$BITCPM_AUDIT_DB" \
        "SELECT exit_code FROM runs WHERE command_line LIKE '% -q %defect-nan%'")
    [ "$code" = 1 ] || fail "audit: the -q run recorded exit '$code', expected 1"
else
    echo "sqlite3 not found; audit checks skipped"
fi

# Findings at an element carry its byte offset in the file: the planted NaN
# (BF16 0x7fc0, as torch writes it) and the planted non-ternary value.
"$check" --no-audit --format json "$nan" >"$tmp/offset-nan.json" 2>/dev/null
offset=$("$probe" "$tmp/offset-nan.json" findings.0.offset)
[ "$("$probe" "$tmp/offset-nan.json" findings.0.rule)" = values.nonfinite ] &&
    [ "$(od -An -tx2 -j "$offset" -N2 "$nan" | tr -d ' ')" = 7fc0 ] ||
    fail "NaN finding: byte offset $offset does not hold the NaN"
grep -q '"message": ".* the first is NaN at row 3, column 5"' "$tmp/offset-nan.json" ||
    fail "NaN finding: the message does not name the NaN as NaN"
nonternary=$BCPM_FIXTURES/check/defect-nonternary/pytorch_model.bin
"$check" --no-audit --format json "$nonternary" >"$tmp/offset-value.json" 2>/dev/null
k=0
while [ "$("$probe" "$tmp/offset-value.json" "findings.$k.rule")" != ternary.values ]; do
    k=$((k + 1))
    [ "$k" -lt 50 ] || break
done
# expectations.json plants 0.00799560546875 there: 2^-7 * (1 + 3/128), BF16 bits 0x3c03.
offset=$("$probe" "$tmp/offset-value.json" "findings.$k.offset")
[ "$(od -An -tx2 -j "$offset" -N2 "$nonternary" | tr -d ' ')" = 3c03 ] ||
    fail "ternary.values finding: byte offset $offset does not hold the planted value"

[ "$failed" = 0 ] && echo "all bitcpm-check report checks passed"
exit "$failed"
