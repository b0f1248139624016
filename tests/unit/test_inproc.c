/*
 * test_inproc.c -- the in-process bus: its room table (hub.c) and the
 * plugin's publish/ref-count contract against a fake host.
 *
 * Build: cc -I core/include -I plugins/inproc tests/unit/test_inproc.c
 *        plugins/inproc/inproc.c plugins/inproc/hub.c -lpthread
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vcgate/plugin.h>

#include "hub.h"
#include "tap.h"


/* ---- hub ---- */

static void count_cb(void *member, void *arg) {
  (void)member;
  (*(int *)arg)++;
}

static void test_hub(void) {
  vcg__hub_t *hub;
  int a, b, c, n;
  CHECK(vcg__hub_new(&hub) == 0, "hub: new");
  CHECK(vcg__hub_join(hub, "r1", &a) == 0, "hub: join");
  CHECK(vcg__hub_join(hub, "r1", &a) == 0, "hub: join is idempotent");
  vcg__hub_join(hub, "r1", &b);
  vcg__hub_join(hub, "r1", &c);
  vcg__hub_join(hub, "r2", &b);
  n = 0;
  CHECK(vcg__hub_visit(hub, "r1", &a, count_cb, &n) == 2 && n == 2,
        "hub: visit skips the publisher, counts each member once");
  n = 0;
  CHECK(vcg__hub_visit(hub, "nope", NULL, count_cb, &n) == 0 && n == 0,
        "hub: unknown room has no members");
  CHECK(vcg__hub_leave(hub, "r1", &c) == 0, "hub: leave");
  CHECK(vcg__hub_leave(hub, "r1", &c) == VCG_ENOENT, "hub: leave twice is ENOENT");
  CHECK(vcg__hub_room_count(hub) == 2, "hub: two rooms");
  vcg__hub_leave_all(hub, &b);
  CHECK(vcg__hub_room_count(hub) == 1, "hub: leave_all empties r2");
  vcg__hub_leave(hub, "r1", &a);
  CHECK(vcg__hub_room_count(hub) == 0, "hub: last leave frees the room");

  /* Many rooms: forces the table to grow; every room stays findable. */
  char name[32];
  int ok = 1;
  for (int i = 0; i < 5000; i++) {
    snprintf(name, sizeof(name), "room-%d", i);
    if (vcg__hub_join(hub, name, &a) != 0) ok = 0;
  }
  for (int i = 0; i < 5000; i++) {
    snprintf(name, sizeof(name), "room-%d", i);
    n = 0;
    vcg__hub_visit(hub, name, NULL, count_cb, &n);
    if (n != 1) ok = 0;
  }
  CHECK(ok && vcg__hub_room_count(hub) == 5000, "hub: 5000 rooms after growth");
  vcg__hub_leave_all(hub, &a);
  CHECK(vcg__hub_room_count(hub) == 0, "hub: leave_all removes all rooms");
  vcg__hub_join(hub, "left-over", &b);
  vcg__hub_free(hub);  /* frees a non-empty hub (checked under ASan) */
}

/* ---- the plugin against a fake host ---- */

struct vcg_worker { int index; int delivered; int stopped; };
struct vcg_packet { int refs; };

static void fake_log(vcg_worker_t *w, vcg_session_t *s, int level,
                     const char *fmt, ...) {}
static void fake_ref(vcg_packet_t *p) { p->refs++; }
static void fake_unref(vcg_packet_t *p) { p->refs--; }
static int fake_deliver_packet_ts(vcg_worker_t *w, const char *room,
                                  uint64_t origin, vcg_packet_t *p) {
  w->delivered++;
  p->refs--;  /* the host consumes the reference */
  return 0;
}
static void fake_counter(vcg_worker_t *w, const char *name, uint64_t v) {}
static void fake_stopped(vcg_worker_t *w) { w->stopped++; }

const vcg_plugin_t *vcg_plugin_entry(unsigned, unsigned);

static void test_plugin(void) {
  vcg_host_api_t host = {
    .size = sizeof(host), .abi_major = VCG_ABI_MAJOR, .abi_minor = VCG_ABI_MINOR,
    .log = fake_log, .packet_ref = fake_ref, .packet_unref = fake_unref,
    .bus_deliver_packet_ts = fake_deliver_packet_ts, .counter_add = fake_counter,
  };
  const vcg_plugin_t *pl = vcg_plugin_entry(VCG_ABI_MAJOR, VCG_ABI_MINOR);
  CHECK(pl != NULL && pl->kind == VCG_PLUGIN_BUS && pl->bus != NULL,
        "plugin: descriptor is a bus");
  CHECK(vcg_plugin_entry(VCG_ABI_MAJOR + 1, 0) == NULL,
        "plugin: refuses another ABI major");
  const vcg_bus_ops_t *ops = pl->bus;
  vcg_plugin_state_t *st = NULL;
  CHECK(ops->init(&host, NULL, &st) == 0, "plugin: init");
  vcg_worker_t w[3] = { { 0, 0, 0 }, { 1, 0, 0 }, { 2, 0, 0 } };
  vcg_instance_t *in[3];
  for (int i = 0; i < 3; i++) ops->start(&host, st, NULL, &w[i], &in[i]);

  struct vcg_packet p = { 1 };
  ops->room_join(in[0], "r");
  ops->publish(in[0], "r", 42, &p);
  CHECK(p.refs == 0 && w[0].delivered == 0,
        "plugin: single member publish only unrefs");

  ops->room_join(in[1], "r");
  ops->room_join(in[2], "r");
  ops->room_join(in[2], "other");
  p.refs = 1;
  ops->publish(in[0], "r", 42, &p);
  CHECK(p.refs == 0 && w[0].delivered == 0 && w[1].delivered == 1 &&
        w[2].delivered == 1,
        "plugin: each other worker gets one ref, never the publisher");

  ops->room_leave(in[1], "r");
  p.refs = 1;
  ops->publish(in[0], "r", 42, &p);
  CHECK(p.refs == 0 && w[1].delivered == 1 && w[2].delivered == 2,
        "plugin: a worker that left gets nothing");

  ops->stop(in[2], fake_stopped);
  p.refs = 1;
  ops->publish(in[0], "r", 42, &p);
  CHECK(p.refs == 0 && w[2].delivered == 2 && w[2].stopped == 1,
        "plugin: stop deregisters and calls cb once");
  ops->stop(in[0], fake_stopped);
  ops->stop(in[1], fake_stopped);
  ops->fini(st);
}

int main(void) {
  test_hub();
  test_plugin();
  return TAP_DONE();
}
