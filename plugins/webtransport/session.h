/*
 * session.h -- HTTP/3 and the WebTransport session on one QUIC
 * connection: the top layer of the plugin's data path.
 *
 * One session per connection: the extended CONNECT on the first client
 * bidirectional stream opens it (the stream id is the session id), client
 * unidirectional streams and datagrams carry PacketWrappers in, and
 * packets from the host go out on new unidirectional streams or as
 * datagrams.  Nothing here writes to the network: it queues records on
 * the connection's output queue and marks the connection dirty.
 *
 * The connection layer calls this one only through vcg__wt_session_cb
 * (conn.h's wt_conn_cb_t); this layer calls down into conn.h, stream.h,
 * and the pure h3.h / qpack.h.
 */
#ifndef VCG_WT_SESSION_H
#define VCG_WT_SESSION_H

#include <stdint.h>

#include <vcgate/plugin.h>

#include "conn.h"

/* The table the connection layer calls up through. */
extern const wt_conn_cb_t vcg__wt_session_cb;

/* The transport's send(): queue packet p (one reference, released on
 * every path) for the session on c.  0 or VCG_ENOBUFS. */
int vcg__wt_session_send(wt_conn_t *c, vcg_packet_t *p);
/* End the session on c with a CLOSE_WEBTRANSPORT_SESSION capsule carrying
 * code and reason, then FIN; session_closed() follows.  No-op when c has
 * no open session. */
void vcg__wt_session_close(wt_conn_t *c, uint32_t code, const char *reason);

#endif /* VCG_WT_SESSION_H */
