/* A transport without its mandatory send(): the loader must name it. */
#include "vcgate/plugin.h"
static int start(const vcg_host_api_t *h, vcg_plugin_state_t *st, const void *c,
                 vcg_worker_t *w, vcg_instance_t **inst) { (void)h; (void)st; (void)c; (void)w; (void)inst; return 0; }
static void drain(vcg_instance_t *i) { (void)i; }
static void stop(vcg_instance_t *i, vcg_stopped_cb cb) { (void)i; (void)cb; }
static void close_(vcg_instance_t *i, void *conn, int why, const char *r) { (void)i; (void)conn; (void)why; (void)r; }
static const vcg_transport_ops_t ops = { .start = start, .drain = drain, .stop = stop, .close = close_ };
static const vcg_plugin_t desc = VCG_PLUGIN_DESCRIPTOR(.name = "test_nosend", .kind = VCG_PLUGIN_TRANSPORT, .transport = &ops);
VCG_PLUGIN_DEFINE(desc)
