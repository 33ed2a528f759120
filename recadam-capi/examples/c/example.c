/* Fine-tune 4 weights towards a target with RecAdam, pulled back to their pretrained values. */
#include <stdio.h>
#include "recadam.h"

int main(void) {
  float w[4] = {0.5f, -0.25f, 1.0f, 0.0f}, grad[4], target[4] = {1.0f, 1.0f, 1.0f, 1.0f};
  recadam_config cfg;
  recadam_config_default(&cfg);
  cfg.lr = 1e-4; cfg.anneal_k = 0.1; cfg.anneal_t0 = 100;
  recadam_optimizer *opt;
  if (recadam_optimizer_new(RECADAM_F32, 1, &opt) || recadam_add_group(opt, &cfg, NULL)) goto fail;
  /* θ* copied from w now; the moments allocated by the library. */
  recadam_param p = {sizeof p, RECADAM_PRETRAINED_FROM_PARAM, 0, 4, w, grad, NULL, NULL, NULL};
  if (recadam_register(opt, &p, NULL)) goto fail;
  for (int step = 0; step < 300; step++) {
    for (int i = 0; i < 4; i++) grad[i] = w[i] - target[i]; /* d/dw of ½‖w − target‖² */
    if (recadam_step(opt, NULL)) goto fail;
  }
  double distance, lambda;
  recadam_distance(opt, &distance);
  recadam_lambda(opt, 0, &lambda);
  printf("w = %.4f %.4f %.4f %.4f, distance to pretrained %.4f, lambda %.3f\n", w[0], w[1], w[2], w[3], distance, lambda);
  return recadam_optimizer_free(opt);
fail:
  fprintf(stderr, "recadam: %s\n", recadam_last_error());
  return 1;
}
