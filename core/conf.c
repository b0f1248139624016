#include "conf.h"
#include "log.h"
#include "connlimit.h"
#include "admin.h"
#include <gnutls/gnutls.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


void vcg__errs_add(vcg__errs_t *e, const char *fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (e->n == e->cap) {
    size_t cap = e->cap ? e->cap * 2 : 8;
    char **nl = realloc(e->line, cap * sizeof *nl);
    if (!nl) return; /* the error count still reaches the caller */
    e->line = nl;
    e->cap = cap;
  }
  char *s = strdup(buf);
  if (s) e->line[e->n++] = s;
}

void vcg__errs_free(vcg__errs_t *e) {
  for (size_t i = 0; i < e->n; i++) free(e->line[i]);
  free(e->line);
  memset(e, 0, sizeof *e);
}

#define S(field) offsetof(vcg__core_conf_t, field)
const vcg_option_t vcg__core_options[] = {
  { "workers", VCG_OPT_INT, S(workers), 1, NULL, 1, 64,
    "worker loops (threads), each with its own listeners" },
  { "log_level", VCG_OPT_STRING, S(log_level), 0, "info", 1, 16,
    "error, warn, info or debug" },
  { "log_format", VCG_OPT_STRING, S(log_format), 0, "plain", 1, 16, "plain or json" },
  { "plugin_dir", VCG_OPT_STRING, S(plugin_dir), 0, VCG_PLUGIN_DIR, 1, 4096,
    "where plugins named without a path are found" },
  { "max_connections", VCG_OPT_INT, S(max_connections), 20000, NULL, 1, 10000000,
    "connections in the whole process (pre-upgrade sockets and half-open QUIC included)" },
  { "max_connections_per_ip", VCG_OPT_INT, S(max_connections_per_ip), 200, NULL, 1, 10000000,
    "connections from one client address (trusted addresses are exempt)" },
  { "trusted_addresses", VCG_OPT_STRLIST, S(trusted_addresses), 0, "127.0.0.0/8,::1", 0, 0,
    "CIDR list exempt from the per-IP limit" },
  { "max_sessions_per_room", VCG_OPT_INT, S(max_sessions_per_room), 1000, NULL, 2, 1000000,
    "sessions in one room on one worker loop" },
  { "max_message_size", VCG_OPT_INT, S(max_message_size), 1048576, NULL, 64, 67108864,
    "largest inbound packet in bytes (WebSocket close 1009 above)" },
  { "queue_max_bytes", VCG_OPT_INT, S(queue_max_bytes), 4194304, NULL, 4096, 1073741824,
    "per-session output queue budget in bytes" },
  { "queue_max_packets", VCG_OPT_INT, S(queue_max_packets), 4096, NULL, 16, 10000000,
    "per-session output queue budget in packets" },
  { "slow_consumer_timeout", VCG_OPT_INT, S(slow_consumer_timeout), 5000, NULL, 100, 3600000,
    "ms a session may keep dropping packets before it is closed" },
  { "drain_delay", VCG_OPT_INT, S(drain_delay), 0, NULL, 0, 600000,
    "ms between SIGTERM (/readyz 503) and closing the clients, for load balancers to notice" },
  { "drain_timeout", VCG_OPT_INT, S(drain_timeout), 5000, NULL, 0, 600000,
    "ms SIGTERM waits for clients to leave before stopping" },
  { "max_user_length", VCG_OPT_INT, S(max_user_length), 256, NULL, 1, 4096,
    "longest identity in bytes" },
  { "max_room_length", VCG_OPT_INT, S(max_room_length), 255, NULL, 1, 255,
    "longest room name in bytes (videocall.rs allows 255)" },
  { "max_video_delay", VCG_OPT_INT, S(max_video_delay), 150, NULL, 10, 60000,
    "ms a queued video or screen packet may wait; older ones are dropped, not sent late" },
  { "max_audio_delay", VCG_OPT_INT, S(max_audio_delay), 500, NULL, 10, 60000,
    "ms a queued audio packet may wait before it is dropped" },
  { "jwt_secret", VCG_OPT_STRLIST, S(jwt_secret), 0, NULL, 0, 0,
    "HS256 secret(s) for /lobby?token= (a list: the first signs, all verify)" },
  { "jwt_secret_file", VCG_OPT_STRING, S(jwt_secret_file), 0, NULL, 1, 4096,
    "file with one HS256 secret per line, read at start and on reload (wins over jwt_secret and JWT_SECRET)" },
  { "jwt_issuer", VCG_OPT_STRING, S(jwt_issuer), 0, "videocall-meeting-backend", 1, 255,
    "the iss every room token must carry" },
  { "jwt_leeway", VCG_OPT_INT, S(jwt_leeway), 60000, NULL, 0, 3600000,
    "ms of clock skew allowed for a token's exp and nbf" },
  { "require_token", VCG_OPT_BOOL, S(require_token), 0, NULL, 0, 1,
    "refuse /lobby/{user}/{room} with 410 Gone: room tokens only" },
  { "enforce_identity", VCG_OPT_BOOL, S(enforce_identity), 1, NULL, 0, 1,
    "drop client packets whose user_id is not the session's identity" },
  VCG_OPTION_END
};
#undef S

