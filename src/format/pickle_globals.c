/* placeholder: replaced by the implementation */
#include "format/pickle.h"
