/* placeholder: replaced by the reader's implementation */
#include "format/readers.h"
int bcpm_read_model_dir(struct bcpm_catalog *c, const char *p, const struct bcpm_open_options *o, struct bcpm_error *err)
{ (void)o; (void)c; return bcpm_error_set(err, BCPM_ERR_UNSUPPORTED, p, NULL, "not implemented"); }
