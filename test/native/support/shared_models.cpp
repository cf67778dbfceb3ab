#include "support/shared_models.h"

#include <cstdlib>
#include <filesystem>

namespace pagedlm::testing {

std::string shared_model(const std::string& file) {
  const char* env = std::getenv("PAGEDLM_MODELS_DIR");
  const std::filesystem::path dir = env != nullptr ? env : PAGEDLM_SHARED_MODELS_DIR;
  const auto path = dir / file;
  return std::filesystem::exists(path) ? path.string() : std::string();
}

}  // namespace pagedlm::testing
