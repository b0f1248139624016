/* A minimal, valid transport plugin used by the unit tests.  It is also
 * the smallest example of the ABI: one cc line builds it. */
#include <stddef.h>
#include "vcgate/plugin.h"

typedef struct { int64_t port; } conf_t;
static const vcg_option_t options[] = {
  VCG_OPTION_INT(conf_t, port, "port", 8080, 1, 65535, "listen port"),
  VCG_OPTION_END
};
#include "noop_ops.h"
static const vcg_plugin_t desc = VCG_PLUGIN_DESCRIPTOR(
  .name = "test_good", .version = "1", .kind = VCG_PLUGIN_TRANSPORT,
  .options = options, .conf_size = sizeof(conf_t), .transport = &ops);
VCG_PLUGIN_DEFINE(desc)
