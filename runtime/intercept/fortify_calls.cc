// The _FORTIFY_SOURCE entry points. Debian builds its libraries (libpq,
// libcurl, hiredis, ...) with _FORTIFY_SOURCE=2, so where the compiler could
// not prove a buffer large enough they call __read_chk instead of read,
// __poll_chk instead of poll, and so on. Each checks its bound as glibc does
// (__chk_fail on overflow) and then takes the intercepted path.
// The interceptors must define glibc's own names: no fortify wrappers and no
// pread -> pread64 redirection (meson builds with _FILE_OFFSET_BITS=64).
#undef _FORTIFY_SOURCE
#undef _FILE_OFFSET_BITS
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "runtime/intercept/fiber_calls.h"

extern "C" [[noreturn]] void __chk_fail(void);  // glibc: "buffer overflow detected" and abort

BOBBIN_INTERPOSE ssize_t __read_chk(int fd, void* buf, size_t n, size_t buflen) {
  if (n > buflen) __chk_fail();
  return read(fd, buf, n);
}

BOBBIN_INTERPOSE ssize_t __pread_chk(int fd, void* buf, size_t n, off_t offset, size_t buflen) {
  if (n > buflen) __chk_fail();
  return pread(fd, buf, n, offset);
}

BOBBIN_INTERPOSE ssize_t __pread64_chk(int fd, void* buf, size_t n, off64_t offset, size_t buflen) {
  if (n > buflen) __chk_fail();
  return pread64(fd, buf, n, offset);
}

BOBBIN_INTERPOSE ssize_t __recv_chk(int fd, void* buf, size_t n, size_t buflen, int flags) {
  if (n > buflen) __chk_fail();
  return recv(fd, buf, n, flags);
}

BOBBIN_INTERPOSE ssize_t __recvfrom_chk(int fd, void* buf, size_t n, size_t buflen, int flags, sockaddr* from,
                                        socklen_t* fromlen) {
  if (n > buflen) __chk_fail();
  return recvfrom(fd, buf, n, flags, from, fromlen);
}

BOBBIN_INTERPOSE int __poll_chk(pollfd* fds, nfds_t n, int timeout_ms, size_t fdslen) {
  if (fdslen / sizeof(pollfd) < n) __chk_fail();
  return poll(fds, n, timeout_ms);
}

BOBBIN_INTERPOSE int __ppoll_chk(pollfd* fds, nfds_t n, const timespec* timeout, const sigset_t* mask,
                                 size_t fdslen) {
  if (fdslen / sizeof(pollfd) < n) __chk_fail();
  return ppoll(fds, n, timeout, mask);
}
