#include "bobbin/fs/file.h"

#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

#include "runtime/io/io_object.h"
#include "runtime/intercept/libc.h"
#include "runtime/io/io_wait.h"
#include "runtime/sched/carrier.h"

namespace bobbin {

using internal::io_object;
using internal::to_error;

file::file(file&& o) noexcept : io_(std::exchange(o.io_, nullptr)) {}

file& file::operator=(file&& o) noexcept {
  if (this != &o) {
    close();
    io_ = std::exchange(o.io_, nullptr);
  }
  return *this;
}

file::~file() { close(); }

void file::close() {
  if (io_ == nullptr) return;
  io_->close();
  delete io_;
  io_ = nullptr;
}

int file::native_handle() const noexcept { return io_ ? io_->fd() : -1; }

result<file> file::open(const std::string& path, int flags, mode_t mode) {
  int fd;
  if (internal::carrier* c = internal::current_fiber_carrier()) {
    fd = internal::await_sqe(
        c, [&](io_uring_sqe* sqe) { io_uring_prep_openat(sqe, AT_FDCWD, path.c_str(), flags | O_CLOEXEC, mode); },
        wait_reason::file_io, deadline());
  } else {
    fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
    if (fd < 0) fd = -errno;
  }
  if (fd < 0) return to_error(fd);
  file f;
  f.io_ = new io_object(fd, /*is_socket=*/false);
  return f;
}

result<file> file::open_beneath(const file& dir, const std::string& relative, int flags, mode_t mode) {
  if (dir.io_ == nullptr) return errno_code(EBADF);
  open_how how{};
  how.flags = static_cast<uint64_t>(flags | O_CLOEXEC);
  how.mode = (flags & (O_CREAT | O_TMPFILE)) ? mode : 0;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
  int fd;
  if (internal::carrier* c = internal::current_fiber_carrier()) {
    fd = internal::await_sqe(
        c, [&](io_uring_sqe* sqe) { io_uring_prep_openat2(sqe, dir.io_->fd(), relative.c_str(), &how); },
        wait_reason::file_io, deadline());
  } else {
    fd = static_cast<int>(bobbin::internal::libc::syscall(SYS_openat2, dir.io_->fd(), relative.c_str(), &how, sizeof how));
    if (fd < 0) fd = -errno;
  }
  if (fd < 0) return to_error(fd);
  file f;
  f.io_ = new io_object(fd, /*is_socket=*/false);
  return f;
}

namespace {
// io_uring's "current file position" offset.
constexpr uint64_t kAtPosition = static_cast<uint64_t>(-1);

io_result transfer(io_object* io, std::span<std::byte> rbuf, std::span<const std::byte> wbuf, uint64_t offset,
                   bool all) {
  if (io == nullptr) return {0, errno_code(EBADF)};
  const int fd = io->fd();
  const bool writing = !wbuf.empty() || rbuf.empty();
  const size_t total = writing ? wbuf.size() : rbuf.size();
  size_t done = 0;
  do {
    const uint64_t off = offset == kAtPosition ? kAtPosition : offset + done;
    void* rptr = rbuf.data() + (writing ? 0 : done);
    const void* wptr = wbuf.data() + (writing ? done : 0);
    const size_t len = total - done;
    int res = io->run(
        [&](io_uring_sqe* sqe) {
          if (writing) io_uring_prep_write(sqe, fd, wptr, static_cast<unsigned>(len), off);
          else io_uring_prep_read(sqe, fd, rptr, static_cast<unsigned>(len), off);
        },
        [&]() -> int {
          ssize_t n;
          if (writing) n = off == kAtPosition ? ::write(fd, wptr, len) : ::pwrite(fd, wptr, len, static_cast<off_t>(off));
          else n = off == kAtPosition ? ::read(fd, rptr, len) : ::pread(fd, rptr, len, static_cast<off_t>(off));
          return n < 0 ? -errno : static_cast<int>(n);
        },
        wait_reason::file_io, deadline(), 0);
    if (res < 0) return {done, to_error(res)};
    done += static_cast<size_t>(res);
    if (res == 0) break;  // end of file (reads), or a device that takes nothing
  } while (all && done < total);
  return {done, {}};
}
}  // namespace

io_result file::read_some(std::span<std::byte> buf) { return transfer(io_, buf, {}, kAtPosition, false); }
io_result file::read_at(std::span<std::byte> buf, uint64_t offset) { return transfer(io_, buf, {}, offset, true); }
io_result file::write_all(std::span<const std::byte> buf) { return transfer(io_, {}, buf, kAtPosition, true); }
io_result file::write_all_at(std::span<const std::byte> buf, uint64_t offset) {
  return transfer(io_, {}, buf, offset, true);
}

result<void> file::sync() {
  if (io_ == nullptr) return errno_code(EBADF);
  const int fd = io_->fd();
  int res = io_->run([&](io_uring_sqe* sqe) { io_uring_prep_fsync(sqe, fd, 0); },
                     [&]() -> int { return ::fsync(fd) == 0 ? 0 : -errno; }, wait_reason::file_io, deadline(), 0);
  if (res < 0) return to_error(res);
  return {};
}

result<uint64_t> file::size() const {
  if (io_ == nullptr) return errno_code(EBADF);
  struct stat st;
  if (::fstat(io_->fd(), &st) != 0) return errno_code(errno);
  return static_cast<uint64_t>(st.st_size);
}

}  // namespace bobbin
