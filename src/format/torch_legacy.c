/* placeholder: replaced by the reader's implementation */
#include "format/readers.h"
int bcpm_read_torch_legacy(struct bcpm_catalog *c, uint32_t f, const struct bcpm_open_options *o, struct bcpm_error *err)
{ (void)o; return bcpm_error_set(err, BCPM_ERR_UNSUPPORTED, c->files[f].path, NULL, "not implemented"); }
