#include "bobbin/net/tcp_listener.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "runtime/io/io_object.h"

namespace bobbin {

using internal::io_object;

tcp_listener::tcp_listener(tcp_listener&& o) noexcept : io_(std::exchange(o.io_, nullptr)), local_(o.local_) {}

tcp_listener& tcp_listener::operator=(tcp_listener&& o) noexcept {
  if (this != &o) {
    close();
    io_ = std::exchange(o.io_, nullptr);
    local_ = o.local_;
  }
  return *this;
}

tcp_listener::~tcp_listener() { close(); }

void tcp_listener::close() {
  if (io_ == nullptr) return;
  // From here stop_accepting() leaves the fd alone, so io_->close() may
  // close it without a concurrent shutdown() landing on a reused number.
  stop_lock_.lock();
  closing_ = true;
  stop_lock_.unlock();
  // io_ itself changes only after io_object::close() has waited out the
  // operations in flight, which orders it after a cancelled accept().
  io_->close();
  stop_lock_.lock();
  internal::io_object* io = std::exchange(io_, nullptr);
  closing_ = false;
  stop_lock_.unlock();
  delete io;
}

void tcp_listener::stop_accepting() {
  // shutdown() on a listening socket wakes its waiters (io_uring re-polls its
  // pending accept, which then fails with EINVAL) and makes later accepts
  // fail the same way; unlike close() it leaves the fd and io_ in place, so
  // it cannot race with a concurrent accept().
  // Under the lock, with close() not begun, the fd cannot be closed.
  stop_lock_.lock();
  if (io_ != nullptr && !closing_) ::shutdown(io_->fd(), SHUT_RDWR);
  stop_lock_.unlock();
}

absl::StatusOr<tcp_listener> tcp_listener::bind(const socket_address& at, int backlog) {
  int fd = ::socket(at.family(), SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::ErrnoToStatus(errno, "bobbin: socket()");
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(fd, at.data(), at.size()) != 0) {
    int err = errno;
    ::close(fd);
    return absl::ErrnoToStatus(err, absl::StrCat("bobbin: bind to ", at.to_string()));
  }
  if (::listen(fd, backlog) != 0) {
    int err = errno;
    ::close(fd);
    return absl::ErrnoToStatus(err, absl::StrCat("bobbin: listen on ", at.to_string()));
  }
  tcp_listener l;
  l.io_ = new io_object(fd, /*is_socket=*/true);
  sockaddr_storage ss;
  socklen_t len = sizeof ss;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
  l.local_ = socket_address::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len);
  return l;
}

result<tcp_stream> tcp_listener::accept(deadline d) {
  if (io_ == nullptr) return errno_code(EBADF);
  const int fd = io_->fd();
  int res = io_->run([&](io_uring_sqe* sqe) { io_uring_prep_accept(sqe, fd, nullptr, nullptr, SOCK_CLOEXEC); },
                     [&]() -> int {
                       int c = ::accept4(fd, nullptr, nullptr, SOCK_CLOEXEC);
                       return c < 0 ? -errno : c;
                     },
                     wait_reason::net_accept, d, POLLIN);
  if (res < 0) return internal::to_error(res);
  return tcp_stream(res);
}

socket_address tcp_listener::local_address() const { return local_; }

}  // namespace bobbin
