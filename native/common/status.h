// Error values for expected failures (bad model file, out of blocks, cancelled).
// The engine never throws across its public API; the addon turns a Status into a JS Error with `code`.
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace pagedlm {

enum class ErrorCode {
  kOk = 0,
  kModelFormat,       // the file is not a valid GGUF or contradicts itself
  kUnsupported,       // valid, but a feature pagedlm does not implement (architecture, tensor type)
  kIo,                // the OS refused (open, mmap)
  kInvalidArgument,   // bad option value reaching the engine
  kContextOverflow,   // prompt (+ max tokens) longer than the context
  kPoolTooSmall,      // the KV pool can never hold this request
  kClosed,
  kOutOfMemory,
  kCacheFile,         // a saved cache for another model or layout, or damaged
  kCuda,              // the CUDA runtime or cuBLAS failed; the message carries its text
  kInternal,
};

// Stable string for JS (`err.code`).
const char* error_code_name(ErrorCode code);

class Status {
 public:
  Status() = default;
  Status(ErrorCode code, std::string message) : code_(code), message_(std::move(message)) {}
  static Status ok() { return {}; }

  bool is_ok() const { return code_ == ErrorCode::kOk; }
  ErrorCode code() const { return code_; }
  const std::string& message() const { return message_; }

 private:
  ErrorCode code_ = ErrorCode::kOk;
  std::string message_;
};

// A value or the Status saying why there is none.
template <typename T>
class Result {
 public:
  Result(T value) : data_(std::move(value)) {}            // NOLINT(google-explicit-constructor)
  Result(Status status) : data_(std::move(status)) {}     // NOLINT(google-explicit-constructor)

  bool is_ok() const { return std::holds_alternative<T>(data_); }
  const Status& status() const { return std::get<Status>(data_); }
  T& value() { return std::get<T>(data_); }
  const T& value() const { return std::get<T>(data_); }
  T&& take() { return std::get<T>(std::move(data_)); }

 private:
  std::variant<T, Status> data_;
};

}  // namespace pagedlm
