/* The lobby grammar (core/lobby.c): what every transport's clients can
 * open, and the one answer each malformed URL gets. */
#include <string.h>
#include "lobby.h"
#include "vcgate/plugin.h"
#include "tap.h"

static const vcg__lobby_conf_t conf = { 256, 255 };
static vcg__lobby_req_t req;
static char msg[256];
static int why;

/* Parse target; returns the HTTP status the transports would answer. */
static int status(const char *target) {
  why = -1;
  msg[0] = '\0';
  if (vcg__lobby_parse(&conf, target, &req, &why, msg, sizeof msg) == 0) return 200;
  return vcg_close_http_status(why);
}

TEST(legacy_path) {
  CHECK_EQ(status("/lobby/alice/standup"), 200);
  CHECK_STREQ(req.user, "alice");
  CHECK_STREQ(req.room, "standup");
  CHECK(req.token == NULL, "no token on the legacy path");
}

TEST(legacy_decodes_segments_after_splitting) {
  CHECK_EQ(status("/lobby/a%40b.c/r%2D1"), 200);
  CHECK_STREQ(req.user, "a@b.c");
  CHECK_STREQ(req.room, "r-1");
  CHECK_EQ(status("/lobby/a%2Fb/room"), 400); /* an encoded '/' is part of the name */
  CHECK(strstr(msg, "identity") != NULL, "the reason names the identity: %s", msg);
}

TEST(space_becomes_underscore) {
  CHECK_EQ(status("/lobby/alice%20smith/daily%20standup"), 200);
  CHECK_STREQ(req.user, "alice_smith");
  CHECK_STREQ(req.room, "daily_standup");
}

TEST(plus_stays_plus) {
  CHECK_EQ(status("/lobby/alice+1@x.org/r"), 200);
  CHECK_STREQ(req.user, "alice+1@x.org");
}

TEST(query_ignored_on_legacy_path) {
  CHECK_EQ(status("/lobby/alice/r?x=1&token=zzz"), 200);
  CHECK(req.token == NULL, "the legacy path takes no token");
}

TEST(not_the_lobby_is_404) {
  CHECK_EQ(status("/"), 404);
  CHECK_EQ(status("/lobbyx/a/b"), 404);
  CHECK_EQ(status("/foo/lobby/a/b"), 404);
  CHECK_EQ(status(""), 404);
}

TEST(malformed_lobby_is_400) {
  const char *bad[] = { "/lobby", "/lobby/", "/lobby/alice", "/lobby/alice/", "/lobby//room",
                        "/lobby/a/b/c", "/lobby/a/b/", "/lobby/%zz/r", "/lobby/a%2/r",
                        "/lobby/a%00b/r", "/lobby/a/r#frag", "/lobby/bad.user!/r",
                        "/lobby/u/bad.room", "/lobby/\xc3\xa9/r" };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    int st = status(bad[i]);
    CHECK(st == 400, "%s -> %d (%s)", bad[i], st, msg);
  }
}

TEST(reserved_identity_is_403) {
  CHECK_EQ(status("/lobby/system-%26%5E%25%24%23%40%21/r"), 403);
}

TEST(room_length_limit) {
  char t[400], room[300];
  memset(room, 'r', 255);
  room[255] = '\0';
  snprintf(t, sizeof t, "/lobby/u/%s", room);
  CHECK_EQ(status(t), 200);
  room[255] = 'r';
  room[256] = '\0';
  snprintf(t, sizeof t, "/lobby/u/%s", room);
  CHECK_EQ(status(t), 400);
}

TEST(token_extracted) {
  CHECK_EQ(status("/lobby?token=eyJ.abc.def"), 200);
  CHECK(req.token && strcmp(req.token, "eyJ.abc.def") == 0, "the token is returned");
  CHECK_EQ(req.token_len, 11);
  CHECK_EQ(status("/lobby?a=1&token=t%2Dx&b"), 200);
  CHECK_STREQ(req.token, "t-x");
}

TEST(token_errors_are_400) {
  CHECK_EQ(status("/lobby?token="), 400);
  CHECK_EQ(status("/lobby?token=a&token=b"), 400);
  CHECK_EQ(status("/lobby?x=1"), 400);
  CHECK_EQ(status("/lobby/?token=a"), 400);
  CHECK_EQ(status("/lobby?token=%zz"), 400);
  static char t[20000];
  strcpy(t, "/lobby?token=");
  memset(t + 13, 'a', 5000);
  t[13 + 5000] = '\0';
  CHECK_EQ(status(t), 400);
  CHECK(strstr(msg, "too long") != NULL, "the reason says too long: %s", msg);
}

TEST(pct_decode_bounds) {
  char out[4];
  CHECK_EQ(vcg__pct_decode(out, sizeof out, "abc", 3, '_'), 3);
  CHECK_EQ(vcg__pct_decode(out, sizeof out, "abcd", 4, '_'), -1);
  CHECK_EQ(vcg__pct_decode(out, sizeof out, "%4", 2, '_'), -1);
  CHECK_EQ(vcg__pct_decode(out, sizeof out, "%41", 3, '_'), 1);
  CHECK_STREQ(out, "A");
}

int main(void) {
  RUN(legacy_path, "/lobby/{user}/{room} gives identity and room");
  RUN(legacy_decodes_segments_after_splitting, "segments are percent-decoded after splitting");
  RUN(space_becomes_underscore, "a space in a legacy segment becomes _ (as videocall.rs)");
  RUN(plus_stays_plus, "a raw + stays + in an identity");
  RUN(query_ignored_on_legacy_path, "the query of a legacy path is ignored");
  RUN(not_the_lobby_is_404, "a path that is not the lobby is 404");
  RUN(malformed_lobby_is_400, "every malformed lobby URL is 400 with a reason");
  RUN(reserved_identity_is_403, "the reserved system identity is 403");
  RUN(room_length_limit, "room names up to 255 characters are valid");
  RUN(token_extracted, "/lobby?token= yields the decoded token");
  RUN(token_errors_are_400, "empty, repeated, missing, badly encoded or long tokens are 400");
  RUN(pct_decode_bounds, "percent-decoding checks its bounds");
  return TAP_DONE();
}
