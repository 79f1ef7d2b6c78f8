// Interceptors for the data-moving calls: read/write and their vector and
// positional forms, the recv and send families, accept and connect.
//
// The rule for each, on a fiber that may park (fiber_calls.h):
//   1. Try the call without blocking (RWF_NOWAIT, MSG_DONTWAIT). Data there,
//      room there, or an error: that is the answer, at the cost of the plain
//      call. Most calls of a busy server end here.
//   2. It would block. If the fd is O_NONBLOCK the caller asked for EAGAIN:
//      make the plain call, which gives exactly what the kernel gives.
//   3. Otherwise park on the same operation on the carrier's ring, bounded
//      by the socket's SO_RCVTIMEO/SO_SNDTIMEO (expiry gives EAGAIN, as the
//      kernel does). A blocking write returns only when all of it is written
//      (or an error or timeout cuts it short), so writes loop on the ring.
// Off a fiber each is the plain call behind one branch.
// The interceptors must define glibc's own names: no fortify wrappers and no
// pread -> pread64 redirection (meson builds with _FILE_OFFSET_BITS=64).
#undef _FORTIFY_SOURCE
#undef _FILE_OFFSET_BITS
#include <liburing.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>

#include "absl/container/inlined_vector.h"
#include "runtime/intercept/fiber_calls.h"
#include "runtime/intercept/libc.h"

