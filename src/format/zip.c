/* placeholder: replaced by the reader's implementation */
#include "format/readers.h"
