#include "common/huge_page_buffer.h"

#include "common/windows_api.h"

#include <new>

namespace pagedlm {

HugePageBuffer::HugePageBuffer(size_t bytes) : size_(bytes) {
  if (bytes == 0) return;
  // Only the aligned part of the reservation is committed. Committed pages read as zeros and take memory when
  // first written.
  mapped_bytes_ = reserved_bytes(bytes);
  mapping_ = VirtualAlloc(nullptr, mapped_bytes_, MEM_RESERVE, PAGE_NOACCESS);
  if (mapping_ == nullptr) throw std::bad_alloc();
  uint8_t* const start = aligned_start(mapping_);
  if (VirtualAlloc(start, bytes, MEM_COMMIT, PAGE_READWRITE) == nullptr) {
    release();
    throw std::bad_alloc();
  }
  data_ = start;
}

void HugePageBuffer::release() {
  if (mapping_ != nullptr) VirtualFree(mapping_, 0, MEM_RELEASE);
  mapping_ = nullptr;
  data_ = nullptr;
  size_ = 0;
}

}  // namespace pagedlm