typedef struct { char *listen; } admin_conf_t;
const vcg_option_t vcg__admin_options[] = {
  VCG_OPTION_STRING(admin_conf_t, listen, "listen", NULL,
                    "admin HTTP listener (/metrics, /livez, /readyz, /version): \"host:port\""),
  VCG_OPTION_END
};

const char vcg__default_config[] =
  "# vcgate embedded default: loopback only, both transports, in-process bus,\n"
  "# the admin listener (metrics, health) on 127.0.0.1:9090.\n"
  "core = { workers = 1; admin = { listen = \"127.0.0.1:9090\"; }; };\n"
  "transports = (\n"
  "  { plugin = \"websocket\"; listen = \"127.0.0.1:8080\"; }\n"
#ifdef VCG_DEFAULT_WEBTRANSPORT
  "  ,{ plugin = \"webtransport\"; listen = \"127.0.0.1:4433\"; }\n"
#endif
  ");\n"
  "bus = { plugin = \"inproc\"; };\n";

static const char *src_file(const config_setting_t *s, const char *fallback) {
  const char *f = s ? config_setting_source_file(s) : NULL;
  return f ? f : fallback;
}

static int is_reserved(const char *name, const char *const *reserved) {
  for (size_t i = 0; reserved && reserved[i]; i++)
    if (strcmp(name, reserved[i]) == 0) return 1;
  return 0;
}

static void **field(void *conf, const vcg_option_t *o) {
  return (void **)((char *)conf + o->offset);
}

/* A STRLIST default is written as one comma-separated string. */
static char **split_default(const char *s) {
  size_t n = 1;
  for (const char *p = s; *p; p++) n += *p == ',';
  char **v = calloc(n + 1, sizeof *v);
  if (!v) return NULL;
  size_t i = 0;
  const char *start = s;
  for (const char *p = s;; p++) {
    if (*p == ',' || *p == '\0') {
      if (p > start) v[i++] = strndup(start, (size_t)(p - start));
      if (!*p) break;
      start = p + 1;
    }
  }
  return v;
}

static void set_default(void *conf, const vcg_option_t *o) {
  switch (o->type) {
  case VCG_OPT_INT: *(int64_t *)field(conf, o) = o->def_int; break;
  case VCG_OPT_BOOL: *(int *)field(conf, o) = (int)o->def_int; break;
  case VCG_OPT_STRING: *(char **)field(conf, o) = o->def_str ? strdup(o->def_str) : NULL; break;
  case VCG_OPT_STRLIST:
    *(char ***)field(conf, o) = o->def_str ? split_default(o->def_str) : calloc(1, sizeof(char *));
    break;
  default: break;
  }
}

