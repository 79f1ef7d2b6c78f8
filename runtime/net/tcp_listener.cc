#include "bobbin/net/tcp_listener.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "bobbin/this_fiber.h"
#include "runtime/io/io_object.h"
#include "runtime/intercept/libc.h"

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
  // Non-blocking: accept() tries the accept itself before it waits (see
  // there). io_uring's accept still waits for a connection on such a
  // socket (it arms a poll on EAGAIN).
  int fd = ::socket(at.family(), SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
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

namespace {

// accept4 past bobbin's own libc interception (the fd is non-blocking, so it
// would pass through anyway, after an fcntl to find that out).
int accept_now(int fd) {
  for (;;) {
    long c = bobbin::internal::libc::syscall(SYS_accept4, fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (c >= 0) return static_cast<int>(c);
    if (errno != EINTR) return -errno;
  }
}

}  // namespace

result<tcp_stream> tcp_listener::accept(deadline d) {
  if (io_ == nullptr) return errno_code(EBADF);
  const int fd = io_->fd();
  // Go's order: take a connection the kernel already holds without parking.
  // A fiber that parks for each one goes to the back of the run queue for
  // each: during a burst that meets a busy server (10,000 echo connections
  // on one carrier, every one of them ready), each accept waited a whole
  // turn of the queue, ~40 ms, and the last hundred connections got their
  // first byte up to 4.9 s late. Costs one failed system call per wait.
  //
  // But not for a whole burst at once: an acceptor that never parks holds
  // its carrier, whose ring is then not reaped and whose queue does not
  // run, so established connections wait for the burst. 10,000 connections
  // arriving in 0.4 s beside 100 busy keep-alive clients (http_server, 2
  // carriers) held one of them 757 ms. After kAcceptsBeforeYield in a row,
  // the acceptor yields: one turn of the run queue (and, every 61st
  // switch, of the ring) per 32 connections. A burst of up to 32 is still
  // taken in one go (TcpTest.ABurstOfConnections...).
  if (internal::current_fiber_carrier() != nullptr) {
    constexpr uint32_t kAcceptsBeforeYield = 32;
    std::atomic<uint32_t>& streak = io_->completed_without_parking;
    if (streak.load(std::memory_order_relaxed) >= kAcceptsBeforeYield) {
      streak.store(0, std::memory_order_relaxed);
      this_fiber::yield();
    }
    const int c = io_->run_now([&] { return accept_now(fd); });
    if (c >= 0) {
      streak.fetch_add(1, std::memory_order_relaxed);
      return tcp_stream(c);
    }
    streak.store(0, std::memory_order_relaxed);  // about to park (or fail)
    if (c != -EAGAIN) return internal::to_error(c);
  }
  for (;;) {
    int res = io_->run([&](io_uring_sqe* sqe) { io_uring_prep_accept(sqe, fd, nullptr, nullptr, SOCK_CLOEXEC); },
                       [&]() -> int {
                         // A plain thread (or a pinned fiber): wait in poll(),
                         // since the socket does not block.
                         for (;;) {
                           const int c = accept_now(fd);
                           if (c != -EAGAIN) return c;
                           if (const int w = internal::poll_fd(fd, POLLIN, d); w < 0) return w;
                         }
                       },
                       wait_reason::net_accept, d, POLLIN);
    // A kernel whose io_uring answers EAGAIN for a non-blocking socket
    // instead of waiting: wait for readiness through the ring, then retry.
    if (res == -EAGAIN) {
      res = io_->run([&](io_uring_sqe* sqe) { io_uring_prep_poll_add(sqe, fd, POLLIN); }, [&]() -> int { return 0; },
                     wait_reason::net_accept, d, POLLIN);
      if (res >= 0) continue;
    }
    if (res < 0) return internal::to_error(res);
    return tcp_stream(res);
  }
}

socket_address tcp_listener::local_address() const { return local_; }

}  // namespace bobbin
