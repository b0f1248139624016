/* vcgate: the command line.  Loads and checks the configuration (plugins
 * included) and prints what was asked (-t, -P, -D, -V, --token), or hands
 * it to the running process (process.c). */
#include <getopt.h>
#include <malloc.h>
#include <sys/resource.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "conf.h"
#include "core.h"
#include "process.h"
#include "reload.h"
#include "tokencmd.h"

#ifndef VCG_VERSION
#define VCG_VERSION PACKAGE_VERSION
#endif

static void usage(FILE *f) {
  fprintf(f,
          "usage: vcgate [-c FILE] [-t] [-l LEVEL] [-p DIR] [-P NAME] [-D] [-V] [-h]\n"
          "       vcgate [-c FILE] --token sub=USER,room=ROOM[,name=NAME][,observer][,host][,ttl=SECS]\n"
          "  -c FILE   configuration file (libconfig); without it the embedded default\n"
          "            runs (WebSocket on 127.0.0.1:8080, WebTransport on 127.0.0.1:4433\n"
          "            when built, in-process bus)\n"
          "  -t        check the configuration, print file:line: option: reason for\n"
          "            each problem, and exit (0 when valid)\n"
          "  -l LEVEL  log level override: error, warn, info, debug\n"
          "  -p DIR    look for plugins in DIR first (repeatable; also the colon-\n"
          "            separated VCGATE_PLUGIN_PATH)\n"
          "  -D        print the embedded default configuration and exit\n"
          "  -P NAME   print the options of plugin NAME (or \"core\") with defaults\n"
          "  -V        print the version and exit\n"
          "  --token   print a room token signed with the configuration's first secret\n"
          "            (a client opens /lobby?token=...); ttl defaults to 3600 s\n"
          "  -h        this help\n");
}

/* Print an option table as libconfig settings with their defaults, ranges
 * and docs: the reference for `vcgate -P NAME`, the README and
 * vcgate.conf(5).  " (restart)" marks an option a SIGHUP cannot change. */
static void print_options(const char *group, const vcg__plugin_t *plugin, const vcg_option_t *o) {
  for (; o && o->name; o++) {
    char val[256];
    switch (o->type) {
    case VCG_OPT_INT: snprintf(val, sizeof val, "%lld", (long long)o->def_int); break;
    case VCG_OPT_BOOL: snprintf(val, sizeof val, "%s", o->def_int ? "true" : "false"); break;
    case VCG_OPT_STRING: snprintf(val, sizeof val, "\"%s\"", o->def_str ? o->def_str : ""); break;
    case VCG_OPT_STRLIST: {
      size_t n = (size_t)snprintf(val, sizeof val, "[");
      const char *d = o->def_str ? o->def_str : "";
      for (const char *p = d; *p && n < sizeof val - 8; ) {
        const char *e = strchr(p, ',');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        n += (size_t)snprintf(val + n, sizeof val - n, "%s\"%.*s\"", p == d ? "" : ", ", (int)l, p);
        p += l + (e ? 1 : 0);
      }
      snprintf(val + n, sizeof val - n, "]");
      break;
    }
    default: val[0] = '\0';
    }
    char range[80] = "";
    if (o->type == VCG_OPT_INT)
      snprintf(range, sizeof range, " [%lld..%lld]", (long long)o->min, (long long)o->max);
    int pad = 34 - (int)(strlen(group) + strlen(o->name) + strlen(val));
    printf("  %s%s = %s;%*s# %s%s%s%s\n", group, o->name, val, pad > 1 ? pad : 1, "",
           o->doc ? o->doc : "", range, o->type == VCG_OPT_STRING && !o->def_str ? " (unset)" : "",
           vcg__option_needs_restart(plugin, o) ? " (restart)" : "");
  }
}

static int print_plugin(const char *name, const char *const *dirs) {
  if (strcmp(name, "core") == 0) {
    printf("core = {\n");
    print_options("", NULL, vcg__core_options);
    printf("  admin = {\n");
    /* Its one option, the listener, needs a restart. */
    for (const vcg_option_t *o = vcg__admin_options; o->name; o++)
      printf("    %s = \"\";%*s# %s (unset) (restart)\n", o->name, 26, "", o->doc);
    printf("  };\n};\n");
    return 0;
  }
  char path[4096], err[1024];
  const char *all[40];
  size_t n = 0;
  for (; dirs[n] && n < 38; n++) all[n] = dirs[n];
  all[n++] = VCG_PLUGIN_DIR;
  all[n] = NULL;
  vcg__plugin_t *p = NULL;
  if (vcg__plugin_find(name, all, path, sizeof path) != 0) {
    fprintf(stderr, "vcgate: plugin '%s' not found\n", name);
    return 1;
  }
  if (vcg__plugin_load(path, 0, &p, err, sizeof err) != 0) {
    fprintf(stderr, "vcgate: %s\n", err);
    return 1;
  }
  printf("# %s %s (%s plugin, ABI %u.%u): %s\n# %s\n", p->desc->name,
         p->desc->version ? p->desc->version : "",
         p->desc->kind == VCG_PLUGIN_TRANSPORT ? "transport" : "bus", p->desc->abi_major,
         p->desc->abi_minor, p->desc->description ? p->desc->description : "", path);
  printf("{ plugin = \"%s\";\n", p->desc->name);
  print_options("", p, p->desc->options);
  printf("}\n");
  vcg__plugin_unload(p);
  return 0;
}