static int set_value(void *conf, const vcg_option_t *o, const config_setting_t *s,
                     const char *where, const char *file, vcg__errs_t *errs) {
  int line = config_setting_source_line(s);
  const char *f = src_file(s, file);
  int t = config_setting_type(s);
  switch (o->type) {
  case VCG_OPT_INT: {
    if (t != CONFIG_TYPE_INT && t != CONFIG_TYPE_INT64) {
      vcg__errs_add(errs, "%s:%d: %s%s: expected an integer", f, line, where, o->name);
      return 1;
    }
    int64_t v = config_setting_get_int64(s);
    if (v < o->min || v > o->max) {
      vcg__errs_add(errs, "%s:%d: %s%s: %lld is out of range [%lld, %lld]", f, line, where,
                    o->name, (long long)v, (long long)o->min, (long long)o->max);
      return 1;
    }
    *(int64_t *)field(conf, o) = v;
    return 0;
  }
  case VCG_OPT_BOOL:
    if (t != CONFIG_TYPE_BOOL) {
      vcg__errs_add(errs, "%s:%d: %s%s: expected true or false", f, line, where, o->name);
      return 1;
    }
    *(int *)field(conf, o) = config_setting_get_bool(s);
    return 0;
  case VCG_OPT_STRING: {
    if (t != CONFIG_TYPE_STRING) {
      vcg__errs_add(errs, "%s:%d: %s%s: expected a string", f, line, where, o->name);
      return 1;
    }
    const char *v = config_setting_get_string(s);
    size_t len = strlen(v);
    if ((int64_t)len < o->min || (o->max && (int64_t)len > o->max)) {
      vcg__errs_add(errs, "%s:%d: %s%s: length %zu is out of range [%lld, %lld]", f, line,
                    where, o->name, len, (long long)o->min, (long long)o->max);
      return 1;
    }
    char **dst = (char **)field(conf, o);
    free(*dst);
    *dst = strdup(v);
    return 0;
  }
  case VCG_OPT_STRLIST: {
    int n = 1;
    if (t == CONFIG_TYPE_LIST || t == CONFIG_TYPE_ARRAY) n = config_setting_length(s);
    else if (t != CONFIG_TYPE_STRING) {
      vcg__errs_add(errs, "%s:%d: %s%s: expected a string or a list of strings", f, line,
                    where, o->name);
      return 1;
    }
    char **v = calloc((size_t)n + 1, sizeof *v);
    if (!v) return 1;
    for (int i = 0; i < n; i++) {
      const config_setting_t *e = t == CONFIG_TYPE_STRING ? s : config_setting_get_elem(s, (unsigned)i);
      if (!e || config_setting_type(e) != CONFIG_TYPE_STRING) {
        vcg__errs_add(errs, "%s:%d: %s%s: element %d is not a string", f, line, where, o->name, i);
        for (int j = 0; j < i; j++) free(v[j]);
        free(v);
        return 1;
      }
      v[i] = strdup(config_setting_get_string(e));
    }
    char ***dst = (char ***)field(conf, o);
    if (*dst) { for (char **p = *dst; *p; p++) free(*p); free(*dst); }
    *dst = v;
    return 0;
  }
  default:
    return 1;
  }
}

int vcg__conf_fill(const vcg_option_t *opts, const config_setting_t *group,
                   void *conf, const char *const *reserved, const char *where,
                   const char *file, vcg__errs_t *errs) {
  int nerr = 0;
  for (const vcg_option_t *o = opts; o && o->name; o++) set_default(conf, o);
  if (!group) return 0;
  if (config_setting_type(group) != CONFIG_TYPE_GROUP) {
    vcg__errs_add(errs, "%s:%d: %s: expected a group { ... }", src_file(group, file),
                  config_setting_source_line(group), where);
    return 1;
  }
  int n = config_setting_length(group);
  for (int i = 0; i < n; i++) {
    const config_setting_t *s = config_setting_get_elem(group, (unsigned)i);
    const char *name = config_setting_name(s);
    if (is_reserved(name, reserved)) continue;
    const vcg_option_t *o = opts;
    while (o && o->name && strcmp(o->name, name) != 0) o++;
    if (!o || !o->name) {
      vcg__errs_add(errs, "%s:%d: %s%s: unknown option", src_file(s, file),
                    config_setting_source_line(s), where, name);
      nerr++;
      continue;
    }
    nerr += set_value(conf, o, s, where, file, errs);
  }
  return nerr;
}

void vcg__conf_release(const vcg_option_t *opts, void *conf) {
  if (!conf) return;
  for (const vcg_option_t *o = opts; o && o->name; o++) {
    if (o->type == VCG_OPT_STRING) {
      free(*(char **)field(conf, o));
      *(char **)field(conf, o) = NULL;
    } else if (o->type == VCG_OPT_STRLIST) {
      char **v = *(char ***)field(conf, o);
      for (char **p = v; p && *p; p++) free(*p);
      free(v);
      *(char ***)field(conf, o) = NULL;
    }
  }
}

static const char *const plugin_reserved[] = { "plugin", "path", "name", NULL };

/* Load one plugin instance group: find the .so, check its ABI, fill its
 * option table and run its own cross-option check. */