namespace bobbin::internal::intercept {
namespace real {
BOBBIN_NEXT_SYMBOL(read)
BOBBIN_NEXT_SYMBOL(write)
BOBBIN_NEXT_SYMBOL(readv)
BOBBIN_NEXT_SYMBOL(writev)
BOBBIN_NEXT_SYMBOL(pread)
BOBBIN_NEXT_SYMBOL(pwrite)
BOBBIN_NEXT_SYMBOL(pread64)
BOBBIN_NEXT_SYMBOL(pwrite64)
BOBBIN_NEXT_SYMBOL(preadv)
BOBBIN_NEXT_SYMBOL(pwritev)
BOBBIN_NEXT_SYMBOL(recv)
BOBBIN_NEXT_SYMBOL(recvfrom)
BOBBIN_NEXT_SYMBOL(recvmsg)
BOBBIN_NEXT_SYMBOL(send)
BOBBIN_NEXT_SYMBOL(sendto)
BOBBIN_NEXT_SYMBOL(sendmsg)
BOBBIN_NEXT_SYMBOL(accept)
BOBBIN_NEXT_SYMBOL(accept4)
BOBBIN_NEXT_SYMBOL(connect)
BOBBIN_NEXT_SYMBOL(setsockopt)
}  // namespace real

namespace {

constexpr off_t kAtPosition = -1;  // preadv2/io_uring: use (and move) the file position

// A deadline from SO_*TIMEO that passed reads as EAGAIN, like the kernel's.
int timeout_to_eagain(int res, const deadline& d) {
  return res == -ETIMEDOUT && !d.is_never() && d.expired() ? -EAGAIN : res;
}

// The fiber_* helpers are kept out of line so that each interceptor's path
// off a fiber is a thread-local load, a branch and a tail call to libc.

// Reads into `iov` as a blocking read(2)/pread(2)/readv(2) would. `plain`
// makes the plain call (for O_NONBLOCK fds).
template <class Plain>
__attribute__((noinline)) ssize_t fiber_read(carrier* c, int fd, const iovec* iov, int iovcnt, off_t offset, Plain&& plain) {
  ssize_t r = ::preadv2(fd, iov, iovcnt, offset, RWF_NOWAIT);
  if (r >= 0) return r;
  const int err = errno;
  if (err == EAGAIN) {
    if (nonblocking(fd)) return plain();
  } else if (err != EOPNOTSUPP) {  // EOPNOTSUPP: no non-blocking attempt possible (a tty): use the ring
    errno = err;
    return -1;
  }
  const deadline d = socket_timeout(fd, SO_RCVTIMEO);
  int res = park_on_ring(
      c,
      [&](io_uring_sqe* sqe) {
        if (iovcnt == 1) io_uring_prep_read(sqe, fd, iov[0].iov_base, static_cast<unsigned>(iov[0].iov_len), offset);
        else io_uring_prep_readv(sqe, fd, iov, static_cast<unsigned>(iovcnt), offset);
      },
      wait_reason::libc_read, d);
  return to_libc_result(timeout_to_eagain(res, d));
}

size_t total_length(const iovec* iov, int iovcnt) {
  size_t n = 0;
  for (int i = 0; i < iovcnt; i++) n += iov[i].iov_len;
  return n;
}

using iovec_list = absl::InlinedVector<iovec, 8>;

// Drops the first `n` bytes of `v`.
void advance(iovec_list& v, size_t n) {
  size_t i = 0;
  while (i < v.size() && n >= v[i].iov_len) n -= v[i++].iov_len;
  v.erase(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(i));
  if (!v.empty()) {
    v[0].iov_base = static_cast<char*>(v[0].iov_base) + n;
    v[0].iov_len -= n;
  }
}

// Finishes a blocking write of which `done` bytes went out: parks on the
// ring until the rest is written, `d` passes or an error ends it. `prep`
// fills an SQE for the remaining iovecs and the offset they start at.
template <class Prep>
ssize_t finish_write(carrier* c, const iovec* iov, int iovcnt, size_t done, size_t total, deadline d, Prep&& prep) {
  iovec_list rest(iov, iov + iovcnt);
  advance(rest, done);
  while (done < total) {
    int res = park_on_ring(c, [&](io_uring_sqe* sqe) { prep(sqe, rest, done); }, wait_reason::libc_write, d);
    if (res <= 0) {
      if (done > 0) return static_cast<ssize_t>(done);  // the kernel reports partial progress, not the error
      if (res == 0) return 0;
      return to_libc_result(timeout_to_eagain(res, d));
    }
    done += static_cast<size_t>(res);
    advance(rest, static_cast<size_t>(res));
  }
  return static_cast<ssize_t>(done);
}

template <class Plain>
__attribute__((noinline)) ssize_t fiber_write(carrier* c, int fd, const iovec* iov, int iovcnt, off_t offset, Plain&& plain) {
  const size_t total = total_length(iov, iovcnt);
  ssize_t r = ::pwritev2(fd, iov, iovcnt, offset, RWF_NOWAIT);
  if (r >= 0 && static_cast<size_t>(r) == total) return r;
  if (r < 0 && errno != EAGAIN && errno != EOPNOTSUPP) return -1;
  const size_t done = r > 0 ? static_cast<size_t>(r) : 0;
  if (!(r < 0 && errno == EOPNOTSUPP) && nonblocking(fd)) {
    return done > 0 ? static_cast<ssize_t>(done) : plain();
  }
  return finish_write(c, iov, iovcnt, done, total, socket_timeout(fd, SO_SNDTIMEO),
                      [&](io_uring_sqe* sqe, const iovec_list& rest, size_t written) {
                        const off_t at = offset == kAtPosition ? kAtPosition : offset + static_cast<off_t>(written);
                        io_uring_prep_writev(sqe, fd, rest.data(), static_cast<unsigned>(rest.size()), at);
                      });
}

// recv, recvfrom, recvmsg: `attempt(flags)` is the plain call with those
// flags; `prep` fills the SQE of the same receive.
template <class Attempt, class Prep>
__attribute__((noinline)) ssize_t fiber_receive(carrier* c, int fd, int flags, Attempt&& attempt, Prep&& prep) {
  if (flags & MSG_DONTWAIT) return attempt(flags);
  // MSG_WAITALL wants all of it: a first non-blocking part would break that.
  if (!(flags & MSG_WAITALL)) {
    ssize_t r = attempt(flags | MSG_DONTWAIT);
    if (r >= 0 || errno != EAGAIN) return r;
  }
  if (nonblocking(fd)) return attempt(flags);
  const deadline d = socket_timeout(fd, SO_RCVTIMEO);
  int res = park_on_ring(c, prep, wait_reason::libc_read, d);
  return to_libc_result(timeout_to_eagain(res, d));
}

// sendmsg with the semantics of a blocking socket: all of it, or an error.
__attribute__((noinline)) ssize_t fiber_sendmsg(carrier* c, int fd, const msghdr* msg, int flags) {
  if (flags & MSG_DONTWAIT) return real::sendmsg(fd, msg, flags);
  const size_t total = total_length(msg->msg_iov, static_cast<int>(msg->msg_iovlen));
  ssize_t r = real::sendmsg(fd, msg, flags | MSG_DONTWAIT);
  if (r >= 0 && static_cast<size_t>(r) == total) return r;
  if (r < 0 && errno != EAGAIN) return -1;
  const size_t done = r > 0 ? static_cast<size_t>(r) : 0;
  if (nonblocking(fd)) return done > 0 ? static_cast<ssize_t>(done) : real::sendmsg(fd, msg, flags);
  msghdr m = *msg;
  return finish_write(c, msg->msg_iov, static_cast<int>(msg->msg_iovlen), done, total,
                      socket_timeout(fd, SO_SNDTIMEO),
                      [&](io_uring_sqe* sqe, const iovec_list& rest, size_t written) {
                        m.msg_iov = const_cast<iovec*>(rest.data());
                        m.msg_iovlen = rest.size();
                        if (written > 0) {  // ancillary data went with the first bytes
                          m.msg_control = nullptr;
                          m.msg_controllen = 0;
                        }
                        io_uring_prep_sendmsg(sqe, fd, &m, static_cast<unsigned>(flags));
                      });
}

__attribute__((noinline)) ssize_t fiber_send(carrier* c, int fd, const void* buf, size_t len, int flags, const sockaddr* to, socklen_t tolen) {
  iovec iov{const_cast<void*>(buf), len};
  msghdr m{};
  m.msg_name = const_cast<sockaddr*>(to);
  m.msg_namelen = tolen;
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  return fiber_sendmsg(c, fd, &m, flags);
}

}  // namespace
}  // namespace bobbin::internal::intercept

