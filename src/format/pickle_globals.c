/*
 * The pickle globals a state dict may name, and the ones that can run code.
 *
 * bcpm_pickle_classify() puts every GLOBAL, STACK_GLOBAL and INST target in
 * one of four classes (see enum bcpm_global_class). The order of the checks
 * matters: a dangerous global stays dangerous even when a rule set allows
 * its module, so a careless "os: *" entry cannot hide os.system. Anything
 * neither known nor allowed is unknown, which fails closed: deny lists alone
 * have been bypassed repeatedly through obscure standard modules.
 */
#include "format/pickle.h"
#include "format/pickle_internal.h"

#include <string.h>

struct global_name {
    const char *module;
    const char *name;
};

/* ---------------------------------------------------------------- Python 2 names */

/* Module renames from Python 3's Lib/_compat_pickle.py (IMPORT_MAPPING), the subset
 * that reaches modules this file classifies. */
static const struct global_name python2_modules[] = {
    {"__builtin__", "builtins"},
    {"exceptions", "builtins"},
    {"copy_reg", "copyreg"},
    {"cPickle", "pickle"},
    {"commands", "subprocess"},
    {"thread", "_thread"},
    {"dummy_thread", "_dummy_thread"},
    {"StringIO", "io"},
    {"cStringIO", "io"},
    {"urllib2", "urllib.request"},
    {"urlparse", "urllib.parse"},
    {"httplib", "http.client"},
    {"BaseHTTPServer", "http.server"},
    {"SimpleHTTPServer", "http.server"},
    {"CGIHTTPServer", "http.server"},
    {"Cookie", "http.cookies"},
    {"cookielib", "http.cookiejar"},
    {"SocketServer", "socketserver"},
    {"xmlrpclib", "xmlrpc.client"},
    {"SimpleXMLRPCServer", "xmlrpc.server"},
    {"DocXMLRPCServer", "xmlrpc.server"},
    {"UserDict", "collections"},
    {"UserList", "collections"},
    {"UserString", "collections"},
    {"Queue", "queue"},
    {"anydbm", "dbm"},
    {"whichdb", "dbm"},
    {"dbhash", "dbm.bsd"},
    {"dumbdbm", "dbm.dumb"},
    {"gdbm", "dbm.gnu"},
};

/* Renamed single names (NAME_MAPPING), given as Python 2 module, name, then
 * Python 3 module, name. */
static const struct {
    struct global_name from, to;
} python2_names[] = {
    {{"__builtin__", "reduce"}, {"functools", "reduce"}},
    {{"__builtin__", "intern"}, {"sys", "intern"}},
    {{"__builtin__", "raw_input"}, {"builtins", "input"}},
    {{"__builtin__", "xrange"}, {"builtins", "range"}},
    {{"__builtin__", "unicode"}, {"builtins", "str"}},
    {{"__builtin__", "basestring"}, {"builtins", "str"}},
    {{"__builtin__", "long"}, {"builtins", "int"}},
    {{"__builtin__", "unichr"}, {"builtins", "chr"}},
};

void bcpm_pickle_python3_name(const char *module, const char *name, const char **module3,
                              const char **name3)
{
    size_t i;

    *module3 = module;
    *name3 = name;

    for (i = 0; i < sizeof(python2_names) / sizeof(python2_names[0]); i++) {
        if (strcmp(module, python2_names[i].from.module) == 0 &&
            strcmp(name, python2_names[i].from.name) == 0) {
            *module3 = python2_names[i].to.module;
            *name3 = python2_names[i].to.name;
            return;
        }
    }

    for (i = 0; i < sizeof(python2_modules) / sizeof(python2_modules[0]); i++) {
        if (strcmp(module, python2_modules[i].module) == 0) {
            *module3 = python2_modules[i].name;
            return;
        }
    }
}

/* ---------------------------------------------------------------- known and safe */

/* Exact names a state dict needs. torch.load's weights_only unpickler (torch 2.x,
 * torch/_weights_only_unpickler.py) allows the same set. */
static const struct global_name known_names[] = {
    {"collections", "OrderedDict"},
    {"_codecs", "encode"},
    {"builtins", "set"},
    {"builtins", "frozenset"},
    {"builtins", "bytearray"},
    {"builtins", "bytes"},
    {"builtins", "slice"},
    {"builtins", "complex"},
    {"torch", "Size"},
    {"torch", "device"},
    {"torch", "Tensor"},
    {"torch.nn.parameter", "Parameter"},
    {"torch._tensor", "_rebuild_from_type_v2"},
    {"torch.serialization", "_get_layout"},
    {"torch.storage", "UntypedStorage"},
    {"torch.storage", "TypedStorage"},
};

