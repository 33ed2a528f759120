/*
 * Every bad input the C interface promises to detect returns its status and a message, and
 * changes nothing; a checkpoint saves and loads. Run natively and under ASan/UBSan. Takes a
 * scratch folder for checkpoint files. Exit status 0 when every check passed.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "recadam.h"

static int failures = 0;

#define N 8

/* `call` must return `want`, with a message when it is an error. */
#define EXPECT(call, want)                                                                                   \
  do {                                                                                                       \
    recadam_status got_ = (call);                                                                            \
    const char *msg_ = recadam_last_error();                                                                 \
    if (got_ != (want) || ((want) != RECADAM_OK && msg_[0] == '\0')) {                                       \
      printf("FAIL line %d: %s returned %s, expected %s (\"%s\")\n", __LINE__, #call,                       \
             recadam_status_name(got_), recadam_status_name(want), msg_);                                   \
      failures++;                                                                                            \
    } else {                                                                                                 \
      printf("ok %-32s %s\n", recadam_status_name(got_), msg_);                                             \
    }                                                                                                        \
  } while (0)

#define CHECK(cond)                                                 \
  do {                                                              \
    if (!(cond)) {                                                  \
      printf("FAIL line %d: %s\n", __LINE__, #cond);                \
      failures++;                                                   \
    }                                                               \
  } while (0)

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s SCRATCH_DIR\n", argv[0]);
    return 2;
  }
  float p[N], g[N], pp[N], m[N], v[N], other[N];
  /* A buffer whose address + 1 byte is not aligned for float. */
  _Alignas(16) unsigned char bytes[(N + 1) * sizeof(float)];
  for (int i = 0; i < N; i++) {
    p[i] = pp[i] = 0.5f + 0.01f * (float)i;
    g[i] = 0.1f;
    m[i] = v[i] = other[i] = 0.0f;
  }
  recadam_config cfg;
  EXPECT(recadam_config_default(NULL), RECADAM_ERROR_NULL_POINTER);
  EXPECT(recadam_config_default(&cfg), RECADAM_OK);
  CHECK(cfg.struct_size == sizeof(recadam_config) && cfg.lr == 2e-5 && cfg.eps == 1e-8 && cfg.anneal_w == 1.0 &&
        cfg.anneal_fun == RECADAM_ANNEAL_SIGMOID && cfg.anneal_k == 0.5 && cfg.anneal_t0 == 250.0 && cfg.correct_bias == 1);
  CHECK(recadam_abi_version() == RECADAM_ABI_VERSION && strlen(recadam_version()) >= 5);

  /* The stateless update. */
  cfg.anneal_k = 0.5;
  cfg.anneal_t0 = 10;
  EXPECT(recadam_update_f32(NULL, 1, p, g, m, v, pp, N), RECADAM_ERROR_NULL_POINTER);
  EXPECT(recadam_update_f32(&cfg, 1, NULL, g, m, v, pp, N), RECADAM_ERROR_NULL_POINTER);
  EXPECT(recadam_update_f32(&cfg, 1, p, g, m, v, NULL, N), RECADAM_ERROR_INVALID_ARGUMENT);
  EXPECT(recadam_update_f32(&cfg, 1, p, g, m, v, pp, 0), RECADAM_ERROR_LENGTH);
  EXPECT(recadam_update_f32(&cfg, 1, p, p, m, v, pp, N), RECADAM_ERROR_OVERLAP);
  EXPECT(recadam_update_f32(&cfg, 1, p, g, m, m, pp, N), RECADAM_ERROR_OVERLAP);
  EXPECT(recadam_update_f32(&cfg, 1, p, g, m, p + 1, pp, N - 1), RECADAM_ERROR_OVERLAP);
  EXPECT(recadam_update_f32(&cfg, 1, (float *)(void *)(bytes + 1), g, m, v, pp, N), RECADAM_ERROR_BUFFER);
  EXPECT(recadam_update_f32(&cfg, 0, p, g, m, v, pp, N), RECADAM_ERROR_HYPERPARAMETER);
  recadam_config bad = cfg;
  bad.beta1 = 1.5;
  EXPECT(recadam_update_f32(&bad, 1, p, g, m, v, pp, N), RECADAM_ERROR_HYPERPARAMETER);
  bad = cfg;
  bad.lr = 1e-3; /* c = lr·(w − λ)·γ ≈ 5 > 2: the penalty would diverge */
  EXPECT(recadam_update_f32(&bad, 1, p, g, m, v, pp, N), RECADAM_ERROR_HYPERPARAMETER);
  bad = cfg;
  bad.lr = NAN;
  EXPECT(recadam_update_f32(&bad, 1, p, g, m, v, pp, N), RECADAM_ERROR_HYPERPARAMETER);
  bad = cfg;
  bad.anneal_fun = 7;
  EXPECT(recadam_update_f32(&bad, 1, p, g, m, v, pp, N), RECADAM_ERROR_INVALID_ARGUMENT);
  bad = cfg;
  bad.correct_bias = 2;
  EXPECT(recadam_update_f32(&bad, 1, p, g, m, v, pp, N), RECADAM_ERROR_INVALID_ARGUMENT);
  bad = cfg;
  bad.struct_size = 8;
  EXPECT(recadam_update_f32(&bad, 1, p, g, m, v, pp, N), RECADAM_ERROR_VERSION);
  for (int i = 0; i < N; i++) CHECK(p[i] == pp[i] && m[i] == 0.0f && v[i] == 0.0f); /* nothing changed */
  EXPECT(recadam_update_f32(&cfg, 1, p, g, m, v, pp, N), RECADAM_OK);
  CHECK(m[0] != 0.0f && v[0] != 0.0f);

  /* The optimizer. */
  recadam_optimizer *opt = NULL, *opt64 = NULL;
  EXPECT(recadam_optimizer_new(RECADAM_F32, 1, NULL), RECADAM_ERROR_NULL_POINTER);
  EXPECT(recadam_optimizer_new(7, 1, &opt), RECADAM_ERROR_INVALID_ARGUMENT);
  EXPECT(recadam_optimizer_new(RECADAM_F32, 0, &opt), RECADAM_ERROR_INVALID_ARGUMENT);
  EXPECT(recadam_optimizer_new(RECADAM_F32, 2, &opt), RECADAM_OK);
  const char *backend = NULL;
  size_t threads = 0;
  EXPECT(recadam_backend(opt, &backend, &threads), RECADAM_OK);
  CHECK(backend != NULL && threads == 2);
  bad = cfg;
  bad.eps = -1.0;
  EXPECT(recadam_add_group(opt, &bad, NULL), RECADAM_ERROR_HYPERPARAMETER);
  size_t group = 9, head = 9, id = 9;
  EXPECT(recadam_add_group(opt, &cfg, &group), RECADAM_OK);
  recadam_config plain = cfg;
  plain.anneal_w = 0.0; /* a head: AdamW, no penalty */
  EXPECT(recadam_add_group(opt, &plain, &head), RECADAM_OK);
  CHECK(group == 0 && head == 1);

  for (int i = 0; i < N; i++) p[i] = pp[i], m[i] = v[i] = 0.0f;
  recadam_param param = {sizeof(recadam_param), RECADAM_PRETRAINED_BORROW, 0, N, p, g, NULL, NULL, pp};
  recadam_param b = param;
  EXPECT(recadam_register(opt, NULL, &id), RECADAM_ERROR_NULL_POINTER);
  b.struct_size = 4;
  EXPECT(recadam_register(opt, &b, &id), RECADAM_ERROR_VERSION);
  b = param, b.len = 0;
  EXPECT(recadam_register(opt, &b, &id), RECADAM_ERROR_LENGTH);
  b = param, b.grad = NULL;
  EXPECT(recadam_register(opt, &b, &id), RECADAM_ERROR_NULL_POINTER);
  b = param, b.pretrained = NULL;
  EXPECT(recadam_register(opt, &b, &id), RECADAM_ERROR_NULL_POINTER);
  b = param, b.pretrained_mode = RECADAM_PRETRAINED_NONE, b.pretrained = NULL;
  EXPECT(recadam_register(opt, &b, &id), RECADAM_ERROR_INVALID_ARGUMENT);
  b = param, b.pretrained_mode = 9;
  EXPECT(recadam_register(opt, &b, &id), RECADAM_ERROR_INVALID_ARGUMENT);
  b = param, b.group = 2;
  EXPECT(recadam_register(opt, &b, &id), RECADAM_ERROR_INVALID_ARGUMENT);
  b = param, b.grad = p;
  EXPECT(recadam_register(opt, &b, &id), RECADAM_ERROR_OVERLAP);
  b = param, b.param = bytes + 1;
  EXPECT(recadam_register(opt, &b, &id), RECADAM_ERROR_BUFFER);
  EXPECT(recadam_register(opt, &param, &id), RECADAM_OK);
  CHECK(id == 0);
  EXPECT(recadam_register(opt, &param, &id), RECADAM_ERROR_DUPLICATE);
  b = param, b.param = p + 4, b.len = 4, b.grad = other, b.pretrained_mode = RECADAM_PRETRAINED_COPY;
  EXPECT(recadam_register(opt, &b, &id), RECADAM_ERROR_OVERLAP); /* a view into a registered parameter */
  float hp[2] = {0.25f, -0.25f}, hg[2] = {0.5f, 0.5f};
  recadam_param h = {sizeof(recadam_param), RECADAM_PRETRAINED_NONE, 1, 2, hp, hg, NULL, NULL, NULL};
  EXPECT(recadam_register(opt, &h, &id), RECADAM_OK);
  CHECK(id == 1);

  /* Steps, the guard, the learning rate, λ. */
  recadam_step_report report;
  EXPECT(recadam_set_lr(opt, 0, -1.0), RECADAM_ERROR_HYPERPARAMETER);
  EXPECT(recadam_set_lr(opt, 5, 1e-3), RECADAM_ERROR_INVALID_ARGUMENT);
  EXPECT(recadam_set_lr(opt, 0, 2e-4), RECADAM_OK);
  double lr = 0.0, lambda = -1.0, distance = -1.0;
  EXPECT(recadam_get_lr(opt, 0, &lr), RECADAM_OK);
  CHECK(lr == 2e-4);
  EXPECT(recadam_get_lr(opt, 0, NULL), RECADAM_ERROR_NULL_POINTER);
  g[3] = NAN;
  EXPECT(recadam_step(opt, &report), RECADAM_ERROR_NONFINITE_GRADIENT); /* refused by default */
  for (int i = 0; i < N; i++) CHECK(p[i] == pp[i]);
  EXPECT(recadam_set_nonfinite(opt, 5), RECADAM_ERROR_INVALID_ARGUMENT);
  EXPECT(recadam_set_nonfinite(opt, RECADAM_NONFINITE_SKIP), RECADAM_OK);
  EXPECT(recadam_step(opt, &report), RECADAM_OK);
  CHECK(report.skipped == 1 && report.skipped_param == 0 && report.step == 0);
  for (int i = 0; i < N; i++) CHECK(p[i] == pp[i]);
  g[3] = 0.1f;
  EXPECT(recadam_step(opt, &report), RECADAM_OK);
  CHECK(report.skipped == 0 && report.skipped_param == SIZE_MAX && report.step == 1 && report.lr == 2e-4);
  CHECK(report.grad_norm > 0.0 && report.lambda > 0.0 && report.lambda < 1.0);
  CHECK(hp[0] < 0.25f); /* the head moved too */
  EXPECT(recadam_lambda(opt, 0, &lambda), RECADAM_OK);
  CHECK(lambda == report.lambda);
  EXPECT(recadam_distance(opt, &distance), RECADAM_OK);
  CHECK(distance > 0.0);
  uint64_t steps = 0;
  EXPECT(recadam_step_count(opt, &steps), RECADAM_OK);
  CHECK(steps == 1);
  float mo[N], vo[N];
  EXPECT(recadam_get_state(opt, 0, mo, vo), RECADAM_OK);
  CHECK(mo[0] != 0.0f && vo[0] != 0.0f);
  EXPECT(recadam_get_state(opt, 7, mo, vo), RECADAM_ERROR_INVALID_ARGUMENT);

  /* Checkpoints: saved, changed, loaded back; a mismatched optimizer refuses the file. */
  char path[4096], missing[4096];
  snprintf(path, sizeof path, "%s/c-api.safetensors", argv[1]);
  snprintf(missing, sizeof missing, "%s/no-such-file.safetensors", argv[1]);
  EXPECT(recadam_save(opt, NULL), RECADAM_ERROR_NULL_POINTER);
  EXPECT(recadam_save(opt, path), RECADAM_OK);
  EXPECT(recadam_step(opt, &report), RECADAM_OK);
  EXPECT(recadam_set_lr(opt, 0, 3e-4), RECADAM_OK);
  EXPECT(recadam_load(opt, missing), RECADAM_ERROR_CHECKPOINT);
  EXPECT(recadam_load(opt, path), RECADAM_OK);
  float mo2[N];
  EXPECT(recadam_get_state(opt, 0, mo2, NULL), RECADAM_OK);
  CHECK(memcmp(mo, mo2, sizeof mo) == 0);
  EXPECT(recadam_step_count(opt, &steps), RECADAM_OK);
  EXPECT(recadam_get_lr(opt, 0, &lr), RECADAM_OK);
  CHECK(steps == 1 && lr == 2e-4);
  EXPECT(recadam_optimizer_new(RECADAM_F64, 1, &opt64), RECADAM_OK);
  EXPECT(recadam_add_group(opt64, &cfg, NULL), RECADAM_OK);
  double dp[N], dg[N];
  for (int i = 0; i < N; i++) dp[i] = 0.5, dg[i] = 0.1;
  recadam_param d = {sizeof(recadam_param), RECADAM_PRETRAINED_FROM_PARAM, 0, N, dp, dg, NULL, NULL, NULL};
  EXPECT(recadam_register(opt64, &d, NULL), RECADAM_OK);
  EXPECT(recadam_load(opt64, path), RECADAM_ERROR_CHECKPOINT); /* float32 file, other groups */
  EXPECT(recadam_step(opt64, NULL), RECADAM_OK);

  /* Handles: freed ones are refused, never read. */
  EXPECT(recadam_optimizer_free(opt), RECADAM_OK);
  EXPECT(recadam_step(opt, &report), RECADAM_ERROR_INVALID_HANDLE);
  EXPECT(recadam_set_lr(opt, 0, 1e-3), RECADAM_ERROR_INVALID_HANDLE);
  EXPECT(recadam_optimizer_free(opt), RECADAM_ERROR_INVALID_HANDLE);
  EXPECT(recadam_step((recadam_optimizer *)(void *)&cfg, &report), RECADAM_ERROR_INVALID_HANDLE);
  EXPECT(recadam_step(NULL, &report), RECADAM_ERROR_NULL_POINTER);
  EXPECT(recadam_optimizer_free(NULL), RECADAM_OK);
  EXPECT(recadam_optimizer_free(opt64), RECADAM_OK);
  CHECK(strcmp(recadam_status_name(1000), "unknown") == 0);

  printf("%d failures\n", failures);
  return failures ? 1 : 0;
}