static int load_instance(vcg__plugin_conf_t *pc, const config_setting_t *g, int kind,
                         const char *where, const char *file, const char *const *dirs,
                         vcg__errs_t *errs) {
  int line = config_setting_source_line(g);
  const char *f = src_file(g, file);
  if (config_setting_type(g) != CONFIG_TYPE_GROUP) {
    vcg__errs_add(errs, "%s:%d: %s: expected a group { plugin = \"...\"; ... }", f, line, where);
    return 1;
  }
  const char *plugin = NULL, *path = NULL, *name = NULL;
  config_setting_lookup_string(g, "plugin", &plugin);
  config_setting_lookup_string(g, "path", &path);
  config_setting_lookup_string(g, "name", &name);
  if (!plugin && !path) {
    vcg__errs_add(errs, "%s:%d: %splugin: missing (name the plugin, or give its path)", f, line, where);
    return 1;
  }
  char found[4096], err[1024];
  if (!path) {
    if (vcg__plugin_find(plugin, dirs, found, sizeof found) != 0) {
      vcg__errs_add(errs, "%s:%d: %splugin: '%s' not found (looked for %s.so in the plugin path)",
                    f, line, where, plugin, plugin);
      return 1;
    }
    path = found;
  }
  if (vcg__plugin_load(path, kind, &pc->loaded, err, sizeof err) != 0) {
    vcg__errs_add(errs, "%s:%d: %splugin: %s", f, line, where, err);
    return 1;
  }
  const vcg_plugin_t *d = pc->loaded->desc;
  if (plugin && strcmp(plugin, d->name) != 0) {
    vcg__errs_add(errs, "%s:%d: %splugin: '%s' names itself '%s'", f, line, where, plugin, d->name);
    return 1;
  }
  for (const vcg_option_t *o = d->options; o && o->name; o++) {
    if (is_reserved(o->name, plugin_reserved)) {
      vcg__errs_add(errs, "%s:%d: %splugin: '%s' declares an option named '%s', which the host "
                    "reserves (plugin, path, name)", f, line, where, d->name, o->name);
      return 1;
    }
  }
  pc->plugin = strdup(d->name);
  pc->name = strdup(name ? name : d->name);
  pc->conf = calloc(1, d->conf_size ? d->conf_size : 1);
  if (!pc->plugin || !pc->name || !pc->conf) {
    vcg__errs_add(errs, "%s:%d: %s: out of memory", f, line, where);
    return 1;
  }
  int nerr = vcg__conf_fill(d->options, g, pc->conf, plugin_reserved, where, file, errs);
  if (!nerr && pc->loaded->ops.configure) {
    err[0] = '\0';
    if (pc->loaded->ops.configure(pc->conf, err, sizeof err) != 0) {
      vcg__errs_add(errs, "%s:%d: %s%s", f, line, where, err[0] ? err : "rejected by the plugin");
      nerr++;
    }
  }
  return nerr;
}

