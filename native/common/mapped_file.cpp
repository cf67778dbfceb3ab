// What MappedFile does the same on every system; opening, mapping and releasing are in
// mapped_file_posix.cpp and mapped_file_windows.cpp.
#include "common/mapped_file.h"

#include <utility>

namespace pagedlm {

MappedFile::MappedFile(MappedFile&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)), heap_(std::exchange(other.heap_, false)) {}

MappedFile& MappedFile::operator=(MappedFile&& other) noexcept {
  if (this != &other) {
    release();
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    heap_ = std::exchange(other.heap_, false);
  }
  return *this;
}

MappedFile::~MappedFile() { release(); }

}  // namespace pagedlm
