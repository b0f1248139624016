/* A minimal, valid transport plugin used by the unit tests.  It is also
 * the smallest example of the ABI: one cc line builds it. */
#include <stddef.h>
#include "vcgate/plugin.h"

typedef struct { int64_t port; } conf_t;
static const vcg_option_t options[] = {
  VCG_OPTION_INT(conf_t, port, "port", 8080, 1, 65535, "listen port"),
  VCG_OPTION_END
};
static int start(const vcg_host_api_t *h, vcg_plugin_state_t *st, const void *c,
                 vcg_worker_t *w, vcg_instance_t **inst) {
  (void)h; (void)st; (void)c; (void)w;
  *inst = (vcg_instance_t *)1;
  return 0;
}
static void drain(vcg_instance_t *i) { (void)i; }
static void stop(vcg_instance_t *i, vcg_stopped_cb cb) { (void)i; (void)cb; }
static int send_(vcg_instance_t *i, void *conn, vcg_packet_t *p) { (void)i; (void)conn; (void)p; return 0; }
static void close_(vcg_instance_t *i, void *conn, int why, const char *r) { (void)i; (void)conn; (void)why; (void)r; }
static const vcg_transport_ops_t ops = { .start = start, .drain = drain, .stop = stop,
                                         .send = send_, .close = close_ };
static const vcg_plugin_t desc = VCG_PLUGIN_DESCRIPTOR(
  .name = "test_good", .version = "1", .kind = VCG_PLUGIN_TRANSPORT,
  .options = options, .conf_size = sizeof(conf_t), .transport = &ops);
VCG_PLUGIN_DEFINE(desc)
