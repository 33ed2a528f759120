/* The RecAdam decoupled update as a plain C loop: the same arithmetic as recadam's kernel
 * (fmaf where PyTorch fuses, IEEE sqrtf and division), for the benchmark's in-cache bar. */
#include <math.h>
#include <stddef.h>

void recadam_c_update(float *restrict p, const float *restrict g, float *restrict m,
                      float *restrict v, const float *restrict pp, size_t n, float beta1,
                      float one_minus_beta1, float beta2, float one_minus_beta2, float eps,
                      float neg_step_lambda, float neg_penalty, float neg_weight_decay) {
    for (size_t i = 0; i < n; i++) {
        float mi = fmaf(g[i], one_minus_beta1, m[i] * beta1);
        float vi = fmaf(one_minus_beta2 * g[i], g[i], v[i] * beta2);
        m[i] = mi;
        v[i] = vi;
        float d = sqrtf(vi) + eps;
        float pi = p[i] + (neg_step_lambda * mi) / d;
        pi = fmaf(pi - pp[i], neg_penalty, pi);
        p[i] = fmaf(pi, neg_weight_decay, pi);
    }
}
