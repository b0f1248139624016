/* Pure helpers of the websocket transport: listen address parsing, lobby
 * routing, close-reason mappings (plugins/websocket/ws_util.c). */
#include <string.h>
#include "ws_util.h"
#include "vcgate/plugin.h"
#include "tap.h"

int main(void) {
  char host[64], user[VCG__WS_NAME_MAX + 1], room[VCG__WS_NAME_MAX + 1];
  char longname[VCG__WS_NAME_MAX + 20];
  const char *why = NULL;
  uint16_t port = 0;

  CHECK(vcg__ws_parse_listen("127.0.0.1:8080", host, sizeof(host), &port) == 0 &&
        strcmp(host, "127.0.0.1") == 0 && port == 8080, "host:port parses");
  CHECK(vcg__ws_parse_listen("[::1]:8081", host, sizeof(host), &port) == 0 &&
        strcmp(host, "::1") == 0 && port == 8081, "[v6]:port parses");
  CHECK(vcg__ws_parse_listen(":0", host, sizeof(host), &port) == 0 &&
        host[0] == '\0' && port == 0, ":port means any address, port 0 lets the kernel choose");
  CHECK(vcg__ws_parse_listen("*:9", host, sizeof(host), &port) == 0 && host[0] == '\0',
        "*:port means any address");
  CHECK(vcg__ws_parse_listen("::1:8080", host, sizeof(host), &port) == VCG_EINVAL,
        "unbracketed IPv6 is refused as ambiguous");
  CHECK(vcg__ws_parse_listen("localhost", host, sizeof(host), &port) == VCG_EINVAL,
        "missing port is refused");
  CHECK(vcg__ws_parse_listen("h:65536", host, sizeof(host), &port) == VCG_EINVAL,
        "port over 65535 is refused");
  CHECK(vcg__ws_parse_listen("h:80x", host, sizeof(host), &port) == VCG_EINVAL,
        "trailing junk after the port is refused");
  CHECK(vcg__ws_parse_listen("[]:80", host, sizeof(host), &port) == VCG_EINVAL,
        "empty brackets are refused");

  CHECK(vcg__ws_route("/lobby/alice@x.com/room-1", user, room, &why) == VCG__WS_ROUTE_LOBBY &&
        strcmp(user, "alice@x.com") == 0 && strcmp(room, "room-1") == 0,
        "/lobby/{user}/{room} routes to the lobby with both names");
  CHECK(vcg__ws_route("/lobby/alice 1@x/r", user, room, &why) == VCG__WS_ROUTE_LOBBY &&
        strcmp(user, "alice+1@x") == 0, "a space (lws's decoding of '+') becomes '+' again");
  CHECK(vcg__ws_route("/lobby/alice/", user, room, &why) == VCG__WS_ROUTE_BAD &&
        strstr(why, "room"), "empty room is a bad request");
  CHECK(vcg__ws_route("/lobby//r", user, room, &why) == VCG__WS_ROUTE_BAD &&
        strstr(why, "user"), "empty user is a bad request");
  CHECK(vcg__ws_route("/lobby/alice", user, room, &why) == VCG__WS_ROUTE_BAD,
        "lobby without room is a bad request");
  CHECK(vcg__ws_route("/lobby", user, room, &why) == VCG__WS_ROUTE_BAD,
        "bare /lobby is a bad request");
  CHECK(vcg__ws_route("/lobby/a/b/c", user, room, &why) == VCG__WS_ROUTE_BAD,
        "extra path components are a bad request");
  memset(longname, 'x', sizeof(longname) - 1);
  longname[sizeof(longname) - 1] = '\0';
  {
    char path[sizeof(longname) + 16];
    strcpy(path, "/lobby/a/");
    strcat(path, longname);
    CHECK(vcg__ws_route(path, user, room, &why) == VCG__WS_ROUTE_BAD && strstr(why, "long"),
          "overlong room is a bad request, not an overflow");
  }
  CHECK(vcg__ws_route("/lobbyx/a/b", user, room, &why) == VCG__WS_ROUTE_NOT_FOUND,
        "/lobbyx is another path: not found");
  CHECK(vcg__ws_route("/", user, room, &why) == VCG__WS_ROUTE_NOT_FOUND, "/ is not found");

  CHECK(vcg__ws_close_code(VCG_CLOSE_NORMAL) == 1000, "NORMAL closes 1000");
  CHECK(vcg__ws_close_code(VCG_CLOSE_BAD_REQUEST) == 1008 &&
        vcg__ws_close_code(VCG_CLOSE_FORBIDDEN) == 1008 &&
        vcg__ws_close_code(VCG_CLOSE_SLOW) == 1008, "BAD_REQUEST/FORBIDDEN/SLOW close 1008");
  CHECK(vcg__ws_close_code(VCG_CLOSE_TOO_BIG) == 1009, "TOO_BIG closes 1009");
  CHECK(vcg__ws_close_code(VCG_CLOSE_LIMIT) == 1013 &&
        vcg__ws_close_code(VCG_CLOSE_OVERLOAD) == 1013, "LIMIT/OVERLOAD close 1013");
  CHECK(vcg__ws_close_code(VCG_CLOSE_SHUTDOWN) == 1001 &&
        vcg__ws_close_code(VCG_CLOSE_IDLE) == 1001, "SHUTDOWN/IDLE close 1001");
  CHECK(vcg__ws_close_code(VCG_CLOSE_INTERNAL) == 1011, "INTERNAL closes 1011");
  CHECK(vcg__ws_http_status(VCG_CLOSE_BAD_REQUEST) == 400 &&
        vcg__ws_http_status(VCG_CLOSE_FORBIDDEN) == 403 &&
        vcg__ws_http_status(VCG_CLOSE_LIMIT) == 429 &&
        vcg__ws_http_status(VCG_CLOSE_OVERLOAD) == 503 &&
        vcg__ws_http_status(VCG_CLOSE_SHUTDOWN) == 503, "refusals map to 400/403/429/503");
  return TAP_DONE();
}
