/*
 * addr.h -- socket addresses as the WebTransport plugin reads and prints
 * them: "127.0.0.1:4433", "[::1]:4433".  The bottom of the plugin's
 * layers: no state, no other unit of the plugin below it.
 */
#ifndef VCG_WT_ADDR_H
#define VCG_WT_ADDR_H

#include <stddef.h>
#include <sys/socket.h>

/* Parse "a.b.c.d:port" or "[v6addr]:port" into ss.  0 or VCG_EINVAL. */
int vcg__wt_parse_addr(const char *s, struct sockaddr_storage *ss,
                       socklen_t *len);
/* Print sa as "a.b.c.d:port" or "[v6]:port" into buf; returns buf. */
const char *vcg__wt_addr_str(const struct sockaddr *sa, char *buf,
                             size_t len);
/* The length of sa as its family has it. */
socklen_t vcg__wt_sa_len(const struct sockaddr *sa);

#endif /* VCG_WT_ADDR_H */
