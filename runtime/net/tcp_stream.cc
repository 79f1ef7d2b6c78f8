#include "bobbin/net/tcp_stream.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

#include "runtime/io/io_object.h"

namespace bobbin {

using internal::io_object;
using internal::to_error;

tcp_stream::tcp_stream(int fd) : io_(new io_object(fd, /*is_socket=*/true)) {}

tcp_stream::tcp_stream(tcp_stream&& o) noexcept : io_(std::exchange(o.io_, nullptr)) {}

tcp_stream& tcp_stream::operator=(tcp_stream&& o) noexcept {
  if (this != &o) {
    close();
    io_ = std::exchange(o.io_, nullptr);
  }
  return *this;
}

tcp_stream::~tcp_stream() { close(); }

void tcp_stream::close() {
  if (io_ == nullptr) return;
  io_->close();
  delete io_;
  io_ = nullptr;
}

int tcp_stream::native_handle() const noexcept { return io_ ? io_->fd() : -1; }

result<tcp_stream> tcp_stream::connect(const socket_address& to, deadline d) {
  int fd = ::socket(to.family(), SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return errno_code(errno);
  tcp_stream s(fd);
  int res = s.io_->run(
      [&](io_uring_sqe* sqe) { io_uring_prep_connect(sqe, fd, to.data(), to.size()); },
      [&]() -> int {
        // A plain thread: a non-blocking connect bounded by poll().
        int flags = ::fcntl(fd, F_GETFL);
        ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
        int r = ::connect(fd, to.data(), to.size());
        int err = r == 0 ? 0 : errno;
        if (err == EINPROGRESS) {
          err = -internal::poll_fd(fd, POLLOUT, d);
          if (err == 0) {
            socklen_t len = sizeof err;
            ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
          }
        }
        ::fcntl(fd, F_SETFL, flags);
        return -err;
      },
      wait_reason::net_connect, d, /*events=*/0);
  if (res < 0) return to_error(res);
  return s;
}

io_result tcp_stream::read_some(std::span<std::byte> buf, deadline d) {
  if (io_ == nullptr) return {0, errno_code(EBADF)};
  const int fd = io_->fd();
  int res = io_->run([&](io_uring_sqe* sqe) { io_uring_prep_recv(sqe, fd, buf.data(), buf.size(), 0); },
                     [&]() -> int {
                       ssize_t n = ::recv(fd, buf.data(), buf.size(), 0);
                       return n < 0 ? -errno : static_cast<int>(n);
                     },
                     wait_reason::net_read, d, POLLIN);
  if (res < 0) return {0, to_error(res)};
  return {static_cast<size_t>(res), {}};
}

io_result tcp_stream::read_exact(std::span<std::byte> buf, deadline d) {
  size_t got = 0;
  while (got < buf.size()) {
    io_result r = read_some(buf.subspan(got), d);
    got += r.bytes;
    if (!r) return {got, r.error};
    if (r.bytes == 0) return {got, make_error_code(io_errc::unexpected_eof)};
  }
  return {got, {}};
}

io_result tcp_stream::write_all(std::span<const std::byte> buf, deadline d) {
  if (io_ == nullptr) return {0, errno_code(EBADF)};
  const int fd = io_->fd();
  size_t done = 0;
  while (done < buf.size()) {
    auto rest = buf.subspan(done);
    int res = io_->run([&](io_uring_sqe* sqe) { io_uring_prep_send(sqe, fd, rest.data(), rest.size(), MSG_NOSIGNAL); },
                       [&]() -> int {
                         ssize_t n = ::send(fd, rest.data(), rest.size(), MSG_NOSIGNAL);
                         return n < 0 ? -errno : static_cast<int>(n);
                       },
                       wait_reason::net_write, d, POLLOUT);
    if (res < 0) return {done, to_error(res)};
    done += static_cast<size_t>(res);
  }
  return {done, {}};
}

result<void> tcp_stream::shutdown(shutdown_how how) {
  if (io_ == nullptr) return errno_code(EBADF);
  if (::shutdown(io_->fd(), static_cast<int>(how)) != 0) return errno_code(errno);
  return {};
}

result<void> tcp_stream::set_nodelay(bool on) {
  if (io_ == nullptr) return errno_code(EBADF);
  int v = on ? 1 : 0;
  if (::setsockopt(io_->fd(), IPPROTO_TCP, TCP_NODELAY, &v, sizeof v) != 0) return errno_code(errno);
  return {};
}

result<socket_address> tcp_stream::peer_address() const {
  if (io_ == nullptr) return errno_code(EBADF);
  sockaddr_storage ss;
  socklen_t len = sizeof ss;
  if (::getpeername(io_->fd(), reinterpret_cast<sockaddr*>(&ss), &len) != 0) return errno_code(errno);
  return socket_address::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len);
}

result<socket_address> tcp_stream::local_address() const {
  if (io_ == nullptr) return errno_code(EBADF);
  sockaddr_storage ss;
  socklen_t len = sizeof ss;
  if (::getsockname(io_->fd(), reinterpret_cast<sockaddr*>(&ss), &len) != 0) return errno_code(errno);
  return socket_address::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len);
}

}  // namespace bobbin