/* glibc returns the free top of a heap to the kernel once it exceeds the
 * trim threshold (128 KiB at first), and threads other than the first
 * (workers, nats.c's reader and delivery threads) each get their own heap.
 * A relay frees about what it allocated a moment ago, so every burst was
 * trimmed and then faulted back in: with the NATS bus that cycle
 * (sysmalloc page faults, madvise) showed in the profile, and keeping the
 * heap raised its meeting rate (measurements in the commit message).  Keep up to 32 MiB of free top per heap, and
 * keep packets up to 4 MiB in the heaps (an mmap per large packet would
 * fault its pages in every time; setting the trim threshold also freezes
 * glibc's adaptive mmap threshold at 128 KiB otherwise).  RSS after a peak
 * stays higher by at most that much per heap; it does not grow. */
/* Every connection costs descriptors (two for a ws:// one, whose strict
 * frame reader reads through a dup() of the socket), and the soft limit
 * distributions set (1024) is far below what max_connections allows: take
 * the hard limit, as nginx's worker_rlimit_nofile lets operators do. */
static void fd_policy(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    (void)setrlimit(RLIMIT_NOFILE, &rl);
  }
}

static void heap_policy(void) {
#if defined(M_TRIM_THRESHOLD) && defined(M_MMAP_THRESHOLD)
  (void)mallopt(M_TRIM_THRESHOLD, 32 << 20);
  (void)mallopt(M_MMAP_THRESHOLD, 4 << 20);
#endif
}

int main(int argc, char **argv) {
  const char *file = NULL, *level = NULL, *show = NULL;
  int check = 0;
  const char *dirs[34];
  size_t nd = 0;
  int opt;
  const char *token_spec = NULL;
  static const struct option longopts[] = {
    { "token", required_argument, NULL, 'T' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  while ((opt = getopt_long(argc, argv, "c:tl:p:P:DVh", longopts, NULL)) != -1) {
    switch (opt) {
    case 'c': file = optarg; break;
    case 't': check = 1; break;
    case 'l': level = optarg; break;
    case 'p': if (nd < 16) dirs[nd++] = optarg; break;
    case 'P': show = optarg; break;
    case 'D': fputs(vcg__default_config, stdout); return 0;
    case 'V': printf("vcgate %s (plugin ABI %d.%d)\n", VCG_VERSION, VCG_ABI_MAJOR, VCG_ABI_MINOR); return 0;
    case 'T': token_spec = optarg; break;
    case 'h': usage(stdout); return 0;
    default: usage(stderr); return 2;
    }
  }
  if (optind < argc) { usage(stderr); return 2; }
  heap_policy();
  fd_policy();
  if (level && vcg__log_parse_level(level) < 0) {
    fprintf(stderr, "vcgate: -l %s: not one of error, warn, info, debug\n", level);
    return 2;
  }
  char *envpath = getenv("VCGATE_PLUGIN_PATH") ? strdup(getenv("VCGATE_PLUGIN_PATH")) : NULL;
  for (char *save = NULL, *tok = envpath ? strtok_r(envpath, ":", &save) : NULL; tok && nd < 32;
       tok = strtok_r(NULL, ":", &save))
    dirs[nd++] = tok;
  dirs[nd] = NULL;
  if (show) {
    int r = print_plugin(show, dirs);
    free(envpath);
    return r;
  }

  /* Plugins may log from configure() while the file is read. */
  static vcg__log_t boot_log;
  vcg__log_init(&boot_log, 2);
  vcg__host_set_main_log(&boot_log);
  vcg__config_t cfg;
  vcg__errs_t errs = { 0 };
  int nerr = vcg__config_load(&cfg, file, file ? NULL : vcg__default_config, dirs, &errs);
  for (size_t i = 0; i < errs.n; i++) fprintf(stderr, "%s\n", errs.line[i]);
  vcg__errs_free(&errs);
  if (nerr) {
    fprintf(stderr, "vcgate: %s: %d error%s in configuration\n", cfg.file, nerr, nerr == 1 ? "" : "s");
    vcg__config_free(&cfg);
    free(envpath);
    return 1;
  }
  if (token_spec) {
    int r = vcg__token_command(&cfg, token_spec);
    vcg__config_free(&cfg);
    free(envpath);
    return r;
  }
  if (check) {
    printf("%s: configuration is valid (%zu transport%s, bus %s)\n", cfg.file, cfg.ntransports,
           cfg.ntransports == 1 ? "" : "s", cfg.bus.loaded ? cfg.bus.name : "none");
    vcg__config_free(&cfg);
    free(envpath);
    return 0;
  }
  vcg__config_t *gen = malloc(sizeof *gen);
  if (!gen) { vcg__config_free(&cfg); free(envpath); return 1; }
  *gen = cfg; /* the first generation; the process frees it */
  int rc = vcg__process_run(gen, dirs, file, level);
  free(envpath);
  return rc;
}
