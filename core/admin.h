/* The admin listener: a small HTTP/1.1 server of the core, on the main
 * thread's loop (never a worker's, so a scrape costs the relay nothing),
 * for operators and orchestrators:
 *   GET /metrics  Prometheus text format (metrics.c)
 *   GET /livez    200 while the process runs; never depends on NATS
 *   GET /readyz   200 when every listener is bound, every bus connection is
 *                 up and the process is not draining, else 503 with JSON
 *                 naming the failed check
 *   GET /version  JSON: version, ABI, plugins and their versions
 * One request per connection (the answer says connection: close); at most
 * ADMIN_MAX_CONNS at once, each given ADMIN_TIMEOUT_MS to send its request. */
#ifndef VCG_ADMIN_H
#define VCG_ADMIN_H
#include <uv.h>
#include "core.h"

typedef struct vcg__admin vcg__admin_t;

/* Bind listen ("host:port" or "[v6addr]:port") on loop.  0, or a negative
 * code with the reason in err. */
int vcg__admin_start(vcg__admin_t **out, uv_loop_t *loop, vcg__process_t *proc,
                     const char *listen, char *err, size_t errlen);
/* Close the listener and every connection; frees a once closed. */
void vcg__admin_stop(vcg__admin_t *a);
/* Parse "host:port" / "[v6]:port" into *ss (for configure-time checks). */
int vcg__admin_parse_listen(const char *listen, struct sockaddr_storage *ss);
#endif
