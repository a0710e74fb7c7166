/*
 * Content digests of checkpoint files: xxh3-128 always (fast enough to run
 * during the check's own pass over the data), SHA-256 on request (slower, but
 * comparable with the LFS object ids that model hubs publish for large files).
 *
 * Hex output matches the reference tools: `xxh128sum` prints the canonical
 * (big-endian) form of the 128-bit hash, `sha256sum` the 32 digest bytes.
 */
#ifndef BCPM_AUDIT_DIGEST_H
#define BCPM_AUDIT_DIGEST_H

#include <stddef.h>

#include "io/error.h"
#include "io/map.h"

#define BCPM_XXH128_HEX_SIZE 33 /* 32 hex digits and the terminating NUL */
#define BCPM_SHA256_HEX_SIZE 65 /* 64 hex digits and the terminating NUL */

/* The hex digests of one stream or file; sha256 is "" when not computed. */
struct bcpm_digest_hex {
    char xxh3_128[BCPM_XXH128_HEX_SIZE];
    char sha256[BCPM_SHA256_HEX_SIZE];
};

/* A streaming digest; the fields are private. */
struct bcpm_digest {
    void *xxh;    /* XXH3_state_t */
    void *sha256; /* EVP_MD_CTX, or NULL without SHA-256 */
    int sha256_failed; /* libcrypto reported an error; the SHA-256 comes out "" */
};

/*
 * Start a digest; with_sha256 adds SHA-256 next to xxh3-128. Returns 0, or
 * BCPM_ERR_NOMEM / BCPM_ERR_UNSUPPORTED (libcrypto lacks SHA-256) with err
 * filled. Release with bcpm_digest_final or bcpm_digest_abort.
 */
int bcpm_digest_init(struct bcpm_digest *ctx, int with_sha256, struct bcpm_error *err);

/* Feed the next len bytes, in file order. */
void bcpm_digest_update(struct bcpm_digest *ctx, const void *data, size_t len);

/*
 * Write the lowercase hex digests and release the context. sha_hex may be
 * NULL. It receives "" when the context was started without SHA-256 or when
 * libcrypto reported an error while hashing.
 */
void bcpm_digest_final(struct bcpm_digest *ctx, char xxh_hex[BCPM_XXH128_HEX_SIZE],
                       char sha_hex[BCPM_SHA256_HEX_SIZE]);

/* Release the context without producing digests. */
void bcpm_digest_abort(struct bcpm_digest *ctx);

/*
 * Digest a whole mapped file, walking it in windows and releasing each
 * window's pages afterwards so the resident set stays small. Same outputs
 * and errors as bcpm_digest_init and bcpm_digest_final.
 */
int bcpm_digest_file(const struct bcpm_map *map, int with_sha256,
                     char xxh_hex[BCPM_XXH128_HEX_SIZE], char sha_hex[BCPM_SHA256_HEX_SIZE],
                     struct bcpm_error *err);

#endif