/* Attributes of the torch module that are dtypes, layouts, memory formats or
 * quantization schemes: plain values, used by the tensor rebuilders. */
static const char *const torch_values[] = {
    "float32", "float", "float64", "double", "float16", "half", "bfloat16",
    "complex32", "chalf", "complex64", "cfloat", "complex128", "cdouble",
    "uint8", "int8", "int16", "short", "int32", "int", "int64", "long", "bool",
    "qint8", "quint8", "qint32", "quint4x2", "quint2x4",
    "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz",
    "uint16", "uint32", "uint64",
    "strided", "sparse_coo", "sparse_csr", "sparse_csc", "sparse_bsr", "sparse_bsc",
    "_mkldnn",
    "contiguous_format", "channels_last", "channels_last_3d", "preserve_format",
    "per_tensor_affine", "per_channel_affine", "per_tensor_symmetric",
    "per_channel_symmetric", "per_channel_affine_float_qparams",
};

static int has_prefix(const char *text, const char *prefix)
{
    return strncmp(text, prefix, strlen(prefix)) == 0;
}

static int has_suffix(const char *text, const char *suffix)
{
    size_t n = strlen(text), m = strlen(suffix);

    return n >= m && strcmp(text + n - m, suffix) == 0;
}

static int is_known(const char *module, const char *name)
{
    size_t i;

    for (i = 0; i < sizeof(known_names) / sizeof(known_names[0]); i++) {
        if (strcmp(module, known_names[i].module) == 0 &&
            strcmp(name, known_names[i].name) == 0)
            return 1;
    }

    /* From protocol 4 on, a name may be a dotted attribute path
     * ("OrderedDict.fromkeys"); the patterns below match plain names only. */
    if (strchr(name, '.'))
        return 0;

    /* The typed storages (torch.FloatStorage, torch.cuda.HalfStorage, ...) appear
     * in persistent ids as type tags; the torch reader never instantiates them. */
    if ((strcmp(module, "torch") == 0 || strcmp(module, "torch.cuda") == 0) &&
        has_suffix(name, "Storage"))
        return 1;

    /* torch._utils._rebuild_tensor_v2, _rebuild_parameter, _rebuild_qtensor, ... */
    if (strcmp(module, "torch._utils") == 0 && has_prefix(name, "_rebuild_"))
        return 1;

    if (strcmp(module, "torch") == 0) {
        for (i = 0; i < sizeof(torch_values) / sizeof(torch_values[0]); i++) {
            if (strcmp(name, torch_values[i]) == 0)
                return 1;
        }
    }
    return 0;
}

/* ---------------------------------------------------------------- dangerous */

/* Modules where any name can run code, start processes, load libraries or
 * touch files and the network. A module matches its submodules too ("os"
 * covers "os.path"). */
static const char *const dangerous_modules[] = {
    "os", "posix", "nt", "posixpath", "ntpath", "subprocess", "_posixsubprocess",
    "sys", "socket", "socketserver", "ssl", "select", "selectors", "shutil",
    "runpy", "importlib", "imp", "zipimport", "pkgutil", "marshal", "types",
    "pickle", "_pickle", "pickletools", "shelve", "dbm", "code", "codeop",
    "ctypes", "_ctypes", "cffi", "multiprocessing", "concurrent", "_thread",
    "_dummy_thread", "threading", "pty", "tty", "termios", "fcntl", "resource",
    "signal", "atexit", "webbrowser", "asyncio", "asyncore", "asynchat", "sched",
    "io", "_io", "pathlib", "tempfile", "glob", "fileinput", "filecmp", "mmap",
    "zipfile", "tarfile", "gzip", "bz2", "lzma", "sqlite3",
    "requests", "urllib", "urllib3", "http", "httpx", "aiohttp", "ftplib",
    "smtplib", "poplib", "imaplib", "nntplib", "telnetlib", "xmlrpc",
    "pdb", "bdb", "timeit", "trace", "profile", "cProfile", "doctest", "pydoc",
    "idlelib", "inspect", "gc", "site", "sysconfig", "distutils", "setuptools",
    "pip", "venv", "ensurepip", "platform", "logging.config", "tkinter",
    "numpy.testing", "numpy.f2py", "numpy.distutils", "numpy.ctypeslib",
    "torch.hub", "torch.jit", "torch.package", "torch.utils.cpp_extension",
    "torch._dynamo", "torch._inductor", "torch.multiprocessing",
};

