#!/bin/sh
# bitcpm-check's export preview of a latent checkpoint (no --reference). On
# fixtures/check/minicpm-latent-zip the per-tensor code counts and scale range
# equal what PyTorch computes (minicpm-latent-zip.preview.json, written by
# tools/gen_preview_expected.py), and the text report has an "Export preview"
# section. On fixtures/check/latent-zero-o-proj, whose o_proj tensors hold
# only zeros, every o_proj group sits at the eps floor and each o_proj tensor,
# and no other, gets a quant.eps-floor finding. A pseudo-quantized checkpoint
# gets no preview.
# Usage: cli_preview.sh BITCPM_CHECK JSON_PROBE PREVIEW_COMPARE
set -u
check=$1
probe=$2
compare=$3
latent=$BCPM_FIXTURES/check/minicpm-latent-zip
expected=$BCPM_FIXTURES/check/minicpm-latent-zip.preview.json
zero=$BCPM_FIXTURES/check/latent-zero-o-proj
pseudo=$BCPM_FIXTURES/check/minicpm-pseudo-zip
for f in "$latent" "$expected" "$zero" "$pseudo"; do
    [ -e "$f" ] || { echo "fixture $f not found; skipping"; exit 77; }
done

test_name=preview
. "$(dirname "$0")/common.sh"

"$check" --no-audit --format json "$latent" >"$tmp/latent.json" 2>"$tmp/latent.err"
code=$?
[ "$code" = 0 ] || fail "latent: exit $code, expected 0: $(cat "$tmp/latent.err")"
"$compare" "$tmp/latent.json" "$expected" || fail "latent: the preview differs from PyTorch"

"$check" --no-audit --color never "$latent" >"$tmp/latent.txt" 2>/dev/null
grep -q "^Export preview" "$tmp/latent.txt" || fail "latent: no Export preview section"
grep -q "zero fraction 0\.[0-9]*" "$tmp/latent.txt" || fail "latent: no zero fraction in the text"

# The all-zero o_proj tensors: every group at the eps floor, one finding each.
"$check" --no-audit --format json "$zero" >"$tmp/zero.json" 2>"$tmp/zero.err"
n=$("$probe" "$tmp/zero.json" tensors.#)
k=0
while [ "$k" -lt "$n" ]; do
    name=$("$probe" "$tmp/zero.json" "tensors.$k.name")
    case $name in
    *o_proj*)
        floor=$("$probe" "$tmp/zero.json" "tensors.$k.preview.eps_floor_groups")
        groups=$("$probe" "$tmp/zero.json" "tensors.$k.preview.groups")
        [ "$floor" = "$groups" ] || fail "$name: $floor of $groups groups at the eps floor"
        ;;
    esac
    k=$((k + 1))
done
n=$("$probe" "$tmp/zero.json" findings.#)
k=0
floor_findings=0
while [ "$k" -lt "$n" ]; do
    if [ "$("$probe" "$tmp/zero.json" "findings.$k.rule")" = quant.eps-floor ]; then
        floor_findings=$((floor_findings + 1))
        case $("$probe" "$tmp/zero.json" "findings.$k.tensor") in
        *o_proj*) ;;
        *) fail "quant.eps-floor on $("$probe" "$tmp/zero.json" "findings.$k.tensor")" ;;
        esac
    fi
    k=$((k + 1))
done
o_proj=$(grep -o '"name": "[^"]*o_proj[^"]*"' "$tmp/zero.json" | sort -u | wc -l)
[ "$floor_findings" = "$o_proj" ] ||
    fail "latent-zero-o-proj: $floor_findings quant.eps-floor findings, expected $o_proj"

# No preview for a pseudo-quantized checkpoint.
"$check" --no-audit --format json "$pseudo" >"$tmp/pseudo.json" 2>/dev/null
grep -q '"preview": {' "$tmp/pseudo.json" && fail "pseudo: has a preview"

[ "$failed" = 0 ] && echo "all export preview checks passed"
exit "$failed"
