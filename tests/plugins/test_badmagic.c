/* Exports the entry symbol but returns something that is not a descriptor. */
#include "vcgate/plugin.h"
static const vcg_plugin_t desc = { .size = sizeof(vcg_plugin_t), .abi_major = VCG_ABI_MAJOR, .magic = 0x12345678u };
VCG_EXPORT const vcg_plugin_t *vcg_plugin_entry(unsigned a, unsigned b);
VCG_EXPORT const vcg_plugin_t *vcg_plugin_entry(unsigned a, unsigned b) { (void)a; (void)b; return &desc; }
