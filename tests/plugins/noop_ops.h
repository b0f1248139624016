/* The vtable of a transport that does nothing, for the test plugins that
 * must load (test_good, test_oldminor): the loader is what they test. */
#include <stddef.h>
#include "vcgate/plugin.h"
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
