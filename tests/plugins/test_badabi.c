/* Claims plugin ABI major 99: the loader must refuse it. */
#include "vcgate/plugin.h"
static void drain(vcg_instance_t *i) { (void)i; }
static const vcg_transport_ops_t ops = { .drain = drain };
static const vcg_plugin_t desc = { .size = sizeof(vcg_plugin_t), .abi_major = 99, .abi_minor = 0,
  .magic = VCG_PLUGIN_MAGIC, .name = "test_badabi", .kind = VCG_PLUGIN_TRANSPORT, .transport = &ops };
VCG_EXPORT const vcg_plugin_t *vcg_plugin_entry(unsigned a, unsigned b);
VCG_EXPORT const vcg_plugin_t *vcg_plugin_entry(unsigned a, unsigned b) { (void)a; (void)b; return &desc; }
