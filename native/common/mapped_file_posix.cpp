#include "common/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace pagedlm {

namespace {
// Reads the whole file into 64-byte aligned heap memory.
bool read_whole(int fd, uint8_t* out, size_t size) {
  for (size_t done = 0; done < size;) {
    const ssize_t n = ::pread(fd, out + done, size - done, static_cast<off_t>(done));
    if (n <= 0) {
      if (n < 0 && errno == EINTR) continue;
      return false;
    }
    done += static_cast<size_t>(n);
  }
  return true;
}
}  // namespace

Result<MappedFile> MappedFile::open(const std::string& path, bool map) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status(ErrorCode::kIo, "cannot open '" + path + "': " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return Status(ErrorCode::kIo, "'" + path + "' is not a regular file");
  }
  MappedFile file;
  file.size_ = static_cast<size_t>(st.st_size);
  if (file.size_ > 0 && !map) {
    void* buffer = nullptr;
    if (::posix_memalign(&buffer, 64, file.size_) != 0) {
      ::close(fd);
      return Status(ErrorCode::kOutOfMemory, "cannot hold '" + path + "' (" + std::to_string(file.size_ >> 20) + " MiB) in memory: load with mmap enabled");
    }
    if (!read_whole(fd, static_cast<uint8_t*>(buffer), file.size_)) {
      const int err = errno;
      std::free(buffer);
      ::close(fd);
      return Status(ErrorCode::kIo, "cannot read '" + path + "': " + std::strerror(err));
    }
    file.data_ = static_cast<const uint8_t*>(buffer);
    file.heap_ = true;
  } else if (file.size_ > 0) {
    void* addr = ::mmap(nullptr, file.size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (addr == MAP_FAILED) {
      const int err = errno;
      ::close(fd);
      return Status(ErrorCode::kIo, "cannot map '" + path + "': " + std::strerror(err));
    }
    file.data_ = static_cast<const uint8_t*>(addr);
  }
  ::close(fd);  // the mapping keeps the file alive
  return file;
}

void MappedFile::drop_resident_pages(const uint8_t* begin, size_t bytes) const {
  if (data_ == nullptr || heap_ || begin < data_ || begin + bytes > data_ + size_) return;
  const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGE_SIZE));
  const uintptr_t first = (reinterpret_cast<uintptr_t>(begin) + page - 1) / page * page;
  const uintptr_t last = (reinterpret_cast<uintptr_t>(begin) + bytes) / page * page;
  // A private read-only file mapping: dropping pages loses nothing, they are the file's bytes.
  if (last > first) ::madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED);
}

void MappedFile::release() {
  if (data_ != nullptr && heap_) std::free(const_cast<uint8_t*>(data_));
  if (data_ != nullptr && !heap_) ::munmap(const_cast<uint8_t*>(data_), size_);
  data_ = nullptr;
  heap_ = false;
  size_ = 0;
}

}  // namespace pagedlm
