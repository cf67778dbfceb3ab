// Zeroed anonymous memory for a large array read in scattered pieces (the CPU KV pool): 2 MiB-aligned and
// marked for transparent huge pages, so one TLB entry covers 2 MiB instead of 4 KiB. Pages are committed as
// they are first written. Where the kernel gives no huge pages it is ordinary memory, as on macOS and Windows
// (whose large pages need a privilege few accounts hold). Owns it; move-only.
#pragma once

#include <cstddef>
#include <cstdint>

namespace pagedlm {

class HugePageBuffer {
 public:
  HugePageBuffer() = default;
  // Throws std::bad_alloc when the address space cannot be had.
  explicit HugePageBuffer(size_t bytes);
  HugePageBuffer(HugePageBuffer&& other) noexcept;
  HugePageBuffer& operator=(HugePageBuffer&& other) noexcept;
  HugePageBuffer(const HugePageBuffer&) = delete;
  HugePageBuffer& operator=(const HugePageBuffer&) = delete;
  ~HugePageBuffer();

  uint8_t* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  static constexpr size_t kHugePage = size_t{2} << 20;
  // `bytes` rounded up to whole huge pages.
  static size_t whole_huge_pages(size_t bytes) { return (bytes + kHugePage - 1) / kHugePage * kHugePage; }
  // Address space to reserve for `bytes`: one huge page more, so an aligned start always fits.
  static size_t reserved_bytes(size_t bytes) { return whole_huge_pages(bytes) + kHugePage; }
  // The first huge-page boundary in a reservation that starts at `mapping`.
  static uint8_t* aligned_start(void* mapping) {
    return reinterpret_cast<uint8_t*>(whole_huge_pages(reinterpret_cast<uintptr_t>(mapping)));
  }
  void release();

  void* mapping_ = nullptr;
  size_t mapped_bytes_ = 0;
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace pagedlm
