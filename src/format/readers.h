/*
 * Entry points of the container readers. bcpm_catalog_open() in open.c
 * probes a path and calls one of these; each adds its files, storages and
 * tensors to the catalog and leaves bcpm_catalog_finish() to the caller.
 */
#ifndef BCPM_FORMAT_READERS_H
#define BCPM_FORMAT_READERS_H

#include "tensor/catalog.h"

/* Kinds of a single weights file, told apart by their first bytes. */
enum bcpm_probe {
    BCPM_PROBE_UNKNOWN,
    BCPM_PROBE_ZIP,         /* "PK\3\4": torch.save since 1.6 */
    BCPM_PROBE_LEGACY,      /* a pickle (0x80 protocol byte): torch.save legacy format */
    BCPM_PROBE_SAFETENSORS, /* u64 header length, then '{' */
};

enum bcpm_probe bcpm_probe_bytes(const uint8_t *data, uint64_t size);

/*
 * Read one weights file of any format into catalog, adding the file itself.
 * Used for a single file and for each shard of an index.
 */
int bcpm_read_weights_file(struct bcpm_catalog *catalog, const char *path,
                           const struct bcpm_open_options *options, struct bcpm_error *err);

/* The readers, each given the index of a file already added to catalog. */
int bcpm_read_torch_zip(struct bcpm_catalog *catalog, uint32_t file,
                        const struct bcpm_open_options *options, struct bcpm_error *err);
int bcpm_read_torch_legacy(struct bcpm_catalog *catalog, uint32_t file,
                           const struct bcpm_open_options *options, struct bcpm_error *err);
int bcpm_read_safetensors(struct bcpm_catalog *catalog, uint32_t file,
                          const struct bcpm_open_options *options, struct bcpm_error *err);

/* A *.index.json shard index: reads every shard and checks the weight map against them. */
int bcpm_read_shard_index(struct bcpm_catalog *catalog, const char *index_path,
                          const struct bcpm_open_options *options, struct bcpm_error *err);

/* A model folder: config.json plus an index, model.safetensors or pytorch_model.bin. */
int bcpm_read_model_dir(struct bcpm_catalog *catalog, const char *dir,
                        const struct bcpm_open_options *options, struct bcpm_error *err);

#endif
