/* The lobby grammar (core/lobby.c): what every transport's clients can
 * open, and the one answer each malformed URL gets. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "lobby.h"
#include "vcgate/plugin.h"
#include "tap.h"

static vcg__jwt_keys_t keys;
static vcg__lobby_conf_t conf = { .max_user_length = 256, .max_room_length = 255,
                                  .keys = &keys, .issuer = "videocall-meeting-backend",
                                  .leeway_ms = 60000, .now_ms = 1700000000000 };
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

static char token[8192];

/* A token for sub/room signed with "s3cret", valid for an hour from now. */
static const char *mint(const char *sub, const char *room, int join, int observer) {
  vcg__jwt_claims_t c = { .room_join = join, .observer = observer };
  snprintf(c.sub, sizeof c.sub, "%s", sub);
  snprintf(c.room, sizeof c.room, "%s", room);
  char *t = NULL;
  vcg__jwt_mint((const uint8_t *)"s3cret", 6, "videocall-meeting-backend", &c,
                conf.now_ms / 1000, 3600, &t);
  snprintf(token, sizeof token, "/lobby?token=%s", t ? t : "");
  free(t);
  return token;
}

TEST(token_without_secret_is_500) {
  CHECK_EQ(status("/lobby?token=eyJ.abc.def"), 500);
  CHECK_STREQ(msg, "server misconfigured");
}

TEST(token_joins) {
  vcg__jwt_keys_add(&keys, "s3cret", 6);
  CHECK_EQ(status(mint("alice@x.org", "standup", 1, 0)), 200);
  CHECK_STREQ(req.user, "alice@x.org");
  CHECK_STREQ(req.room, "standup");
  CHECK_EQ(req.observer, 0);
  CHECK_EQ(status(mint("eve", "standup", 0, 1)), 200);
  CHECK_EQ(req.observer, 1);
  /* the token rides in the query, percent-encoded or not, among others */
  char t[9000];
  snprintf(t, sizeof t, "/lobby?a=1&%s&b", mint("bob", "r", 1, 0) + 7);
  CHECK_EQ(status(t), 200);
  CHECK_STREQ(req.user, "bob");
}

TEST(token_refusals) {
  vcg__jwt_keys_add(&keys, "s3cret", 6);
  CHECK_EQ(status(mint("alice", "standup", 0, 0)), 403); /* no access */
  CHECK_EQ(status(mint("alice", "bad.room", 1, 0)), 403);
  CHECK_EQ(status(mint("system-&^%$#@!", "r", 1, 0)), 403);
  conf.now_ms += 2 * 3600 * 1000;
  CHECK_EQ(status(mint("alice", "standup", 1, 0)), 200); /* minted "now" */
  const char *old = mint("alice", "standup", 1, 0);
  conf.now_ms += 2 * 3600 * 1000;
  CHECK_EQ(status(old), 401);
  CHECK_STREQ(msg, "token has expired");
}

TEST(require_token_makes_legacy_gone) {
  conf.require_token = 1;
  CHECK_EQ(status("/lobby/alice/standup"), 410);
}

TEST(token_errors) {
  CHECK_EQ(status("/lobby?token="), 400);
  CHECK_EQ(status("/lobby?token=a&token=b"), 400);
  CHECK_EQ(status("/lobby?x=1"), 400);
  CHECK_EQ(status("/lobby/?token=a"), 400);
  CHECK_EQ(status("/lobby?token=%zz"), 400);
  static char t[20000];
  strcpy(t, "/lobby?token=");
  memset(t + 13, 'a', 5000);
  t[13 + 5000] = '\0';
  CHECK_EQ(status(t), 403); /* a malformed token */
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
  RUN(token_without_secret_is_500, "a token on a server without a secret is 500 server misconfigured");
  RUN(token_joins, "/lobby?token= joins as the token's sub and room, observers flagged");
  RUN(token_refusals, "no access, a bad room, the system identity: 403; expired: 401");
  RUN(require_token_makes_legacy_gone, "with require_token the legacy path is 410 Gone");
  RUN(token_errors, "empty, repeated, missing or badly encoded tokens are 400, long ones 403");
  RUN(pct_decode_bounds, "percent-decoding checks its bounds");
  return TAP_DONE();
}
