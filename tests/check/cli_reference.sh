#!/bin/sh
# bitcpm-check --reference on the PyTorch-written pairs in fixtures/quant/pairs
# (tools/gen_quant_fixtures.py): the correct export passes with every ternary
# tensor compared and matching, and each planted defect listed in defects.txt
# is reported with its rule, tensor, row and column and exit 1.
# Usage: cli_reference.sh BITCPM_CHECK JSON_PROBE
set -u
check=$1
probe=$2
pairs=$BCPM_FIXTURES/quant/pairs
[ -f "$pairs/defects.txt" ] || { echo "fixtures $pairs not found; skipping"; exit 77; }

test_name=reference
. "$(dirname "$0")/common.sh"

# The correct pair: exit 0, one comparison per ternary tensor, all elements match.
"$check" --no-audit --format json "$pairs/pseudo.pt" --reference "$pairs/latent.pt" \
    >"$tmp/good.json" 2>"$tmp/good.err"
code=$?
[ "$code" = 0 ] || fail "correct pair: exit $code, expected 0: $(cat "$tmp/good.err")"
nternary=$(wc -l <"$pairs/ternary.txt")
[ "$("$probe" "$tmp/good.json" reference.tensors.#)" = "$nternary" ] ||
    fail "correct pair: $("$probe" "$tmp/good.json" reference.tensors.#) compared, expected $nternary"
i=0
while [ "$i" -lt "$nternary" ]; do
    elements=$("$probe" "$tmp/good.json" "reference.tensors.$i.elements")
    matches=$("$probe" "$tmp/good.json" "reference.tensors.$i.matches")
    [ "$elements" = "$matches" ] || fail "correct pair: tensor $i matches $matches of $elements"
    i=$((i + 1))
done
[ "$("$probe" "$tmp/good.json" reference.path)" = "$pairs/latent.pt" ] ||
    fail "correct pair: reference.path is not the latent file"

