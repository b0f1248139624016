/* Sessions: the transport-facing half of the host API.  A session is
 * opened from a lobby URL (lobby.c), receives one message at a time
 * (per-type rules, then relay.c), tracks the depth its transport reports,
 * and is freed when the transport says it is gone. */
#ifndef VCG_SESSION_H
#define VCG_SESSION_H
#include "core.h"

int vcg__session_open(vcg_worker_t *b, const vcg_session_info_t *info,
                      vcg_session_t **out, int *why, char *msg, size_t msglen);
int vcg__session_deliver(vcg_session_t *s, const uint8_t *data, size_t len);
void vcg__session_closed(vcg_session_t *s);
/* host->lobby_check: what session_open() would answer target, opening nothing. */
int vcg__lobby_check(vcg_worker_t *b, const char *target, int *why, char *msg, size_t msglen);
void vcg__session_set_queued(vcg_session_t *s, size_t packets, size_t bytes);
#endif
