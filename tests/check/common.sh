# Shared by the bitcpm-check command tests. Set test_name and check (the
# bitcpm-check binary), then source this file with
#     . "$(dirname "$0")/common.sh"
# It makes $tmp, a scratch folder removed on exit, and $failed, which fail
# sets so that the script goes on and reports every broken check.
tmp=$(mktemp -d "${TMPDIR:-/tmp}/bcpm-check-$test_name.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
failed=0

fail() {
    echo "FAIL: $*"
    failed=1
}

# run NAME ARGS...: run bitcpm-check, keep stdout, stderr and the exit code.
run() {
    name=$1
    shift
    "$check" "$@" >"$tmp/$name.out" 2>"$tmp/$name.err"
    echo $? >"$tmp/$name.code"
}

# expect_code NAME CODE: the run NAME exited with CODE.
expect_code() {
    [ "$(cat "$tmp/$1.code")" = "$2" ] ||
        fail "$1: exit $(cat "$tmp/$1.code"), expected $2; stderr: $(cat "$tmp/$1.err")"
}
