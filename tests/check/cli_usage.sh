#!/bin/sh
# bitcpm-check's command line without a checkpoint to check: --help and
# --version on stdout with exit 0, misuse with one reason and a pointer to
# --help on stderr and exit 2, a missing file and an unusable audit database
# with exit 2 and a message naming the path.
# Usage: cli_usage.sh BITCPM_CHECK
set -u
check=$1

test_name=usage
. "$(dirname "$0")/common.sh"
export BITCPM_AUDIT_DB="$tmp/audit.db"

expect_in() {
    grep -q -- "$3" "$tmp/$1.$2" || fail "$1: $2 lacks '$3': $(cat "$tmp/$1.$2")"
}

# --help: stdout, exit 0, every option of the table listed.
run help --help
expect_code help 0
for option in --rules --config --stage --fail-on --format --junit --sarif --reference \
    --compute --group-size --eps --threads --audit-db --no-audit --sha256 --color \
    --quiet --verbose --version --help; do
    expect_in help out "$option"
done
[ -s "$tmp/help.err" ] && fail "help: stderr not empty"

run version --version
expect_code version 0
expect_in version out '^bitcpm-check [0-9]'

# Misuse: exit 2, one reason line then the --help pointer, nothing on stdout.
check_usage() {
    name=$1
    reason=$2
    shift 2
    run "$name" "$@"
    expect_code "$name" 2
    expect_in "$name" err "$reason"
    expect_in "$name" err "Try 'bitcpm-check --help'"
    [ "$(wc -l <"$tmp/$name.err")" -eq 2 ] || fail "$name: stderr is not two lines"
    [ -s "$tmp/$name.out" ] && fail "$name: stdout not empty"
}
check_usage no-path "missing PATH"
check_usage unknown "unknown option '--bogus'" x --bogus
check_usage no-value "option '--rules' requires a value" x --rules
check_usage flag-value "option '--quiet' takes no value" x --quiet=1
check_usage bad-stage "invalid --stage 'ternary'" x --stage ternary
check_usage bad-fail-on "invalid --fail-on 'fatal'" x --fail-on fatal
check_usage bad-format "invalid --format 'xml'" x --format xml
check_usage bad-compute "invalid --compute 'f16'" x --compute f16
check_usage bad-color "invalid --color 'yes'" x --color yes
check_usage zero-group "invalid --group-size '0'" x --group-size 0
check_usage word-group "invalid --group-size '64k'" x --group-size 64k
check_usage neg-eps "invalid --eps '-1e-5'" x --eps -1e-5
check_usage nan-eps "invalid --eps 'nan'" x --eps nan
check_usage zero-threads "invalid --threads '0'" x --threads 0

# A path that does not exist: exit 2, the message names it, and it is never
# reported as a pass, in text or in JSON.
missing="$tmp/no-such-model.bin"
run missing --no-audit "$missing"
expect_code missing 2
expect_in missing err "^bitcpm-check: .*no-such-model.bin"
grep -q '^PASS' "$tmp/missing.out" && fail "missing: reported PASS"

run missing-json --no-audit --format json "$missing"
expect_code missing-json 2
expect_in missing-json out '"verdict": "fail"'
expect_in missing-json out '"rule": "format.unreadable"'

# An audit database that cannot be created (its folder is a regular file):
# exit 2 before any check, naming the database.
: >"$tmp/not-a-folder"
run bad-audit --audit-db "$tmp/not-a-folder/audit.db" "$missing"
expect_code bad-audit 2
expect_in bad-audit err "not-a-folder"

# --no-audit writes no database.
run no-audit --no-audit "$missing"
[ -e "$BITCPM_AUDIT_DB" ] && fail "no-audit: $BITCPM_AUDIT_DB was created"

# A full stdout is a failure to run, not a silent success.
if [ -w /dev/full ]; then
    "$check" --help >/dev/full 2>"$tmp/full.err"
    code=$?
    [ "$code" = 2 ] || fail "help to /dev/full: exit $code, expected 2"
    grep -q "standard output" "$tmp/full.err" || fail "help to /dev/full: no message"
fi

[ "$failed" = 0 ] && echo "all bitcpm-check usage checks passed"
exit "$failed"