using bobbin::internal::carrier;
using namespace bobbin::internal::intercept;  // NOLINT: the interceptors below are its whole point

__attribute__((noinline)) static ssize_t read_on_carrier(int fd, void* buf, size_t n) {
  carrier* c = parking_carrier();
  if (c == nullptr) return real::read(fd, buf, n);
  iovec iov{buf, n};
  return fiber_read(c, fd, &iov, 1, kAtPosition, [&] { return real::read(fd, buf, n); });
}

BOBBIN_INTERPOSE ssize_t read(int fd, void* buf, size_t n) {
  if (__builtin_expect(bobbin::internal::tls_carrier == nullptr, 1)) return real::read(fd, buf, n);
  return read_on_carrier(fd, buf, n);
}

__attribute__((noinline)) static ssize_t readv_on_carrier(int fd, const iovec* iov, int iovcnt) {
  carrier* c = parking_carrier();
  if (c == nullptr) return real::readv(fd, iov, iovcnt);
  return fiber_read(c, fd, iov, iovcnt, kAtPosition, [&] { return real::readv(fd, iov, iovcnt); });
}

BOBBIN_INTERPOSE ssize_t readv(int fd, const iovec* iov, int iovcnt) {
  if (__builtin_expect(bobbin::internal::tls_carrier == nullptr, 1)) return real::readv(fd, iov, iovcnt);
  return readv_on_carrier(fd, iov, iovcnt);
}

__attribute__((noinline)) static ssize_t pread_on_carrier(int fd, void* buf, size_t n, off_t offset) {
  carrier* c = parking_carrier();
  if (c == nullptr) return real::pread(fd, buf, n, offset);
  if (offset < 0) return real::pread(fd, buf, n, offset);  // EINVAL, as the kernel says it
  iovec iov{buf, n};
  return fiber_read(c, fd, &iov, 1, offset, [&] { return real::pread(fd, buf, n, offset); });
}

BOBBIN_INTERPOSE ssize_t pread(int fd, void* buf, size_t n, off_t offset) {
  if (__builtin_expect(bobbin::internal::tls_carrier == nullptr, 1)) return real::pread(fd, buf, n, offset);
  return pread_on_carrier(fd, buf, n, offset);
}

__attribute__((noinline)) static ssize_t pread64_on_carrier(int fd, void* buf, size_t n, off64_t offset) {
  carrier* c = parking_carrier();
  if (c == nullptr || offset < 0) return real::pread64(fd, buf, n, offset);
  iovec iov{buf, n};
  return fiber_read(c, fd, &iov, 1, offset, [&] { return real::pread64(fd, buf, n, offset); });
}

