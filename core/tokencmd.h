/* The --token command line (tokencmd.c). */
#ifndef VCG_TOKENCMD_H
#define VCG_TOKENCMD_H
#include "conf.h"
/* Print a token for spec; returns the process exit status. */
int vcg__token_command(const vcg__config_t *cfg, const char *spec);
#endif
