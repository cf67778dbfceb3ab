#include "common/huge_page_buffer.h"

#include <new>

#include <sys/mman.h>

namespace pagedlm {

HugePageBuffer::HugePageBuffer(size_t bytes) : size_(bytes) {
  if (bytes == 0) return;
  mapped_bytes_ = reserved_bytes(bytes);
  mapping_ = ::mmap(nullptr, mapped_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mapping_ == MAP_FAILED) {
    mapping_ = nullptr;
    throw std::bad_alloc();
  }
  data_ = aligned_start(mapping_);
#ifdef MADV_HUGEPAGE  // Linux; elsewhere (macOS) the kernel picks page sizes itself
  // Advice only: without transparent huge pages the buffer is the same, in 4 KiB pages.
  ::madvise(data_, whole_huge_pages(bytes), MADV_HUGEPAGE);
#endif
}

void HugePageBuffer::release() {
  if (mapping_ != nullptr) ::munmap(mapping_, mapped_bytes_);
  mapping_ = nullptr;
  data_ = nullptr;
  size_ = 0;
}

}  // namespace pagedlm
