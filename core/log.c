#include "log.h"
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static const char *const level_names[] = { "error", "warn", "info", "debug" };

void vcg__log_init(vcg__log_t *l, int fd) {
  l->level = VCG_LOG_INFO;
  l->format = VCG_LOGFMT_PLAIN;
  l->fd = fd;
}

int vcg__log_parse_level(const char *s) {
  for (int i = 0; i < 4; i++)
    if (strcasecmp(s, level_names[i]) == 0) return i;
  if (strcasecmp(s, "warning") == 0) return VCG_LOG_WARN;
  return -1;
}

int vcg__log_parse_format(const char *s) {
  if (strcmp(s, "plain") == 0) return VCG_LOGFMT_PLAIN;
  if (strcmp(s, "json") == 0) return VCG_LOGFMT_JSON;
  return -1;
}

/* Append s to buf as a JSON string body (without quotes). */
static size_t json_escape(char *buf, size_t cap, size_t n, const char *s) {
  for (; *s && n + 7 < cap; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') { buf[n++] = '\\'; buf[n++] = (char)c; }
    else if (c == '\n') { buf[n++] = '\\'; buf[n++] = 'n'; }
    else if (c < 0x20) n += (size_t)snprintf(buf + n, cap - n, "\\u%04x", c);
    else buf[n++] = (char)c;
  }
  return n;
}

/* Each line is formatted into a stack buffer and written with one write(2),
 * so lines from several worker threads never interleave. */
void vcg__logv(vcg__log_t *l, int level, const char *who, uint64_t sid,
               const char *fmt, va_list ap) {
  if (level > l->level) return;
  char msg[1024], line[2300];
  vsnprintf(msg, sizeof msg, fmt, ap);
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  char when[64];
  snprintf(when, sizeof when, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ",
           tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
           tm.tm_min, tm.tm_sec, (long)(ts.tv_nsec / 1000000) % 1000);
  const char *lv = level_names[level < 0 ? 0 : level > 3 ? 3 : level];
  size_t n;
  if (l->format == VCG_LOGFMT_JSON) {
    n = (size_t)snprintf(line, sizeof line,
                         "{\"ts\":\"%s\",\"level\":\"%s\",\"who\":\"", when, lv);
    n = json_escape(line, sizeof line, n, who ? who : "core");
    if (sid)
      n += (size_t)snprintf(line + n, sizeof line - n, "\",\"session\":\"%016llx",
                            (unsigned long long)sid);
    n += (size_t)snprintf(line + n, sizeof line - n, "\",\"msg\":\"");
    n = json_escape(line, sizeof line, n, msg);
    n += (size_t)snprintf(line + n, sizeof line - n, "\"}\n");
  } else if (sid) {
    n = (size_t)snprintf(line, sizeof line, "%s %-5s [%s] session %016llx: %s\n",
                         when, lv, who ? who : "core", (unsigned long long)sid, msg);
  } else {
    n = (size_t)snprintf(line, sizeof line, "%s %-5s [%s] %s\n", when, lv,
                         who ? who : "core", msg);
  }
  if (n >= sizeof line) { n = sizeof line - 1; line[n - 1] = '\n'; }
  ssize_t r = write(l->fd, line, n);
  (void)r;
}

void vcg__logf(vcg__log_t *l, int level, const char *who, uint64_t sid,
               const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vcg__logv(l, level, who, sid, fmt, ap);
  va_end(ap);
}
