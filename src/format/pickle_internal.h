/*
 * Helpers shared by the pickle machine (pickle.c) and its global tables
 * (pickle_globals.c). Not part of the library's interface.
 */
#ifndef BCPM_FORMAT_PICKLE_INTERNAL_H
#define BCPM_FORMAT_PICKLE_INTERNAL_H

/*
 * Map a Python 2 global to the name Python 3's unpickler imports instead
 * (Lib/_compat_pickle.py: "__builtin__.eval" is "builtins.eval",
 * "commands.getoutput" is "subprocess.getoutput"). Python applies the
 * mapping only below protocol 3, but classification applies it always, so
 * that a renamed dangerous global never passes as unknown. Sets *module3 and
 * *name3 to the inputs when no mapping exists. The results are static
 * strings or the inputs themselves.
 */
void bcpm_pickle_python3_name(const char *module, const char *name, const char **module3,
                              const char **name3);

#endif
