/* A valid transport built as if against ABI 1.1: it has no
 * restart_options member (ABI 1.2), and the bytes where that member now
 * lives are not zero.  The loader must accept it and read the member as
 * NULL, never as a pointer. */
#include <stddef.h>
#include "vcgate/plugin.h"
#include "noop_ops.h"
static const vcg_plugin_t desc = { .size = sizeof(vcg_plugin_t), .abi_major = 1, .abi_minor = 1,
  .magic = VCG_PLUGIN_MAGIC, .name = "test_oldminor", .version = "1", .kind = VCG_PLUGIN_TRANSPORT,
  .transport = &ops, .restart_options = (const char *const *)(uintptr_t)0xdeadbeef };
VCG_EXPORT const vcg_plugin_t *vcg_plugin_entry(unsigned a, unsigned b);
VCG_EXPORT const vcg_plugin_t *vcg_plugin_entry(unsigned a, unsigned b) { (void)a; (void)b; return &desc; }