/* The room-token secrets (see vcg__config_t.jwt_keys). */
static int load_jwt_keys(vcg__config_t *c, config_t *cfg, const char *file, vcg__errs_t *errs) {
  const vcg__core_conf_t *cc = &c->core;
  int have_list = cc->jwt_secret && cc->jwt_secret[0];
  if (cc->jwt_secret_file && have_list) {
    const config_setting_t *s = config_lookup(cfg, "core.jwt_secret_file");
    vcg__errs_add(errs, "%s:%d: core.jwt_secret_file: set either jwt_secret or jwt_secret_file",
                  src_file(s, file), s ? config_setting_source_line(s) : 0);
    return 1;
  }
  if (cc->jwt_secret_file) {
    const config_setting_t *s = config_lookup(cfg, "core.jwt_secret_file");
    FILE *f = fopen(cc->jwt_secret_file, "r");
    if (!f) {
      vcg__errs_add(errs, "%s:%d: core.jwt_secret_file: cannot read %s: %s", src_file(s, file),
                    s ? config_setting_source_line(s) : 0, cc->jwt_secret_file, strerror(errno));
      return 1;
    }
    char line[4096];
    int bad = 0;
    while (fgets(line, sizeof line, f)) {
      size_t n = strlen(line);
      while (n && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' ')) line[--n] = '\0';
      if (n && vcg__jwt_keys_add(&c->jwt_keys, line, n) != 0) bad = 1;
    }
    gnutls_memset(line, 0, sizeof line);
    fclose(f);
    if (bad || c->jwt_keys.n == 0) {
      vcg__errs_add(errs, "%s:%d: core.jwt_secret_file: %s holds no secret (one per line)",
                    src_file(s, file), s ? config_setting_source_line(s) : 0, cc->jwt_secret_file);
      return 1;
    }
    c->jwt_keys_from = "core.jwt_secret_file";
    return 0;
  }
  for (char **k = cc->jwt_secret; k && *k; k++) {
    if (!**k) {
      const config_setting_t *s = config_lookup(cfg, "core.jwt_secret");
      vcg__errs_add(errs, "%s:%d: core.jwt_secret: an empty secret", src_file(s, file),
                    s ? config_setting_source_line(s) : 0);
      return 1;
    }
    if (vcg__jwt_keys_add(&c->jwt_keys, *k, strlen(*k)) != 0) return 1;
    c->jwt_keys_from = "core.jwt_secret";
  }
  const char *env = getenv("JWT_SECRET");
  if (!c->jwt_keys.n && env && *env) {
    if (vcg__jwt_keys_add(&c->jwt_keys, env, strlen(env)) != 0) return 1;
    c->jwt_keys_from = "JWT_SECRET";
  }
  if (cc->require_token && !c->jwt_keys.n) {
    const config_setting_t *s = config_lookup(cfg, "core.require_token");
    vcg__errs_add(errs, "%s:%d: core.require_token: no secret to verify tokens with (jwt_secret, "
                  "jwt_secret_file or JWT_SECRET)", src_file(s, file), s ? config_setting_source_line(s) : 0);
    return 1;
  }
  return 0;
}