BOBBIN_INTERPOSE ssize_t pread64(int fd, void* buf, size_t n, off64_t offset) {
  if (__builtin_expect(bobbin::internal::tls_carrier == nullptr, 1)) return real::pread64(fd, buf, n, offset);
  return pread64_on_carrier(fd, buf, n, offset);
}

__attribute__((noinline)) static ssize_t preadv_on_carrier(int fd, const iovec* iov, int iovcnt, off_t offset) {
  carrier* c = parking_carrier();
  if (c == nullptr || offset < 0) return real::preadv(fd, iov, iovcnt, offset);
  return fiber_read(c, fd, iov, iovcnt, offset, [&] { return real::preadv(fd, iov, iovcnt, offset); });
}

BOBBIN_INTERPOSE ssize_t preadv(int fd, const iovec* iov, int iovcnt, off_t offset) {
  if (__builtin_expect(bobbin::internal::tls_carrier == nullptr, 1)) return real::preadv(fd, iov, iovcnt, offset);
  return preadv_on_carrier(fd, iov, iovcnt, offset);
}

__attribute__((noinline)) static ssize_t write_on_carrier(int fd, const void* buf, size_t n) {
  carrier* c = parking_carrier();
  if (c == nullptr) return real::write(fd, buf, n);
  iovec iov{const_cast<void*>(buf), n};
  return fiber_write(c, fd, &iov, 1, kAtPosition, [&] { return real::write(fd, buf, n); });
}

BOBBIN_INTERPOSE ssize_t write(int fd, const void* buf, size_t n) {
  if (__builtin_expect(bobbin::internal::tls_carrier == nullptr, 1)) return real::write(fd, buf, n);
  return write_on_carrier(fd, buf, n);
}

__attribute__((noinline)) static ssize_t writev_on_carrier(int fd, const iovec* iov, int iovcnt) {
  carrier* c = parking_carrier();
  if (c == nullptr) return real::writev(fd, iov, iovcnt);
  return fiber_write(c, fd, iov, iovcnt, kAtPosition, [&] { return real::writev(fd, iov, iovcnt); });
}

BOBBIN_INTERPOSE ssize_t writev(int fd, const iovec* iov, int iovcnt) {
  if (__builtin_expect(bobbin::internal::tls_carrier == nullptr, 1)) return real::writev(fd, iov, iovcnt);
  return writev_on_carrier(fd, iov, iovcnt);
}

__attribute__((noinline)) static ssize_t pwrite_on_carrier(int fd, const void* buf, size_t n, off_t offset) {
  carrier* c = parking_carrier();
  if (c == nullptr || offset < 0) return real::pwrite(fd, buf, n, offset);
  iovec iov{const_cast<void*>(buf), n};
  return fiber_write(c, fd, &iov, 1, offset, [&] { return real::pwrite(fd, buf, n, offset); });
}

BOBBIN_INTERPOSE ssize_t pwrite(int fd, const void* buf, size_t n, off_t offset) {
  if (__builtin_expect(bobbin::internal::tls_carrier == nullptr, 1)) return real::pwrite(fd, buf, n, offset);
  return pwrite_on_carrier(fd, buf, n, offset);
}

__attribute__((noinline)) static ssize_t pwrite64_on_carrier(int fd, const void* buf, size_t n, off64_t offset) {
  carrier* c = parking_carrier();
  if (c == nullptr || offset < 0) return real::pwrite64(fd, buf, n, offset);
  iovec iov{const_cast<void*>(buf), n};
  return fiber_write(c, fd, &iov, 1, offset, [&] { return real::pwrite64(fd, buf, n, offset); });
}

BOBBIN_INTERPOSE ssize_t pwrite64(int fd, const void* buf, size_t n, off64_t offset) {
  if (__builtin_expect(bobbin::internal::tls_carrier == nullptr, 1)) return real::pwrite64(fd, buf, n, offset);
  return pwrite64_on_carrier(fd, buf, n, offset);
}

__attribute__((noinline)) static ssize_t pwritev_on_carrier(int fd, const iovec* iov, int iovcnt, off_t offset) {
  carrier* c = parking_carrier();
  if (c == nullptr || offset < 0) return real::pwritev(fd, iov, iovcnt, offset);
  return fiber_write(c, fd, iov, iovcnt, offset, [&] { return real::pwritev(fd, iov, iovcnt, offset); });
}

