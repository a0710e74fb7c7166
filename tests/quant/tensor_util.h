/* Helpers the quant tests share: in-memory tensors and float conversions. */
#ifndef BCPM_TESTS_QUANT_TENSOR_UTIL_H
#define BCPM_TESTS_QUANT_TENSOR_UTIL_H

#include <string.h>

#include "tensor/catalog.h"

/* A contiguous [rows, columns] tensor over data, outside any catalog. */
static inline struct bcpm_tensor test_tensor(enum bcpm_dtype dtype, const void *data,
                                             int64_t rows, int64_t columns)
{
    struct bcpm_tensor t;

    memset(&t, 0, sizeof(t));
    t.name = (char *)"layers.0.q_proj.weight";
    t.stored_name = t.name;
    t.dtype = dtype;
    t.ndim = 2;
    t.shape[0] = rows;
    t.shape[1] = columns;
    t.strides[0] = columns;
    t.strides[1] = 1;
    t.numel = (uint64_t)(rows * columns);
    t.nbytes = t.numel * bcpm_dtype_size(dtype);
    t.contiguous = 1;
    t.data = data;
    return t;
}

static inline uint16_t test_bf16(float f)
{
    return bcpm_f32_to_bf16(f);
}

#endif