int vcg__config_load(vcg__config_t *c, const char *path, const char *text,
                     const char *const *search_dirs, vcg__errs_t *errs) {
  memset(c, 0, sizeof *c);
  c->file = strdup(path ? path : "<default>");
  config_t cfg;
  config_init(&cfg);
  int ok = path ? config_read_file(&cfg, path) : config_read_string(&cfg, text);
  if (!ok) {
    if (config_error_type(&cfg) == CONFIG_ERR_FILE_IO)
      vcg__errs_add(errs, "%s: cannot read: %s", c->file, strerror(errno));
    else
      vcg__errs_add(errs, "%s:%d: syntax error: %s",
                    config_error_file(&cfg) ? config_error_file(&cfg) : c->file,
                    config_error_line(&cfg), config_error_text(&cfg));
    config_destroy(&cfg);
    return 1;
  }
  int nerr = 0;
  const char *file = c->file;
  config_setting_t *root = config_root_setting(&cfg);
  for (int i = 0; i < config_setting_length(root); i++) {
    config_setting_t *s = config_setting_get_elem(root, (unsigned)i);
    const char *n = config_setting_name(s);
    if (strcmp(n, "core") && strcmp(n, "transports") && strcmp(n, "bus")) {
      vcg__errs_add(errs, "%s:%d: %s: unknown option (top level has core, transports, bus)",
                    src_file(s, file), config_setting_source_line(s), n);
      nerr++;
    }
  }
  static const char *const core_groups[] = { "admin", NULL };
  nerr += vcg__conf_fill(vcg__core_options, config_lookup(&cfg, "core"), &c->core, core_groups,
                         "core.", file, errs);
  admin_conf_t ac = { NULL };
  nerr += vcg__conf_fill(vcg__admin_options, config_lookup(&cfg, "core.admin"), &ac, NULL,
                         "core.admin.", file, errs);
  c->admin_listen = ac.listen;
  if (ac.listen) {
    struct sockaddr_storage ss;
    if (vcg__admin_parse_listen(ac.listen, &ss) != 0) {
      const config_setting_t *s = config_lookup(&cfg, "core.admin.listen");
      vcg__errs_add(errs, "%s:%d: core.admin.listen: expected \"host:port\" or \"[v6addr]:port\", "
                    "got \"%s\"", src_file(s, file), s ? config_setting_source_line(s) : 0, ac.listen);
      nerr++;
    }
  }
  /* Settings whose value is one of a few words: checked here, with the
   * line of the setting when the file has one. */
  struct { const char *path, *val, *choices; int ok; } words[] = {
    { "core.log_level", c->core.log_level, "error, warn, info, debug",
      c->core.log_level && vcg__log_parse_level(c->core.log_level) >= 0 },
    { "core.log_format", c->core.log_format, "plain, json",
      c->core.log_format && vcg__log_parse_format(c->core.log_format) >= 0 },
  };
  for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
    if (words[i].ok) continue;
    const config_setting_t *ws = config_lookup(&cfg, words[i].path);
    vcg__errs_add(errs, "%s:%d: %s: '%s' is not one of %s", src_file(ws, file),
                  ws ? config_setting_source_line(ws) : 0, words[i].path,
                  words[i].val ? words[i].val : "", words[i].choices);
    nerr++;
  }
  for (char **a = c->core.trusted_addresses; a && *a; a++) {
    vcg__cidr_t cidr;
    if (vcg__cidr_parse(*a, &cidr) != 0) {
      const config_setting_t *ts = config_lookup(&cfg, "core.trusted_addresses");
      vcg__errs_add(errs, "%s:%d: core.trusted_addresses: '%s' is not an address or CIDR",
                    src_file(ts, file), ts ? config_setting_source_line(ts) : 0, *a);
      nerr++;
    }
  }
  nerr += load_jwt_keys(c, &cfg, file, errs);
  /* Plugin search path: the caller's dirs first, then core.plugin_dir. */
  size_t nd = 0;
  while (search_dirs && search_dirs[nd]) nd++;
  const char **dirs = calloc(nd + 2, sizeof *dirs);
  if (!dirs) { config_destroy(&cfg); return nerr + 1; }
  for (size_t i = 0; i < nd; i++) dirs[i] = search_dirs[i];
  dirs[nd] = c->core.plugin_dir;

  config_setting_t *tl = config_lookup(&cfg, "transports");
  if (!tl) {
    vcg__errs_add(errs, "%s: transports: missing (a gateway needs at least one transport)", file);
    nerr++;
  } else if (config_setting_type(tl) != CONFIG_TYPE_LIST) {
    vcg__errs_add(errs, "%s:%d: transports: expected a list ( {...}, {...} )",
                  src_file(tl, file), config_setting_source_line(tl));
    nerr++;
  } else {
    int n = config_setting_length(tl);
    if (n == 0) {
      vcg__errs_add(errs, "%s:%d: transports: empty list", src_file(tl, file),
                    config_setting_source_line(tl));
      nerr++;
    }
    c->transports = calloc((size_t)n ? (size_t)n : 1, sizeof *c->transports);
    c->ntransports = (size_t)n;
    for (int i = 0; c->transports && i < n; i++) {
      char where[64];
      snprintf(where, sizeof where, "transports[%d].", i);
      nerr += load_instance(&c->transports[i], config_setting_get_elem(tl, (unsigned)i),
                            VCG_PLUGIN_TRANSPORT, where, file, dirs, errs);
      for (int j = 0; j < i && c->transports[i].name; j++) {
        if (c->transports[j].name && strcmp(c->transports[j].name, c->transports[i].name) == 0) {
          config_setting_t *e = config_setting_get_elem(tl, (unsigned)i);
          vcg__errs_add(errs, "%s:%d: %sname: duplicate instance name '%s' (set name = \"...\")",
                        src_file(e, file), config_setting_source_line(e), where,
                        c->transports[i].name);
          nerr++;
        }
      }
    }
  }
  config_setting_t *bg = config_lookup(&cfg, "bus");
  if (bg) nerr += load_instance(&c->bus, bg, VCG_PLUGIN_BUS, "bus.", file, dirs, errs);
  free(dirs);
  config_destroy(&cfg);
  return nerr;
}

static void release_instance(vcg__plugin_conf_t *pc) {
  if (pc->loaded) {
    vcg__conf_release(pc->loaded->desc->options, pc->conf);
    vcg__plugin_unload(pc->loaded);
  }
  free(pc->conf);
  free(pc->plugin);
  free(pc->name);
  memset(pc, 0, sizeof *pc);
}

void vcg__config_free(vcg__config_t *c) {
  for (size_t i = 0; i < c->ntransports; i++) release_instance(&c->transports[i]);
  free(c->transports);
  release_instance(&c->bus);
  vcg__conf_release(vcg__core_options, &c->core);
  vcg__jwt_keys_free(&c->jwt_keys);
  free(c->admin_listen);
  free(c->file);
  memset(c, 0, sizeof *c);
}