/* Single names in otherwise harmless modules. */
static const struct global_name dangerous_names[] = {
    {"builtins", "eval"},
    {"builtins", "exec"},
    {"builtins", "execfile"},
    {"builtins", "compile"},
    {"builtins", "getattr"},
    {"builtins", "setattr"},
    {"builtins", "delattr"},
    {"builtins", "hasattr"},
    {"builtins", "__import__"},
    {"builtins", "open"},
    {"builtins", "file"},
    {"builtins", "globals"},
    {"builtins", "locals"},
    {"builtins", "vars"},
    {"builtins", "input"},
    {"builtins", "breakpoint"},
    {"builtins", "help"},
    {"builtins", "exit"},
    {"builtins", "quit"},
    {"builtins", "reload"},
    {"builtins", "apply"},
    {"functools", "partial"},
    {"functools", "reduce"},
    {"functools", "partialmethod"},
    {"operator", "attrgetter"},
    {"operator", "methodcaller"},
    {"operator", "itemgetter"},
    {"operator", "call"},
    {"codecs", "open"},
    {"torch", "load"},
    {"torch", "save"},
    {"torch.serialization", "load"},
    {"torch.serialization", "save"},
    /* Runs torch.load on bytes embedded in the pickle, which nothing scans. */
    {"torch.storage", "_load_from_bytes"},
    {"numpy", "load"},
    {"numpy", "save"},
    {"numpy", "fromfile"},
    {"numpy", "loadtxt"},
    {"numpy", "memmap"},
};

/* True when module is base or one of its submodules. */
static int module_matches(const char *module, const char *base)
{
    size_t n = strlen(base);

    return strncmp(module, base, n) == 0 && (module[n] == '\0' || module[n] == '.');
}

static int is_dangerous(const char *module, const char *name)
{
    size_t i;

    for (i = 0; i < sizeof(dangerous_modules) / sizeof(dangerous_modules[0]); i++) {
        if (module_matches(module, dangerous_modules[i]))
            return 1;
    }

    for (i = 0; i < sizeof(dangerous_names) / sizeof(dangerous_names[0]); i++) {
        if (strcmp(module, dangerous_names[i].module) == 0 &&
            strcmp(name, dangerous_names[i].name) == 0)
            return 1;
    }

    /* Dunder names reach interpreter internals (__class__, __subclasses__,
     * __globals__, __builtins__) from any module, and no state-dict type is
     * spelled that way. */
    if (has_prefix(name, "__") || strstr(name, ".__") != NULL)
        return 1;
    return 0;
}

/* ---------------------------------------------------------------- allowed by the rule set */

static int is_allowed(const char *module, const char *name, const struct bcpm_open_options *options)
{
    size_t i;

    if (!options || !options->allowed_globals)
        return 0;

    for (i = 0; i < options->nallowed_globals; i++) {
        const struct bcpm_global_rule *rule = &options->allowed_globals[i];

        if (!rule->module || !rule->name || strcmp(module, rule->module) != 0)
            continue;
        if (strcmp(rule->name, "*") == 0 || strcmp(name, rule->name) == 0)
            return 1;
    }
    return 0;
}

/* ---------------------------------------------------------------- classification */

static enum bcpm_global_class classify_one(const char *module, const char *name,
                                           const struct bcpm_open_options *options)
{
    if (is_dangerous(module, name))
        return BCPM_GLOBAL_DANGEROUS;
    if (is_known(module, name))
        return BCPM_GLOBAL_KNOWN;
    if (is_allowed(module, name, options))
        return BCPM_GLOBAL_ALLOWED;
    return BCPM_GLOBAL_UNKNOWN;
}

enum bcpm_global_class bcpm_pickle_classify(const char *module, const char *name,
                                            const struct bcpm_open_options *options)
{
    const char *module3, *name3;
    enum bcpm_global_class written, renamed;

    if (!module || !name || !module[0] || !name[0])
        return BCPM_GLOBAL_UNKNOWN;

    /* Classify both the name as written and the name Python 3 would import.
     * Either being dangerous makes the global dangerous; otherwise a known or
     * allowed class of the renamed global wins over the written one. */
    written = classify_one(module, name, options);
    bcpm_pickle_python3_name(module, name, &module3, &name3);
    if (module3 == module && name3 == name)
        return written;
    renamed = classify_one(module3, name3, options);

    if (written == BCPM_GLOBAL_DANGEROUS || renamed == BCPM_GLOBAL_DANGEROUS)
        return BCPM_GLOBAL_DANGEROUS;
    if (written == BCPM_GLOBAL_UNKNOWN && renamed == BCPM_GLOBAL_UNKNOWN)
        return BCPM_GLOBAL_UNKNOWN;
    return renamed != BCPM_GLOBAL_UNKNOWN ? renamed : written;
}
