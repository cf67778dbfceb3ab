#include "common/mapped_file.h"

#include "common/windows_api.h"

#include <malloc.h>

#include <algorithm>

#include "common/platform.h"

namespace pagedlm {

namespace {

// Closes a handle when the scope ends, whatever way it ends.
struct HandleCloser {
  HANDLE handle;
  ~HandleCloser() {
    if (handle != nullptr && handle != INVALID_HANDLE_VALUE) CloseHandle(handle);
  }
};

// Reads the whole file into `out` (ReadFile takes at most 4 GiB a call).
bool read_whole(HANDLE file, uint8_t* out, size_t size) {
  for (size_t done = 0; done < size;) {
    const DWORD ask = static_cast<DWORD>(std::min<size_t>(size - done, DWORD{1} << 30));
    DWORD got = 0;
    if (!ReadFile(file, out + done, ask, &got, nullptr) || got == 0) return false;
    done += got;
  }
  return true;
}

}  // namespace

Result<MappedFile> MappedFile::open(const std::string& path, bool map) {
  // Others may read, rewrite or delete the file meanwhile, as on POSIX (a mapping then keeps its pages).
  const HandleCloser file{CreateFileW(native_path(path).c_str(), GENERIC_READ, FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE, nullptr,
                                      OPEN_EXISTING, FILE_ATTRIBUTE_NORMAL, nullptr)};
  if (file.handle == INVALID_HANDLE_VALUE) return Status(ErrorCode::kIo, "cannot open '" + path + "': " + windows_error_message(GetLastError()));
  LARGE_INTEGER size{};
  if (GetFileType(file.handle) != FILE_TYPE_DISK || !GetFileSizeEx(file.handle, &size)) {
    return Status(ErrorCode::kIo, "'" + path + "' is not a regular file");
  }
  MappedFile mapped;
  mapped.size_ = static_cast<size_t>(size.QuadPart);
  if (mapped.size_ > 0 && !map) {
    void* buffer = _aligned_malloc(mapped.size_, 64);
    if (buffer == nullptr) {
      return Status(ErrorCode::kOutOfMemory,
                    "cannot hold '" + path + "' (" + std::to_string(mapped.size_ >> 20) + " MiB) in memory: load with mmap enabled");
    }
    if (!read_whole(file.handle, static_cast<uint8_t*>(buffer), mapped.size_)) {
      const DWORD err = GetLastError();
      _aligned_free(buffer);
      return Status(ErrorCode::kIo, "cannot read '" + path + "': " + windows_error_message(err));
    }
    mapped.data_ = static_cast<const uint8_t*>(buffer);
    mapped.heap_ = true;
  } else if (mapped.size_ > 0) {
    // The view keeps the mapping object and the file open after both handles close.
    const HandleCloser mapping{CreateFileMappingW(file.handle, nullptr, PAGE_READONLY, 0, 0, nullptr)};
    const void* view = mapping.handle != nullptr ? MapViewOfFile(mapping.handle, FILE_MAP_READ, 0, 0, 0) : nullptr;
    if (view == nullptr) return Status(ErrorCode::kIo, "cannot map '" + path + "': " + windows_error_message(GetLastError()));
    mapped.data_ = static_cast<const uint8_t*>(view);
  }
  return mapped;
}

void MappedFile::drop_resident_pages(const uint8_t* begin, size_t bytes) const {
  if (data_ == nullptr || heap_ || begin < data_ || begin + bytes > data_ + size_) return;
  SYSTEM_INFO info{};
  GetSystemInfo(&info);
  const uintptr_t page = info.dwPageSize;
  const uintptr_t first = (reinterpret_cast<uintptr_t>(begin) + page - 1) / page * page;
  const uintptr_t last = (reinterpret_cast<uintptr_t>(begin) + bytes) / page * page;
  // Unlocking pages that were never locked takes them out of the working set (and fails with
  // ERROR_NOT_LOCKED, which is expected): the same effect as madvise(MADV_DONTNEED) on a read-only mapping.
  if (last > first) VirtualUnlock(reinterpret_cast<void*>(first), last - first);
}

void MappedFile::release() {
  if (data_ != nullptr && heap_) _aligned_free(const_cast<uint8_t*>(data_));
  if (data_ != nullptr && !heap_) UnmapViewOfFile(data_);
  data_ = nullptr;
  heap_ = false;
  size_ = 0;
}

}  // namespace pagedlm
