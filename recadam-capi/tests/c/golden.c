/*
 * Replays every golden case (*.json in the folder given) through librecadam, two ways: an
 * optimizer (2 threads, the caller's moments, θ* borrowed, the learning rate set before each
 * step) and the stateless recadam_update_f32/f64 with the caller's own state. Checks:
 *   - the two ways give the same bits at every step;
 *   - every checkpoint array is within the golden README's tolerance (max|got - ref| <= rtol *
 *     max|ref|; rtol 1e-6 for float32, 1e-13 for float64), and the step-1 moments are
 *     bit-exact;
 * and prints the final params, exp_avg and exp_avg_sq as hex bits (one line each, "case FILE
 * ARRAY HEX...") for the Rust test to compare with recadam's own replay.
 * Exit status: 0 all passed, 1 a check failed, 2 no case or an unreadable file.
 */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "recadam.h"

static int failures = 0;

static void fail(const char *file, const char *what) {
  printf("FAIL %s: %s\n", file, what);
  failures++;
}

static double number_at(const cJSON *array, int i) {
  return cJSON_GetArrayItem(array, i)->valuedouble;
}

static int read_config(const cJSON *c, recadam_config *cfg) {
  const cJSON *k = cJSON_GetObjectItemCaseSensitive(c, "config");
  const char *fun = cJSON_GetObjectItemCaseSensitive(k, "anneal_fun")->valuestring;
  if (recadam_config_default(cfg) != RECADAM_OK) return -1;
  cfg->lr = cJSON_GetObjectItemCaseSensitive(k, "lr")->valuedouble;
  cfg->beta1 = cJSON_GetObjectItemCaseSensitive(k, "beta1")->valuedouble;
  cfg->beta2 = cJSON_GetObjectItemCaseSensitive(k, "beta2")->valuedouble;
  cfg->eps = cJSON_GetObjectItemCaseSensitive(k, "eps")->valuedouble;
  cfg->weight_decay = cJSON_GetObjectItemCaseSensitive(k, "weight_decay")->valuedouble;
  cfg->correct_bias = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(k, "correct_bias")) ? 1 : 0;
  cfg->anneal_k = cJSON_GetObjectItemCaseSensitive(k, "anneal_k")->valuedouble;
  cfg->anneal_t0 = cJSON_GetObjectItemCaseSensitive(k, "anneal_t0")->valuedouble;
  cfg->anneal_w = cJSON_GetObjectItemCaseSensitive(k, "anneal_w")->valuedouble;
  cfg->pretrain_cof = cJSON_GetObjectItemCaseSensitive(k, "pretrain_cof")->valuedouble;
  if (strcmp(fun, "sigmoid") == 0) cfg->anneal_fun = RECADAM_ANNEAL_SIGMOID;
  else if (strcmp(fun, "linear") == 0) cfg->anneal_fun = RECADAM_ANNEAL_LINEAR;
  else if (strcmp(fun, "constant") == 0) cfg->anneal_fun = RECADAM_ANNEAL_CONSTANT;
  else return -1;
  return 0;
}

/* The replay, once per element type (replay.inc is this file's template). */
#define T float
#define NAME(x) x##_f32
#define DTYPE RECADAM_F32
#define UPDATE recadam_update_f32
#define RTOL 1e-6
#define BITS_T uint32_t
#define BITS_FMT "%08" PRIx32
#include "replay.inc"
#undef T
#undef NAME
#undef DTYPE
#undef UPDATE
#undef RTOL
#undef BITS_T
#undef BITS_FMT

#define T double
#define NAME(x) x##_f64
#define DTYPE RECADAM_F64
#define UPDATE recadam_update_f64
#define RTOL 1e-13
#define BITS_T uint64_t
#define BITS_FMT "%016" PRIx64
#include "replay.inc"

static int by_name(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s GOLDEN_DIR\n", argv[0]);
    return 2;
  }
  DIR *dir = opendir(argv[1]);
  if (!dir) {
    fprintf(stderr, "cannot open %s\n", argv[1]);
    return 2;
  }
  char *names[4096];
  size_t count = 0;
  struct dirent *entry;
  while ((entry = readdir(dir)) && count < 4096) {
    size_t len = strlen(entry->d_name);
    if (len > 5 && strcmp(entry->d_name + len - 5, ".json") == 0) names[count++] = strdup(entry->d_name);
  }
  closedir(dir);
  if (count == 0) {
    fprintf(stderr, "no golden cases (*.json) in %s\n", argv[1]);
    return 2;
  }
  qsort(names, count, sizeof names[0], by_name);
  int status = 0;
  for (size_t i = 0; i < count; i++) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", argv[1], names[i]);
    FILE *f = fopen(path, "rb");
    if (!f) {
      fprintf(stderr, "cannot open %s\n", path);
      status = 2;
      free(names[i]);
      continue;
    }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = malloc((size_t)size + 1);
    size_t got = fread(text, 1, (size_t)size, f);
    fclose(f);
    text[got] = '\0';
    cJSON *c = cJSON_Parse(text);
    free(text);
    if (!c) {
      fprintf(stderr, "cannot parse %s\n", path);
      status = 2;
    } else {
      const char *dtype = cJSON_GetObjectItemCaseSensitive(c, "dtype")->valuestring;
      if (strcmp(dtype, "float32") == 0) replay_f32(names[i], c);
      else if (strcmp(dtype, "float64") == 0) replay_f64(names[i], c);
      else fail(names[i], "unknown dtype");
      cJSON_Delete(c);
    }
    free(names[i]);
  }
  printf("%zu cases, %d failures\n", count, failures);
  if (status) return status;
  return failures ? 1 : 0;
}
