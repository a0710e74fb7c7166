/* xxh3-128 (libxxhash) and SHA-256 (OpenSSL EVP) digests; see digest.h. */
#include "audit/digest.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <xxhash.h>

/*
 * On x86 the library's default xxh3 entry points use SSE2 only. Its
 * dispatching ones pick AVX2 or AVX-512 at run time and hash about twice as
 * fast, which keeps the in-pass digest cheap. This header maps the plain
 * names to them.
 */
#if (defined(__x86_64__) || defined(__i386__)) && defined(__has_include)
#if __has_include(<xxh_x86dispatch.h>)
#include <xxh_x86dispatch.h>
#endif
#endif

/*
 * Window for bcpm_digest_file: large enough that the per-call overhead and
 * the madvise per window vanish against the hashing, small enough that the
 * resident set stays far below a checkpoint's size.
 */
#define DIGEST_WINDOW ((uint64_t)64 << 20)

static void to_hex(const unsigned char *bytes, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";

    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 15];
    }
    out[2 * n] = '\0';
}

int bcpm_digest_init(struct bcpm_digest *ctx, int with_sha256, struct bcpm_error *err)
{
    memset(ctx, 0, sizeof(*ctx));

    ctx->xxh = XXH3_createState();
    if (!ctx->xxh)
        return bcpm_error_set(err, BCPM_ERR_NOMEM, NULL, NULL,
                              "out of memory for the xxh3-128 state");
    XXH3_128bits_reset(ctx->xxh);

    if (!with_sha256)
        return 0;

    ctx->sha256 = EVP_MD_CTX_new();
    if (!ctx->sha256) {
        bcpm_digest_abort(ctx);
        return bcpm_error_set(err, BCPM_ERR_NOMEM, NULL, NULL,
                              "out of memory for the SHA-256 context");
    }
    if (EVP_DigestInit_ex(ctx->sha256, EVP_sha256(), NULL) != 1) {
        bcpm_digest_abort(ctx);
        return bcpm_error_set(err, BCPM_ERR_UNSUPPORTED, NULL, NULL,
                              "libcrypto could not start a SHA-256 digest");
    }
    return 0;
}

void bcpm_digest_update(struct bcpm_digest *ctx, const void *data, size_t len)
{
    if (len == 0)
        return;
    XXH3_128bits_update(ctx->xxh, data, len);

    if (ctx->sha256 && EVP_DigestUpdate(ctx->sha256, data, len) != 1)
        ctx->sha256_failed = 1;
}

void bcpm_digest_final(struct bcpm_digest *ctx, char xxh_hex[BCPM_XXH128_HEX_SIZE],
                       char sha_hex[BCPM_SHA256_HEX_SIZE])
{
    XXH128_canonical_t canonical;
    unsigned char sha[EVP_MAX_MD_SIZE];
    unsigned int sha_len = 0;

    XXH128_canonicalFromHash(&canonical, XXH3_128bits_digest(ctx->xxh));
    to_hex(canonical.digest, sizeof(canonical.digest), xxh_hex);

    if (sha_hex) {
        sha_hex[0] = '\0';
        if (ctx->sha256 && !ctx->sha256_failed &&
            EVP_DigestFinal_ex(ctx->sha256, sha, &sha_len) == 1 && sha_len == 32)
            to_hex(sha, sha_len, sha_hex);
    }
    bcpm_digest_abort(ctx);
}

void bcpm_digest_abort(struct bcpm_digest *ctx)
{
    if (ctx->xxh)
        XXH3_freeState(ctx->xxh);
    if (ctx->sha256)
        EVP_MD_CTX_free(ctx->sha256);
    ctx->xxh = NULL;
    ctx->sha256 = NULL;
}

int bcpm_digest_file(const struct bcpm_map *map, int with_sha256,
                     char xxh_hex[BCPM_XXH128_HEX_SIZE], char sha_hex[BCPM_SHA256_HEX_SIZE],
                     struct bcpm_error *err)
{
    struct bcpm_digest ctx;
    int rc = bcpm_digest_init(&ctx, with_sha256, err);

    if (rc < 0)
        return rc;

    for (uint64_t offset = 0; offset < map->size; offset += DIGEST_WINDOW) {
        uint64_t length = map->size - offset;

        if (length > DIGEST_WINDOW)
            length = DIGEST_WINDOW;
        bcpm_map_will_need(map, offset, length);
        bcpm_digest_update(&ctx, map->data + offset, (size_t)length);
        bcpm_map_release(map, offset, length);
    }

    bcpm_digest_final(&ctx, xxh_hex, sha_hex);
    return 0;
}
