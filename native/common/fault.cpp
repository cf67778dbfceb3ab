#include "common/fault.h"

#include <atomic>
#include <cstdlib>
#include <mutex>
#include <set>
#include <sstream>

namespace pagedlm {

namespace {

struct Faults {
  std::mutex mutex;
  std::set<std::string> armed;
  std::atomic<bool> any{false};
  Faults() {
    if (const char* env = std::getenv("PAGEDLM_FAULTS")) {
      std::stringstream list(env);
      for (std::string site; std::getline(list, site, ',');) {
        if (!site.empty()) armed.insert(site);
      }
    }
    any = !armed.empty();
  }
};

Faults& faults() {
  static Faults instance;
  return instance;
}

}  // namespace

bool fault_armed(const char* site) {
  Faults& f = faults();
  if (!f.any.load(std::memory_order_relaxed)) return false;
  std::lock_guard<std::mutex> lock(f.mutex);
  return f.armed.count(site) != 0;
}

void arm_fault_for_testing(const std::string& site, bool armed) {
  Faults& f = faults();
  std::lock_guard<std::mutex> lock(f.mutex);
  if (armed) {
    f.armed.insert(site);
  } else {
    f.armed.erase(site);
  }
  f.any = !f.armed.empty();
}

}  // namespace pagedlm