BOBBIN_INTERPOSE ssize_t pwritev(int fd, const iovec* iov, int iovcnt, off_t offset) {
  if (__builtin_expect(bobbin::internal::tls_carrier == nullptr, 1)) return real::pwritev(fd, iov, iovcnt, offset);
  return pwritev_on_carrier(fd, iov, iovcnt, offset);
}

__attribute__((noinline)) static ssize_t recv_on_carrier(int fd, void* buf, size_t n, int flags) {
  carrier* c = parking_carrier();
  if (c == nullptr) return real::recv(fd, buf, n, flags);
  return fiber_receive(
      c, fd, flags, [&](int f) { return real::recv(fd, buf, n, f); },
      [&](io_uring_sqe* sqe) { io_uring_prep_recv(sqe, fd, buf, n, flags); });
}

BOBBIN_INTERPOSE ssize_t recv(int fd, void* buf, size_t n, int flags) {
  if (__builtin_expect(bobbin::internal::tls_carrier == nullptr, 1)) return real::recv(fd, buf, n, flags);
  return recv_on_carrier(fd, buf, n, flags);
}

__attribute__((noinline)) static ssize_t recvfrom_on_carrier(int fd, void* buf, size_t n, int flags, sockaddr* from, socklen_t* fromlen) {
  carrier* c = parking_carrier();
  if (c == nullptr) return real::recvfrom(fd, buf, n, flags, from, fromlen);
  iovec iov{buf, n};
  msghdr m{};
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  if (from != nullptr && fromlen != nullptr) {
    m.msg_name = from;
    m.msg_namelen = *fromlen;
  }
  bool via_ring = false;
  ssize_t r = fiber_receive(
      c, fd, flags, [&](int f) { return real::recvfrom(fd, buf, n, f, from, fromlen); },
      [&](io_uring_sqe* sqe) {
        via_ring = true;
        io_uring_prep_recvmsg(sqe, fd, &m, static_cast<unsigned>(flags));
      });
  // The plain paths wrote *fromlen themselves; the ring's wrote m.
  if (via_ring && r >= 0 && m.msg_name != nullptr) *fromlen = m.msg_namelen;
  return r;
}

BOBBIN_INTERPOSE ssize_t recvfrom(int fd, void* buf, size_t n, int flags, sockaddr* from, socklen_t* fromlen) {
  if (__builtin_expect(bobbin::internal::tls_carrier == nullptr, 1)) return real::recvfrom(fd, buf, n, flags, from, fromlen);
  return recvfrom_on_carrier(fd, buf, n, flags, from, fromlen);
}

__attribute__((noinline)) static ssize_t recvmsg_on_carrier(int fd, msghdr* msg, int flags) {
  carrier* c = parking_carrier();
  if (c == nullptr) return real::recvmsg(fd, msg, flags);
  return fiber_receive(
      c, fd, flags, [&](int f) { return real::recvmsg(fd, msg, f); },
      [&](io_uring_sqe* sqe) { io_uring_prep_recvmsg(sqe, fd, msg, static_cast<unsigned>(flags)); });
}

BOBBIN_INTERPOSE ssize_t recvmsg(int fd, msghdr* msg, int flags) {
  if (__builtin_expect(bobbin::internal::tls_carrier == nullptr, 1)) return real::recvmsg(fd, msg, flags);
  return recvmsg_on_carrier(fd, msg, flags);
}

__attribute__((noinline)) static ssize_t send_on_carrier(int fd, const void* buf, size_t n, int flags) {
  carrier* c = parking_carrier();
  if (c == nullptr) return real::send(fd, buf, n, flags);
  return fiber_send(c, fd, buf, n, flags, nullptr, 0);
}

BOBBIN_INTERPOSE ssize_t send(int fd, const void* buf, size_t n, int flags) {
  if (__builtin_expect(bobbin::internal::tls_carrier == nullptr, 1)) return real::send(fd, buf, n, flags);
  return send_on_carrier(fd, buf, n, flags);
}

__attribute__((noinline)) static ssize_t sendto_on_carrier(int fd, const void* buf, size_t n, int flags, const sockaddr* to, socklen_t tolen) {
  carrier* c = parking_carrier();
  if (c == nullptr) return real::sendto(fd, buf, n, flags, to, tolen);
  return fiber_send(c, fd, buf, n, flags, to, tolen);
}

