/* `vcgate -c FILE --token sub=alice,room=standup[,observer][,host]
 * [,ttl=3600][,name=Alice]`: mint a room token with the configuration's
 * first secret and issuer, for operators, the demo page and tests. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>
#include "tokencmd.h"
#include "jwt.h"
#include "names.h"

int vcg__token_command(const vcg__config_t *cfg, const char *spec) {
  vcg__jwt_claims_t c;
  memset(&c, 0, sizeof c);
  c.room_join = 1;
  long long ttl = 3600;
  char *copy = strdup(spec), *save = NULL;
  if (!copy) return 1;
  for (char *kv = strtok_r(copy, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
    char *eq = strchr(kv, '=');
    const char *v = eq ? eq + 1 : "";
    if (eq) *eq = '\0';
    if (strcmp(kv, "sub") == 0 && eq) snprintf(c.sub, sizeof c.sub, "%s", v);
    else if (strcmp(kv, "room") == 0 && eq) snprintf(c.room, sizeof c.room, "%s", v);
    else if (strcmp(kv, "name") == 0 && eq) snprintf(c.display_name, sizeof c.display_name, "%s", v);
    else if (strcmp(kv, "ttl") == 0 && eq) ttl = strtoll(v, NULL, 10);
    else if (strcmp(kv, "observer") == 0 && !eq) { c.observer = 1; c.room_join = 0; }
    else if (strcmp(kv, "host") == 0 && !eq) c.is_host = 1;
    else {
      fprintf(stderr, "vcgate: --token: unknown item '%s' (sub=, room=, name=, ttl=, observer, host)\n", kv);
      free(copy);
      return 2;
    }
  }
  free(copy);
  const char *why = NULL;
  if (vcg__user_name_check(c.sub, (size_t)cfg->core.max_user_length, &why) != 0 ||
      vcg__room_name_check(c.room, (size_t)cfg->core.max_room_length, &why) != 0) {
    fprintf(stderr, "vcgate: --token: %s (give sub=USER,room=ROOM)\n", why);
    return 2;
  }
  if (ttl <= 0 || ttl > 366LL * 86400) {
    fprintf(stderr, "vcgate: --token: ttl must be 1..31622400 seconds\n");
    return 2;
  }
  if (cfg->jwt_keys.n == 0) {
    fprintf(stderr, "vcgate: --token: %s has no secret (core.jwt_secret, core.jwt_secret_file or "
            "JWT_SECRET)\n", cfg->file);
    return 1;
  }
  uv_timeval64_t tv;
  uv_gettimeofday(&tv);
  char *tok = NULL;
  if (vcg__jwt_mint(cfg->jwt_keys.key[0], cfg->jwt_keys.len[0], cfg->core.jwt_issuer, &c,
                    (int64_t)tv.tv_sec, ttl, &tok) != 0) {
    fprintf(stderr, "vcgate: --token: could not make the token\n");
    return 1;
  }
  printf("%s\n", tok);
  free(tok);
  return 0;
}
