// The header compiles as C++ (extern "C" linkage, no C-only constructs) and links.
#include <cstdio>
#include <vector>

#include "recadam.h"

int main() {
  recadam_config cfg;
  if (recadam_config_default(&cfg) != RECADAM_OK) return 1;
  cfg.anneal_w = 0.0;  // AdamW
  std::vector<double> w(16, 0.5), g(16, 0.1);
  recadam_optimizer *opt = nullptr;
  if (recadam_optimizer_new(RECADAM_F64, 1, &opt) != RECADAM_OK) return 1;
  recadam_param p = {sizeof(recadam_param), RECADAM_PRETRAINED_NONE, 0, w.size(), w.data(), g.data(),
                     nullptr, nullptr, nullptr};
  recadam_step_report report;
  if (recadam_add_group(opt, &cfg, nullptr) != RECADAM_OK || recadam_register(opt, &p, nullptr) != RECADAM_OK ||
      recadam_step(opt, &report) != RECADAM_OK || report.step != 1 || !(w[0] < 0.5)) {
    std::printf("%s\n", recadam_last_error());
    return 1;
  }
  std::printf("C++: recadam %s, one step: w[0] = %.6f\n", recadam_version(), w[0]);
  return recadam_optimizer_free(opt) == RECADAM_OK ? 0 : 1;
}
