#!/bin/sh
# bitcpm-audit command line: help, version, misuse, exit codes and messages.
# Usage: cli.sh AUDIT_DRIVER BITCPM_AUDIT
set -u
driver=$1
audit=$2
command -v sqlite3 >/dev/null || { echo "sqlite3 command not found; skipping"; exit 77; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/bcpm-audit-cli.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
db=$tmp/audit.db
fail() { echo "FAIL: $*"; exit 1; }

# expect CODE COMMAND...: run it, keep stdout and stderr, check the exit code.
expect() {
    want=$1
    shift
    "$@" >"$tmp/stdout" 2>"$tmp/stderr"
    got=$?
    [ "$got" = "$want" ] || fail "'$*' exited $got, expected $want: $(cat "$tmp/stderr")"
}

expect 0 "$audit" --help
grep -q '^Usage: bitcpm-audit' "$tmp/stdout" || fail "--help printed no usage on stdout"
[ ! -s "$tmp/stderr" ] || fail "--help wrote to stderr"
expect 0 "$audit" -h
expect 0 "$audit" --version
grep -q '^bitcpm-audit ' "$tmp/stdout" || fail "--version"

expect 2 "$audit" --bogus
[ ! -s "$tmp/stdout" ] || fail "misuse wrote to stdout"
[ "$(head -n 1 "$tmp/stderr")" = "bitcpm-audit: unknown option '--bogus'" ] || fail "$(cat "$tmp/stderr")"
grep -q "Try 'bitcpm-audit --help'" "$tmp/stderr" || fail "no help hint"
expect 2 "$audit" --audit-db "$db"
expect 2 "$audit" --audit-db "$db" frobnicate
expect 2 "$audit" --audit-db "$db" show abc
expect 2 "$audit" --audit-db "$db" show 1 --model x
expect 2 "$audit" --audit-db "$db" history --format csv
expect 2 "$audit" --audit-db "$db" --audit-db

# A missing database is an error, and the query does not create it.
expect 2 "$audit" --audit-db "$db" history
grep -q 'no audit database' "$tmp/stderr" || fail "missing database: $(cat "$tmp/stderr")"
[ ! -e "$db" ] || fail "a query created the database"

"$driver" --db "$db" --tensors 4 --findings 3 >/dev/null || fail "driver run 1"
"$driver" --db "$db" --tensors 4 --findings 5 --exit-code 1 >/dev/null || fail "driver run 2"

expect 2 "$audit" --audit-db "$db" show 99
grep -q 'no run with id 99' "$tmp/stderr" || fail "unknown run: $(cat "$tmp/stderr")"

# BITCPM_AUDIT_DB names the database when --audit-db is absent.
BITCPM_AUDIT_DB=$db expect 0 "$audit" history
[ "$(wc -l <"$tmp/stdout")" = 3 ] || fail "history: header and 2 runs expected"

# compare: identical findings exit 0; run 2 adds findings 3 and 4 to run 1's three.
expect 0 "$audit" --audit-db "$db" compare 1 1
expect 1 "$audit" --audit-db "$db" compare 1 2
[ "$(head -n 1 "$tmp/stdout")" = "run 1 -> run 2: 2 added, 0 removed" ] || fail "$(cat "$tmp/stdout")"
expect 1 "$audit" --audit-db "$db" compare 2 1
[ "$(head -n 1 "$tmp/stdout")" = "run 2 -> run 1: 0 added, 2 removed" ] || fail "$(cat "$tmp/stdout")"

# CSV: a header plus one row per finding (3 + 5).
expect 0 "$audit" --audit-db "$db" export --format csv
[ "$(wc -l <"$tmp/stdout")" = 9 ] || fail "csv rows: $(wc -l <"$tmp/stdout")"
head -n 1 "$tmp/stdout" | grep -q '^run_id,started,command,exit_code' || fail "csv header"

# A database from a newer tool is rejected with a message naming both versions.
cp "$db" "$tmp/newer.db"
sqlite3 "$tmp/newer.db" "PRAGMA user_version = 99"
expect 2 "$audit" --audit-db "$tmp/newer.db" history
grep -q "audit database $tmp/newer.db has schema version 99; this bitcpm-check (.*) understands up to 2; upgrade the tool" \
    "$tmp/stderr" || fail "newer schema: $(cat "$tmp/stderr")"
echo "ok: command line"