# has_finding JSON RULE TENSOR ROW COLUMN: a finding with these fields exists
# (ROW or COLUMN -1 leaves that field unchecked).
has_finding() {
    n=$("$probe" "$1" findings.#)
    k=0
    while [ "$k" -lt "$n" ]; do
        if [ "$("$probe" "$1" "findings.$k.rule")" = "$2" ] &&
            [ "$("$probe" "$1" "findings.$k.tensor")" = "$3" ] &&
            { [ "$4" = -1 ] || [ "$("$probe" "$1" "findings.$k.row")" = "$4" ]; } &&
            { [ "$5" = -1 ] || [ "$("$probe" "$1" "findings.$k.column")" = "$5" ]; }; then
            return 0
        fi
        k=$((k + 1))
    done
    return 1
}

# Each planted defect: exit 1 and the expected finding.
while read -r pseudo latent rule tensor row column; do
    out="$tmp/$pseudo-$latent.json"
    "$check" --no-audit --format json "$pairs/$pseudo" --reference "$pairs/$latent" \
        >"$out" 2>"$tmp/err"
    code=$?
    [ "$code" = 1 ] || fail "$pseudo vs $latent: exit $code, expected 1: $(cat "$tmp/err")"
    has_finding "$out" "$rule" "$tensor" "$row" "$column" ||
        fail "$pseudo vs $latent: no $rule finding on $tensor at row $row, column $column"
done <"$pairs/defects.txt"

# The tensor quantized twice is named as such in the per-tensor numbers.
"$check" --no-audit --format json "$pairs/twice.pt" --reference "$pairs/latent.pt" \
    >"$tmp/twice.json" 2>/dev/null
twice=$(grep -c '"quantized_twice": true' "$tmp/twice.json")
[ "$twice" = 1 ] || fail "twice.pt: $twice tensors flagged as quantized twice, expected 1"

# A reference that cannot be read stops the run with exit 2.
"$check" --no-audit "$pairs/pseudo.pt" --reference "$tmp/no-such-latent.pt" \
    >/dev/null 2>"$tmp/missing.err"
code=$?
[ "$code" = 2 ] || fail "missing reference: exit $code, expected 2"
grep -q "no-such-latent.pt" "$tmp/missing.err" || fail "missing reference: file not named"

# reference.boundary under --compute auto: a tensor that matches one policy
# bit for bit gets no finding of its own; such tensors are folded into one
# finding without a tensor, whose element count is the sum of the per-tensor
# policy_disagreements. Tensors with boundary codes keep their own finding.
boundary_findings() {
    n=$("$probe" "$1" findings.#)
    k=0
    while [ "$k" -lt "$n" ]; do
        [ "$("$probe" "$1" "findings.$k.rule")" = reference.boundary ] &&
            echo "$("$probe" "$1" "findings.$k.tensor")|$("$probe" "$1" "findings.$k.message")"
        k=$((k + 1))
    done
}
boundary_findings "$tmp/good.json" >"$tmp/boundary.txt"
disagree=0
with_boundary=0
i=0
while [ "$i" -lt "$nternary" ]; do
    disagree=$((disagree + $("$probe" "$tmp/good.json" "reference.tensors.$i.policy_disagreements")))
    [ "$("$probe" "$tmp/good.json" "reference.tensors.$i.boundary")" = 0 ] ||
        with_boundary=$((with_boundary + 1))
    i=$((i + 1))
done
per_tensor=$(grep -vc '^null|' "$tmp/boundary.txt")
[ "$per_tensor" = "$with_boundary" ] ||
    fail "auto: $per_tensor per-tensor boundary findings, expected $with_boundary"
if [ "$disagree" -gt 0 ]; then
    grep -q "^null|.* disagree on $disagree elements*, all at rounding boundaries" \
        "$tmp/boundary.txt" || fail "auto: no folded boundary finding for $disagree elements"
fi

# Under an explicit policy the per-tensor findings stay, with singular nouns for 1.
"$check" --no-audit --compute bf16 --format json "$pairs/pseudo.pt" \
    --reference "$pairs/latent.pt" >"$tmp/bf16.json" 2>/dev/null
boundary_findings "$tmp/bf16.json" >"$tmp/bf16.txt"
grep -q '[^0-9]1 \(codes\|scales\|elements\)' "$tmp/bf16.txt" &&
    fail "bf16: a boundary message says '1 codes', '1 scales' or '1 elements'"
grep -q ' 0 codes and 0 scales' "$tmp/bf16.txt" &&
    fail "bf16: a boundary finding for a tensor without boundary codes or scales"

# The folded finding counts only tensors without code or scale errors. Each
# planted defect in flip.pt, scale.pt and twice.pt sits in one tensor, so
# 13 of the 14 tensors count. latent_nan.pt holds latent weights, not codes,
# so every tensor has reference.codes errors, none counts and there is no
# folded finding.
for defect in flip scale twice; do
    "$check" --no-audit --format json "$pairs/$defect.pt" --reference "$pairs/latent.pt" \
        >"$tmp/$defect.json" 2>/dev/null
    boundary_findings "$tmp/$defect.json" >"$tmp/$defect-boundary.txt"
    grep -q "^null|$((nternary - 1)) tensors match the float32 policy and 0 the bf16" \
        "$tmp/$defect-boundary.txt" ||
        fail "$defect.pt: folded finding is '$(cat "$tmp/$defect-boundary.txt")', expected $((nternary - 1)) tensors"
done
"$check" --no-audit --format json "$pairs/latent_nan.pt" --reference "$pairs/latent.pt" \
    >"$tmp/nan.json" 2>/dev/null
boundary_findings "$tmp/nan.json" >"$tmp/nan-boundary.txt"
grep -q '^null|' "$tmp/nan-boundary.txt" &&
    fail "latent_nan.pt: folded finding '$(cat "$tmp/nan-boundary.txt")', expected none"

# Under an explicit policy there is no folded finding. pseudo.pt was exported
# in float32: with --compute float32 no tensor has a boundary code, so there
# is no reference.boundary finding at all; with --compute bf16 every element
# where the policies disagree is a boundary code, one finding per such tensor.
"$check" --no-audit --compute float32 --format json "$pairs/pseudo.pt" \
    --reference "$pairs/latent.pt" >"$tmp/float32.json" 2>/dev/null
boundary_findings "$tmp/float32.json" >"$tmp/float32.txt"
[ -s "$tmp/float32.txt" ] && fail "float32: boundary findings '$(cat "$tmp/float32.txt")'"
grep -q '^null|' "$tmp/bf16.txt" && fail "bf16: a folded boundary finding"
bf16_tensors=0
bf16_codes=0
i=0
while [ "$i" -lt "$nternary" ]; do
    b=$("$probe" "$tmp/bf16.json" "reference.tensors.$i.boundary")
    [ "$b" = "$("$probe" "$tmp/good.json" "reference.tensors.$i.policy_disagreements")" ] ||
        fail "bf16: tensor $i has $b boundary codes, expected its policy disagreements"
    [ "$b" = 0 ] || bf16_tensors=$((bf16_tensors + 1))
    bf16_codes=$((bf16_codes + b))
    i=$((i + 1))
done
[ "$bf16_codes" = "$disagree" ] || fail "bf16: $bf16_codes boundary codes, expected $disagree"
[ "$(grep -c . "$tmp/bf16.txt")" = "$bf16_tensors" ] ||
    fail "bf16: $(grep -c . "$tmp/bf16.txt") boundary findings, expected $bf16_tensors"

# The terminal summary agrees the noun with the count: flip.pt has 1 wrong code.
"$check" --no-audit "$pairs/flip.pt" --reference "$pairs/latent.pt" >"$tmp/flip.txt" 2>&1
grep -q " 1 mismatching code, 0 groups with scale errors" "$tmp/flip.txt" ||
    fail "flip.pt: summary '$(grep against "$tmp/flip.txt")'"

# JUnit: reference.* test cases only where a comparison ran.
"$check" --no-audit --junit "$tmp/plain.xml" "$pairs/pseudo.pt" >/dev/null 2>&1
grep -q 'classname="reference\.' "$tmp/plain.xml" &&
    fail "JUnit without --reference: reference.* test cases"
"$check" --no-audit --junit "$tmp/compared.xml" "$pairs/pseudo.pt" \
    --reference "$pairs/latent.pt" >/dev/null 2>&1
grep -q 'classname="reference\.codes" name="all"' "$tmp/compared.xml" ||
    fail "JUnit with --reference: no passing reference.codes test case"

# The per-tensor numbers add up: matches + boundary + mismatches + not_compared
# is the element count, and the confusion matrix contains the elements whose
# stored value is a code. Every JSON written above takes part.
for json in "$tmp"/*.json; do
    n=$("$probe" "$json" reference.tensors.#)
    i=0
    while [ "$i" -lt "$n" ]; do
        t="reference.tensors.$i"
        # One probe per tensor (the suite also runs under sanitizers, where each start is slow).
        # shellcheck disable=SC2046
        set -- $("$probe" "$json" "$t.elements" "$t.not_compared" "$t.matches" "$t.boundary" \
            "$t.mismatches" "$t.not_a_code" "$t.file" "$t.confusion.0.0" "$t.confusion.0.1" \
            "$t.confusion.0.2" "$t.confusion.1.0" "$t.confusion.1.1" "$t.confusion.1.2" \
            "$t.confusion.2.0" "$t.confusion.2.1" "$t.confusion.2.2")
        [ $(($3 + $4 + $5 + $2)) = "$1" ] ||
            fail "$json: $t: counts add up to $(($3 + $4 + $5 + $2)) of $1"
        [ $(($8 + $9 + ${10} + ${11} + ${12} + ${13} + ${14} + ${15} + ${16})) = $(($1 - $2 - $6)) ] ||
            fail "$json: $t: confusion cells do not sum to elements - not_compared - not_a_code"
        [ "$7" != null ] || fail "$json: $t: no file"
        i=$((i + 1))
    done
done

# The latent NaN leaves exactly one group of the o_proj tensor out, and the
# verbose text names its position once.
nan_tensor=model.layers.1.self_attn.o_proj.weight
"$check" --no-audit --format json "$pairs/pseudo.pt" --reference "$pairs/latent_nan.pt" \
    >"$tmp/latent-nan.json" 2>/dev/null
i=0
while [ "$("$probe" "$tmp/latent-nan.json" "reference.tensors.$i.name")" != "$nan_tensor" ]; do
    i=$((i + 1))
    [ "$i" -lt "$nternary" ] || { fail "latent_nan.pt: $nan_tensor not compared"; break; }
done
t="reference.tensors.$i"
group=$(($("$probe" "$tmp/latent-nan.json" "$t.elements") / $("$probe" "$tmp/latent-nan.json" "$t.groups")))
[ "$("$probe" "$tmp/latent-nan.json" "$t.not_compared")" = "$group" ] ||
    fail "latent_nan.pt: not_compared $("$probe" "$tmp/latent-nan.json" "$t.not_compared"), expected one group of $group"
[ "$("$probe" "$tmp/latent-nan.json" "$t.file")" = "$pairs/pseudo.pt" ] ||
    fail "latent_nan.pt: file is not the checked path"
"$check" --no-audit -v "$pairs/pseudo.pt" --reference "$pairs/latent_nan.pt" \
    >"$tmp/latent-nan.txt" 2>&1
grep -q "row 9, column 33; that group was not compared (byte offset [0-9]*)$" "$tmp/latent-nan.txt" ||
    fail "latent_nan.pt -v: position repeated or missing: $(grep 'not compared' "$tmp/latent-nan.txt")"
grep -q "^  $group elements* not compared: latent groups with NaN or Inf" "$tmp/latent-nan.txt" ||
    fail "latent_nan.pt -v: no 'not compared' total"

# The finding's byte offset points at the NaN in the latent file (BF16 0x7fc0,
# the NaN torch writes) and the changed norm element at its stored 2.0 (0x4000).
nan_offset=$("$probe" "$tmp/latent-nan.json" findings.0.offset)
[ "$(od -An -tx2 -j "$nan_offset" -N2 "$pairs/latent_nan.pt" | tr -d ' ')" = 7fc0 ] ||
    fail "latent_nan.pt: byte offset $nan_offset does not hold the NaN"
"$check" --no-audit --format json "$pairs/changed.pt" --reference "$pairs/latent.pt" \
    >"$tmp/changed-offset.json" 2>/dev/null
k=0
while [ "$("$probe" "$tmp/changed-offset.json" "findings.$k.rule")" != reference.changed ]; do
    k=$((k + 1))
    [ "$k" -lt 50 ] || { fail "changed.pt: no reference.changed finding"; break; }
done
changed_offset=$("$probe" "$tmp/changed-offset.json" "findings.$k.offset")
[ "$(od -An -tx2 -j "$changed_offset" -N2 "$pairs/changed.pt" | tr -d ' ')" = 4000 ] ||
    fail "changed.pt: byte offset $changed_offset does not hold the changed element"

# An export given as the reference: every scale is off by the nonzero fraction
# the other way round from quantizing twice, and the message names that case.
"$check" --no-audit --format json "$pairs/pseudo.pt" --reference "$pairs/pseudo.pt" \
    >"$tmp/self.out" 2>/dev/null
code=$?
[ "$code" = 1 ] || fail "export as reference: exit $code, expected 1"
grep -q "looks pseudo-quantized already (was an export given as --reference?)" "$tmp/self.out" ||
    fail "export as reference: no message that the latent side looks pseudo-quantized"

# A group size that does not divide the columns is a finding per tensor, not a failed run.
"$check" --no-audit --format json --group-size 3 "$pairs/pseudo.pt" \
    --reference "$pairs/latent.pt" >"$tmp/g3.out" 2>"$tmp/g3.err"
code=$?
[ "$code" = 1 ] || fail "--group-size 3: exit $code, expected 1: $(cat "$tmp/g3.err")"
[ "$(grep -c 'the group size 3 does not divide the' "$tmp/g3.out")" = "$nternary" ] ||
    fail "--group-size 3: expected one reference.codes finding per ternary tensor"

# A latent ternary tensor in float64 (a dtype the comparison does not take)
# stops the comparison: exit 2, and a critical finding names the tensor.
"$check" --no-audit --format json "$pairs/pseudo.pt" --reference "$pairs/latent_f64.pt" \
    >"$tmp/f64.json" 2>"$tmp/f64.err"
code=$?
[ "$code" = 2 ] || fail "float64 latent: exit $code, expected 2"
[ "$("$probe" "$tmp/f64.json" verdict)" = fail ] || fail "float64 latent: verdict is not fail"
has_finding "$tmp/f64.json" format.unreadable model.layers.0.self_attn.q_proj.weight -1 -1 ||
    fail "float64 latent: no format.unreadable finding on the q_proj tensor"
grep -q "must be BF16, F16 or F32, found F64" "$tmp/f64.json" ||
    fail "float64 latent: the finding does not say which dtype was found"

# A tensor missing from the export fails that export's own JUnit suite; the
# latent file gets no suite of its own.
"$check" --no-audit --junit "$tmp/missing.xml" "$pairs/missing.pt" \
    --reference "$pairs/latent.pt" >/dev/null 2>&1
[ "$(grep -c '<testsuite ' "$tmp/missing.xml")" = 1 ] ||
    fail "missing.pt JUnit: $(grep -c '<testsuite ' "$tmp/missing.xml") suites, expected 1"
grep -q 'classname="reference\.missing" name="all"' "$tmp/missing.xml" &&
    fail "missing.pt JUnit: reference.missing passes"
grep -A1 'classname="reference\.missing"' "$tmp/missing.xml" | grep -q '<failure' ||
    fail "missing.pt JUnit: no failing reference.missing case"

# The two arguments swapped: the checked file contains latent weights, and one
# finding, first among the comparison's findings, asks whether they were swapped.
"$check" --no-audit "$pairs/latent.pt" --reference "$pairs/pseudo.pt" >"$tmp/swapped.txt" 2>&1
grep -A1 '^  reference.codes (' "$tmp/swapped.txt" | grep -q "were the checkpoint and --reference swapped?" ||
    fail "swapped arguments: no note that they look swapped"
"$check" --no-audit "$pairs/flip.pt" --reference "$pairs/latent.pt" >"$tmp/not-swapped.txt" 2>&1
grep -q "swapped?" "$tmp/not-swapped.txt" && fail "flip.pt: a swapped-arguments note on an export"

# Two checkpoints against one reference: -v names the checkpoint of each tensor line.
"$check" --no-audit -v "$pairs/scale.pt" "$pairs/flip.pt" --reference "$pairs/latent.pt" \
    >"$tmp/two.txt" 2>&1
for f in scale.pt flip.pt; do
    [ "$(grep -c "^  $pairs/$f: model\..*: policy " "$tmp/two.txt")" = "$nternary" ] ||
        fail "two checkpoints -v: $f does not name its $nternary compared tensors"
done

# One reference per run: a second --reference is a usage error.
"$check" --no-audit "$pairs/pseudo.pt" --reference "$pairs/latent.pt" \
    --reference "$pairs/latent_nan.pt" >/dev/null 2>"$tmp/twice-ref.err"
code=$?
[ "$code" = 2 ] || fail "--reference twice: exit $code, expected 2"
grep -q -- "--reference given twice" "$tmp/twice-ref.err" || fail "--reference twice: no message"

[ "$failed" = 0 ] && echo "all bitcpm-check --reference checks passed"
exit "$failed"
