// Locating ../shared/models (tests skip with a message when it is absent). Test-only.
#pragma once

#include <string>

namespace pagedlm::testing {

// Full path of a shared test model, or "" when the folder or file is missing.
std::string shared_model(const std::string& file);

}  // namespace pagedlm::testing

#define PAGEDLM_REQUIRE_SHARED_MODEL(var, file)                                                   \
  const std::string var = ::pagedlm::testing::shared_model(file);                                 \
  if ((var).empty()) GTEST_SKIP() << "shared test model " file " not found (set PAGEDLM_MODELS_DIR)"
