// bobbin/fs/file.h
//
// A file with blocking-style calls that park the fiber on io_uring (open,
// read, write, fsync and close all go through the ring, so a slow disk does
// not block the carrier). On a plain thread they are ordinary system calls.
//
//   auto f = bobbin::file::open("/tmp/x", O_RDWR | O_CREAT | O_TRUNC).value();
//   f.write_all_at(std::as_bytes(std::span(data)), 0).value();
//   f.sync().value();
//   std::vector<std::byte> buf(4096);
//   size_t n = f.read_at(buf, 0).value();
//
// Offsets: *_at calls take an explicit offset and leave the file position
// alone (pread/pwrite); read_some/write_all use and advance the position.
// Errors: io_result/result with the exact errno; close() from another fiber
// cancels pending calls with operation_canceled (see tcp_stream.h).
#ifndef BOBBIN_FS_FILE_H_
#define BOBBIN_FS_FILE_H_

#include <fcntl.h>
#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "bobbin/config.h"
#include "bobbin/deadline.h"
#include "bobbin/result.h"

namespace bobbin {
namespace internal {
class io_object;
}

class BOBBIN_API file {
 public:
  file() = default;
  file(file&& o) noexcept;
  file& operator=(file&& o) noexcept;
  ~file();

  static result<file> open(const std::string& path, int flags = O_RDONLY, mode_t mode = 0644);
  // Opens `relative` under the directory `dir` (opened with O_DIRECTORY or
  // O_PATH) and never outside it: the kernel (openat2 RESOLVE_BENEATH)
  // rejects absolute paths, ".." that climbs out and symlinks that point out,
  // with EXDEV. For servers that map request paths to files.
  static result<file> open_beneath(const file& dir, const std::string& relative, int flags = O_RDONLY,
                                   mode_t mode = 0644);

  io_result read_some(std::span<std::byte> buf);
  io_result read_at(std::span<std::byte> buf, uint64_t offset);
  io_result write_all(std::span<const std::byte> buf);
  io_result write_all_at(std::span<const std::byte> buf, uint64_t offset);
  result<void> sync();  // fsync
  result<uint64_t> size() const;
  void close();
  bool is_open() const noexcept { return io_ != nullptr; }
  int native_handle() const noexcept;

 private:
  internal::io_object* io_ = nullptr;
};

}  // namespace bobbin

#endif  // BOBBIN_FS_FILE_H_