BOBBIN_INTERPOSE ssize_t sendto(int fd, const void* buf, size_t n, int flags, const sockaddr* to, socklen_t tolen) {
  if (__builtin_expect(bobbin::internal::tls_carrier == nullptr, 1)) return real::sendto(fd, buf, n, flags, to, tolen);
  return sendto_on_carrier(fd, buf, n, flags, to, tolen);
}

__attribute__((noinline)) static ssize_t sendmsg_on_carrier(int fd, const msghdr* msg, int flags) {
  carrier* c = parking_carrier();
  if (c == nullptr) return real::sendmsg(fd, msg, flags);
  return fiber_sendmsg(c, fd, msg, flags);
}

BOBBIN_INTERPOSE ssize_t sendmsg(int fd, const msghdr* msg, int flags) {
  if (__builtin_expect(bobbin::internal::tls_carrier == nullptr, 1)) return real::sendmsg(fd, msg, flags);
  return sendmsg_on_carrier(fd, msg, flags);
}

namespace {
__attribute__((noinline)) int fiber_accept(carrier* c, int fd, sockaddr* addr, socklen_t* len, int flags) {
  if (nonblocking(fd)) return real::accept4(fd, addr, len, flags);
  const bobbin::deadline d = socket_timeout(fd, SO_RCVTIMEO);
  int res = park_on_ring(c, [&](io_uring_sqe* sqe) { io_uring_prep_accept(sqe, fd, addr, len, flags); },
                         bobbin::wait_reason::libc_accept, d);
  return static_cast<int>(to_libc_result(timeout_to_eagain(res, d)));
}
}  // namespace

__attribute__((noinline)) static int accept_on_carrier(int fd, sockaddr* addr, socklen_t* len) {
  carrier* c = parking_carrier();
  if (c == nullptr) return real::accept(fd, addr, len);
  return fiber_accept(c, fd, addr, len, 0);
}

BOBBIN_INTERPOSE int accept(int fd, sockaddr* addr, socklen_t* len) {
  if (__builtin_expect(bobbin::internal::tls_carrier == nullptr, 1)) return real::accept(fd, addr, len);
  return accept_on_carrier(fd, addr, len);
}

__attribute__((noinline)) static int accept4_on_carrier(int fd, sockaddr* addr, socklen_t* len, int flags) {
  carrier* c = parking_carrier();
  if (c == nullptr) return real::accept4(fd, addr, len, flags);
  return fiber_accept(c, fd, addr, len, flags);
}

BOBBIN_INTERPOSE int accept4(int fd, sockaddr* addr, socklen_t* len, int flags) {
  if (__builtin_expect(bobbin::internal::tls_carrier == nullptr, 1)) return real::accept4(fd, addr, len, flags);
  return accept4_on_carrier(fd, addr, len, flags);
}

__attribute__((noinline)) static int connect_on_carrier(int fd, const sockaddr* addr, socklen_t len) {
  carrier* c = parking_carrier();
  if (c == nullptr || nonblocking(fd)) return real::connect(fd, addr, len);
  const bobbin::deadline d = socket_timeout(fd, SO_SNDTIMEO);
  int res = park_on_ring(c, [&](io_uring_sqe* sqe) { io_uring_prep_connect(sqe, fd, addr, len); },
                         bobbin::wait_reason::libc_connect, d);
  // A connect cut short by SO_SNDTIMEO goes on in the background: EINPROGRESS.
  if (res == -ETIMEDOUT && !d.is_never() && d.expired()) res = -EINPROGRESS;
  return static_cast<int>(to_libc_result(res));
}

BOBBIN_INTERPOSE int connect(int fd, const sockaddr* addr, socklen_t len) {
  if (__builtin_expect(bobbin::internal::tls_carrier == nullptr, 1)) return real::connect(fd, addr, len);
  return connect_on_carrier(fd, addr, len);
}

// Not a blocking call: intercepted only to learn whether any socket has a
// send or receive timeout (fiber_calls.h, socket_timeout), on any thread.
BOBBIN_INTERPOSE int setsockopt(int fd, int level, int name, const void* value, socklen_t len) {
  note_socket_option(level, name);
  return real::setsockopt(fd, level, name, value, len);
}
