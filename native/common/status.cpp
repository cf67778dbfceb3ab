#include "common/status.h"

namespace pagedlm {

const char* error_code_name(ErrorCode code) {
  switch (code) {
    case ErrorCode::kOk: return "OK";
    case ErrorCode::kModelFormat: return "ERR_MODEL_FORMAT";
    case ErrorCode::kUnsupported: return "ERR_UNSUPPORTED";
    case ErrorCode::kIo: return "ERR_IO";
    case ErrorCode::kInvalidArgument: return "ERR_INVALID_ARGUMENT";
    case ErrorCode::kContextOverflow: return "ERR_CONTEXT_OVERFLOW";
    case ErrorCode::kPoolTooSmall: return "ERR_POOL_TOO_SMALL";
    case ErrorCode::kClosed: return "ERR_CLOSED";
    case ErrorCode::kOutOfMemory: return "ERR_OUT_OF_MEMORY";
    case ErrorCode::kCacheFile: return "ERR_CACHE_FILE";
    case ErrorCode::kCuda: return "ERR_CUDA";
    case ErrorCode::kInternal: return "ERR_INTERNAL";
  }
  return "ERR_INTERNAL";
}

}  // namespace pagedlm
