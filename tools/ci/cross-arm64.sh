#!/bin/sh
# Build the quant kernels (src/quant, with src/tensor and src/io beneath
# them) and their unit tests for ARM64 with Debian's cross compiler, and run
# the tests under user-mode QEMU. On ARM64 the NEON table is the default, so
# the tests compare it with the scalar table there.
#
# Usage: tools/ci/cross-arm64.sh [--no-install] [BUILD_DIR]
#   --no-install  skip apt-get (the packages are already there)
#   BUILD_DIR     where objects and test binaries go (default build-arm64-quant)
#
# Installs (as root, through apt-get): gcc-aarch64-linux-gnu, qemu-user,
# libc6-dev-arm64-cross, and libcmocka-dev:arm64 after enabling the arm64
# architecture in dpkg. Prints "N passed, N failed" and exits 1 if any test
# failed.
#
# It is a plain compiler command line rather than a meson cross build
# because the whole project also needs arm64 builds of SQLite, libyaml,
# jansson, xxhash and OpenSSL, none of which the kernels use.
set -eu

install=1
if [ "${1:-}" = "--no-install" ]; then
    install=0
    shift
fi
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$root/build-arm64-quant}

if [ "$install" = 1 ]; then
    dpkg --add-architecture arm64
    apt-get update -q
    apt-get install -y -q gcc-aarch64-linux-gnu qemu-user libc6-dev-arm64-cross
    apt-get install -y -q libcmocka-dev:arm64
fi

cc=aarch64-linux-gnu-gcc
cflags="-std=c11 -Wall -Wextra -Werror -O2 -g -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE"
mkdir -p "$build/obj"
rm -f "$build"/obj/*.o "$build/libquant.a"

# The kernels and what they build on; the format readers are not needed.
sources="$root/src/quant/*.c $root/src/tensor/dtype.c $root/src/tensor/catalog.c $root/src/io/*.c"
# shellcheck disable=SC2086
(cd "$build/obj" && $cc $cflags -I"$root/src" -c $sources)
aarch64-linux-gnu-ar rcs "$build/libquant.a" "$build"/obj/*.o

passed=0
failed=0
for test in test_kernels test_scan test_fakequant test_reference; do
    $cc $cflags -I"$root/src" -I"$root/tests/quant" "$root/tests/quant/$test.c" \
        "$build/libquant.a" -lcmocka -lpthread -lm -o "$build/$test"
    echo "== $test (qemu-aarch64)"
    if BCPM_FIXTURES="$root/fixtures" QEMU_LD_PREFIX=/usr/aarch64-linux-gnu \
       LD_LIBRARY_PATH=/usr/lib/aarch64-linux-gnu \
       qemu-aarch64 -L /usr/aarch64-linux-gnu "$build/$test"; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
    fi
done

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
