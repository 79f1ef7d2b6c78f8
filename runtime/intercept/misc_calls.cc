// Interceptors for the remaining blocking calls: fsync and fdatasync (an
// IORING_OP_FSYNC), and name resolution. glibc's resolver (getaddrinfo,
// getnameinfo) reads files and talks to DNS servers through glibc-internal
// calls that no interposer sees, so on a fiber a call that may look a name
// up runs on the runtime's blocking pool (bobbin/offload.h) while the fiber
// parks. A call that only converts numbers (an address literal to binary,
// or back; a port number) never waits, and runs in place: two thread hops
// would cost more than the call (cpp-httplib converts the peer's and its
// own address with getnameinfo(NI_NUMERICHOST) on every request).
// The interceptors must define glibc's own names: no fortify wrappers and no
// pread -> pread64 redirection (meson builds with _FILE_OFFSET_BITS=64).
#undef _FORTIFY_SOURCE
#undef _FILE_OFFSET_BITS
#include <arpa/inet.h>
#include <liburing.h>
#include <netdb.h>
#include <netinet/in.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "bobbin/offload.h"
#include "runtime/intercept/fiber_calls.h"
#include "runtime/intercept/libc.h"

namespace bobbin::internal::intercept {
namespace real {
BOBBIN_NEXT_SYMBOL(fsync)
BOBBIN_NEXT_SYMBOL(fdatasync)
BOBBIN_NEXT_SYMBOL(getaddrinfo)
BOBBIN_NEXT_SYMBOL(getnameinfo)
}  // namespace real

namespace {

int fiber_fsync(carrier* c, int fd, unsigned flags) {
  int res = park_on_ring(c, [&](io_uring_sqe* sqe) { io_uring_prep_fsync(sqe, fd, flags); }, wait_reason::libc_fsync);
  return static_cast<int>(to_libc_result(res));
}

// Runs `fn` on the blocking pool and carries errno back (EAI_SYSTEM leaves
// its reason there).
template <class F>
int resolve_offloaded(F&& fn) {
  int saved_errno = 0;
  int r = offload_on(nullptr, [&] {
    int rr = fn();
    saved_errno = errno;
    return rr;
  });
  errno = saved_errno;
  return r;
}

// Whether glibc's getaddrinfo can answer without looking anything up: the
// host is absent or an IPv4/IPv6 address literal (AI_NUMERICHOST makes
// glibc refuse anything else without a lookup), the service absent or a
// port number. AI_CANONNAME and AI_ADDRCONFIG (which a null `hints`
// implies) go to the pool: the first may ask for a name, the second asks
// the kernel and possibly nscd which address families are configured.
bool getaddrinfo_is_numeric(const char* node, const char* service, const addrinfo* hints) {
  if (hints == nullptr || (hints->ai_flags & (AI_CANONNAME | AI_ADDRCONFIG)) != 0) return false;
  if (node != nullptr && (hints->ai_flags & AI_NUMERICHOST) == 0) {
    unsigned char scratch[sizeof(in6_addr)];
    if (inet_pton(AF_INET, node, scratch) != 1 && inet_pton(AF_INET6, node, scratch) != 1) return false;
  }
  if (service != nullptr && (hints->ai_flags & AI_NUMERICSERV) == 0) {
    if (*service == '\0') return false;
    for (const char* p = service; *p != '\0'; p++) {
      if (*p < '0' || *p > '9') return false;
    }
  }
  return true;
}

// Whether glibc's getnameinfo can answer without looking anything up: an
// IPv4 or IPv6 address, the host asked for as a number (NI_NUMERICHOST) or
// not at all, the service as a number (NI_NUMERICSERV) or not at all.
bool getnameinfo_is_numeric(const sockaddr* addr, socklen_t addrlen, socklen_t hostlen, socklen_t servlen,
                            int flags) {
  if (addr == nullptr || addrlen < static_cast<socklen_t>(sizeof(sa_family_t))) return false;
  if (addr->sa_family != AF_INET && addr->sa_family != AF_INET6) return false;
  const bool host_numeric = hostlen == 0 || (flags & NI_NUMERICHOST) != 0;
  const bool serv_numeric = servlen == 0 || (flags & NI_NUMERICSERV) != 0;
  return host_numeric && serv_numeric;
}

}  // namespace
}  // namespace bobbin::internal::intercept

using bobbin::internal::carrier;
using namespace bobbin::internal::intercept;  // NOLINT: the interceptors below are its whole point

__attribute__((noinline)) static int fsync_on_carrier(int fd) {
  carrier* c = parking_carrier();
  if (c == nullptr) return real::fsync(fd);
  return fiber_fsync(c, fd, 0);
}

BOBBIN_INTERPOSE int fsync(int fd) {
  if (__builtin_expect(bobbin::internal::tls_carrier == nullptr, 1)) return real::fsync(fd);
  return fsync_on_carrier(fd);
}

__attribute__((noinline)) static int fdatasync_on_carrier(int fd) {
  carrier* c = parking_carrier();
  if (c == nullptr) return real::fdatasync(fd);
  return fiber_fsync(c, fd, IORING_FSYNC_DATASYNC);
}

BOBBIN_INTERPOSE int fdatasync(int fd) {
  if (__builtin_expect(bobbin::internal::tls_carrier == nullptr, 1)) return real::fdatasync(fd);
  return fdatasync_on_carrier(fd);
}

__attribute__((noinline)) static int getaddrinfo_on_carrier(const char* node, const char* service, const addrinfo* hints, addrinfo** res) {
  carrier* c = parking_carrier();
  if (c == nullptr || getaddrinfo_is_numeric(node, service, hints)) return real::getaddrinfo(node, service, hints, res);
  bobbin::internal::bump(c->intercepted_parks);
  return resolve_offloaded([&] { return real::getaddrinfo(node, service, hints, res); });
}

BOBBIN_INTERPOSE int getaddrinfo(const char* node, const char* service, const addrinfo* hints, addrinfo** res) {
  if (__builtin_expect(bobbin::internal::tls_carrier == nullptr, 1)) return real::getaddrinfo(node, service, hints, res);
  return getaddrinfo_on_carrier(node, service, hints, res);
}

__attribute__((noinline)) static int getnameinfo_on_carrier(const sockaddr* addr, socklen_t addrlen, char* host, socklen_t hostlen, char* serv,
                                 socklen_t servlen, int flags) {
  carrier* c = parking_carrier();
  if (c == nullptr || getnameinfo_is_numeric(addr, addrlen, host == nullptr ? 0 : hostlen,
                                             serv == nullptr ? 0 : servlen, flags)) {
    return real::getnameinfo(addr, addrlen, host, hostlen, serv, servlen, flags);
  }
  bobbin::internal::bump(c->intercepted_parks);
  return resolve_offloaded([&] { return real::getnameinfo(addr, addrlen, host, hostlen, serv, servlen, flags); });
}

BOBBIN_INTERPOSE int getnameinfo(const sockaddr* addr, socklen_t addrlen, char* host, socklen_t hostlen, char* serv,
                                 socklen_t servlen, int flags) {
  if (__builtin_expect(bobbin::internal::tls_carrier == nullptr, 1)) return real::getnameinfo(addr, addrlen, host, hostlen, serv, servlen, flags);
  return getnameinfo_on_carrier(addr, addrlen, host, hostlen, serv, servlen, flags);
}
