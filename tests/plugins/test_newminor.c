/* Claims a newer minor of the plugin ABI than any host has: refused. */
#include "vcgate/plugin.h"
static void drain(vcg_instance_t *i) { (void)i; }
static const vcg_transport_ops_t ops = { .drain = drain };
static const vcg_plugin_t desc = { .size = sizeof(vcg_plugin_t), .abi_major = VCG_ABI_MAJOR,
  .abi_minor = 99, .magic = VCG_PLUGIN_MAGIC, .name = "test_newminor", .kind = VCG_PLUGIN_TRANSPORT,
  .transport = &ops };
VCG_EXPORT const vcg_plugin_t *vcg_plugin_entry(unsigned a, unsigned b);
VCG_EXPORT const vcg_plugin_t *vcg_plugin_entry(unsigned a, unsigned b) { (void)a; (void)b; return &desc; }
