/*
 * An ordered digest stream over a catalog's files. The check's own pass over
 * the data feeds it while the bytes are still in the CPU cache, so the file
 * is not read a second time.
 *
 * The stream keeps a cursor (file, offset). A feed hashes the bytes between
 * the cursor and the range first, straight from the mapping (zip headers,
 * padding, tensors the check does not read), then the part of the range past
 * the cursor; bytes behind the cursor (tied weights, overlapping views) are
 * not hashed again. Finishing hashes up to the end of the last file. The
 * files are one stream in catalog order, so a single file's digest equals
 * what xxh128sum and sha256sum print for it. Each file of a sharded set also
 * gets its own digest from the same pass, the one a model hub publishes for
 * that shard.
 *
 * Feeds must not run concurrently; the quant kernels serialize them.
 */
#ifndef BCPM_AUDIT_STREAM_H
#define BCPM_AUDIT_STREAM_H

#include <stdint.h>

#include "audit/digest.h"
#include "io/error.h"
#include "quant/quant.h"
#include "tensor/catalog.h"

struct bcpm_digest_stream;

/*
 * Start a stream over catalog's files (which must stay mapped until the
 * stream is finished). Returns 0, or the errors of bcpm_digest_init.
 */
int bcpm_digest_stream_new(struct bcpm_digest_stream **out, const struct bcpm_catalog *catalog,
                           int with_sha256, struct bcpm_error *err);

/* Hash everything up to the end of range [offset, offset + length) of file. */
void bcpm_digest_stream_feed(struct bcpm_digest_stream *s, uint32_t file, uint64_t offset,
                             uint64_t length);

/* The stream as the kernels' digest hook (struct bcpm_quant_options.digest). */
const struct bcpm_quant_digest *bcpm_digest_stream_hook(struct bcpm_digest_stream *s);

/*
 * Hash the rest of every file, write the hex digests of the whole stream
 * (see bcpm_digest_final) and free s. parts, when not NULL, has one entry per
 * catalog file and receives each file's own digests; an entry is "" when its
 * digest could not be started (out of memory).
 */
void bcpm_digest_stream_finish(struct bcpm_digest_stream *s, char xxh_hex[BCPM_XXH128_HEX_SIZE],
                               char sha_hex[BCPM_SHA256_HEX_SIZE], struct bcpm_digest_hex *parts);

/* Free s without producing digests (NULL is fine). */
void bcpm_digest_stream_free(struct bcpm_digest_stream *s);

#endif
