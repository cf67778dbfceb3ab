// A whole file in memory, read-only: memory-mapped (the default: shared with the page cache, loaded lazily),
// or copied into the heap (`map = false`: immune to the file being truncated or rewritten on disk after
// load). Owns its memory; move-only. The path is UTF-8 on every system (platform.h: native_path).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "common/status.h"

namespace pagedlm {

class MappedFile {
 public:
  static Result<MappedFile> open(const std::string& path, bool map = true);

  MappedFile() = default;
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  // Bytes of the process's own memory this file holds: its size for a heap copy, 0 when mapped (the page
  // cache holds those, and gives them back under pressure).
  size_t heap_bytes() const { return heap_ ? size_ : 0; }
  // Lets the system drop the resident pages of [begin, begin + bytes) (whole pages inside it) from this
  // process; they are read back from the file if touched again. Nothing for heap copies or parsed buffers.
  // For weights a backend has copied into its own layout: the model's memory is not counted twice.
  void drop_resident_pages(const uint8_t* begin, size_t bytes) const;

 private:
  void release();
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
  bool heap_ = false;  // data_ came from the heap, not mmap
};

}  // namespace pagedlm
