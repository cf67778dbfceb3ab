#include "common/huge_page_buffer.h"

#include "common/windows_api.h"

#include <new>

namespace pagedlm {

namespace {
constexpr size_t kHugePage = size_t{2} << 20;
}  // namespace

HugePageBuffer::HugePageBuffer(size_t bytes) : size_(bytes) {
  if (bytes == 0) return;
  // Address space for one huge page more than asked, so an aligned start always fits; only the aligned part
  // is committed. Committed pages read as zeros and take memory when first written.
  mapped_bytes_ = (bytes + kHugePage - 1) / kHugePage * kHugePage + kHugePage;
  mapping_ = VirtualAlloc(nullptr, mapped_bytes_, MEM_RESERVE, PAGE_NOACCESS);
  if (mapping_ == nullptr) throw std::bad_alloc();
  const auto start = (reinterpret_cast<uintptr_t>(mapping_) + kHugePage - 1) / kHugePage * kHugePage;
  if (VirtualAlloc(reinterpret_cast<void*>(start), bytes, MEM_COMMIT, PAGE_READWRITE) == nullptr) {
    release();
    throw std::bad_alloc();
  }
  data_ = reinterpret_cast<uint8_t*>(start);
}

void HugePageBuffer::release() {
  if (mapping_ != nullptr) VirtualFree(mapping_, 0, MEM_RELEASE);
  mapping_ = nullptr;
  data_ = nullptr;
  size_ = 0;
}

}  // namespace pagedlm
