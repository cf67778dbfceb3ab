// Test-only failure points. A site named in PAGEDLM_FAULTS (comma separated), or armed with
// arm_fault_for_testing(), fails as if the resource it stands for ran out. Costs one load per check.
//   kv.allocate      allocating the KV pool at load        -> ERR_OUT_OF_MEMORY
//   step.allocate    growing step buffers in a forward pass -> the step's requests fail, ERR_OUT_OF_MEMORY
//   cache.write      writing a saved cache (disk full)      -> ERR_IO, no file left behind
//   offload.write    the offload disk tier writing a block  -> the block is dropped, no file left behind
//   offload.read     the offload disk tier reading a block  -> the hit is recomputed
#pragma once

#include <string>

namespace pagedlm {

bool fault_armed(const char* site);
void arm_fault_for_testing(const std::string& site, bool armed);

}  // namespace pagedlm
