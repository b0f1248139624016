/* A main for the harnesses without libFuzzer: run each file named (or
 * every file in each directory named) through LLVMFuzzerTestOneInput
 * once, so the corpus replays under any compiler and sanitizer. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "fuzz.h"

__attribute__((weak)) int LLVMFuzzerInitialize(int *argc, char ***argv);

static int replay_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) { perror(path); return -1; }
  uint8_t *buf = NULL;
  size_t len = 0, cap = 0, n;
  do {
    if (len == cap) {
      uint8_t *nb = realloc(buf, cap = cap ? cap * 2 : 4096);
      if (!nb) { free(buf); fclose(f); return -1; }
      buf = nb;
    }
    n = fread(buf + len, 1, cap - len, f);
    len += n;
  } while (n > 0);
  fclose(f);
  /* An exact-size copy, so ASan sees a read past the input's end. */
  uint8_t *exact = malloc(len ? len : 1);
  if (!exact) { free(buf); return -1; }
  memcpy(exact, buf, len);
  free(buf);
  LLVMFuzzerTestOneInput(exact, len);
  free(exact);
  return 0;
}

int main(int argc, char **argv) {
  int count = 0, bad = 0;
  if (LLVMFuzzerInitialize) LLVMFuzzerInitialize(&argc, &argv);
  for (int i = 1; i < argc; i++) {
    struct stat st;
    if (stat(argv[i], &st) != 0) { perror(argv[i]); bad++; continue; }
    if (!S_ISDIR(st.st_mode)) {
      bad += replay_file(argv[i]) != 0;
      count++;
      continue;
    }
    DIR *d = opendir(argv[i]);
    if (!d) { perror(argv[i]); bad++; continue; }
    for (struct dirent *e; (e = readdir(d));) {
      if (e->d_name[0] == '.') continue;
      char path[4096];
      snprintf(path, sizeof path, "%s/%s", argv[i], e->d_name);
      bad += replay_file(path) != 0;
      count++;
    }
    closedir(d);
  }
  printf("%s: replayed %d inputs%s\n", argv[0], count, bad ? ", some unreadable" : "");
  return bad ? 1 : 0;
}
