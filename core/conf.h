/* Configuration: libconfig files checked against option tables.
 *
 * Every option, the core's and each plugin's, is declared in a
 * vcg_option_t table and parsed by the same typed setters, so errors read
 * the same everywhere: "file:line: option: reason".  Unknown options are
 * errors.  A configuration is a value: load it, check it, then hand it to a
 * running process (or throw it away after `-t`). */
#ifndef VCG_CONF_H
#define VCG_CONF_H
#include <libconfig.h>
#include <stddef.h>
#include "vcgate/plugin.h"
#include "jwt.h"
#include "loader.h"

/* A growable list of error lines. */
typedef struct vcg__errs {
  char **line;
  size_t n, cap;
} vcg__errs_t;

void vcg__errs_add(vcg__errs_t *e, const char *fmt, ...) VCG_PRINTF(2, 3);
void vcg__errs_free(vcg__errs_t *e);

/* Fill conf (zeroed by the caller, the size the table implies) from group
 * (may be NULL: all defaults).  Keys listed in `reserved` are skipped.
 * `where` prefixes option names in messages (e.g. "core." or
 * "transports[0]."); `file` names the source when libconfig has none.
 * Returns the number of errors added. */
int vcg__conf_fill(const vcg_option_t *opts, const config_setting_t *group,
                   void *conf, const char *const *reserved, const char *where,
                   const char *file, vcg__errs_t *errs);
/* Free the strings and lists the setters allocated. */
void vcg__conf_release(const vcg_option_t *opts, void *conf);

/* The core's own options (group `core`). */
typedef struct vcg__core_conf {
  int64_t workers;
  char *log_level;
  char *log_format;
  char *plugin_dir;
  int64_t max_connections;
  int64_t max_connections_per_ip;
  char **trusted_addresses;
  int64_t max_sessions_per_room;
  int64_t max_message_size;
  int64_t queue_max_bytes;
  int64_t queue_max_packets;
  int64_t slow_consumer_timeout;
  int64_t drain_delay;
  int64_t drain_timeout;
  int64_t max_user_length;
  int64_t max_room_length;
  int64_t max_video_delay;
  int64_t max_audio_delay;
  char **jwt_secret;
  char *jwt_secret_file;
  char *jwt_issuer;
  int64_t jwt_leeway;
  int require_token;
  int enforce_identity;
} vcg__core_conf_t;

extern const vcg_option_t vcg__core_options[];

/* One plugin instance from `transports` or `bus`. */
typedef struct vcg__plugin_conf {
  char *plugin;            /* plugin name */
  char *name;              /* instance name (defaults to plugin) */
  vcg__plugin_t *loaded;   /* owned */
  void *conf;              /* conf_size bytes, filled from the table */
} vcg__plugin_conf_t;

typedef struct vcg__config {
  char *file;                      /* "<default>" for the embedded config */
  vcg__core_conf_t core;
  vcg__plugin_conf_t *transports;
  size_t ntransports;
  vcg__plugin_conf_t bus;          /* bus.loaded NULL: none configured */
  /* Room-token secrets, from core.jwt_secret_file, core.jwt_secret or the
   * environment variable JWT_SECRET, in that order: read when the
   * configuration is loaded (at start and on every reload). */
  vcg__jwt_keys_t jwt_keys;
  const char *jwt_keys_from;       /* where they came from, for the log */
  char *admin_listen;              /* core.admin.listen; NULL: no admin listener */
} vcg__config_t;

/* The options of the core.admin group. */
extern const vcg_option_t vcg__admin_options[];

/* Parse a config from a file (path != NULL) or from text.  Plugins are
 * looked up in search_dirs (NULL-terminated, tried first) and then in
 * core.plugin_dir.  Returns 0 or the number of errors (listed in errs). */
int vcg__config_load(vcg__config_t *c, const char *path, const char *text,
                     const char *const *search_dirs, vcg__errs_t *errs);
void vcg__config_free(vcg__config_t *c);

/* The embedded default configuration. */
extern const char vcg__default_config[];
#endif
