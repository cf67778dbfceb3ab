#include "support/shared_models.h"

#include <filesystem>

#include "common/platform.h"

namespace pagedlm::testing {

std::string shared_model(const std::string& file) {
  const std::string chosen = utf8_environment_variable("PAGEDLM_MODELS_DIR");
  const std::filesystem::path path = native_path(!chosen.empty() ? chosen : PAGEDLM_SHARED_MODELS_DIR) / native_path(file);
  return std::filesystem::exists(path) ? utf8_path(path) : std::string();
}

}  // namespace pagedlm::testing
