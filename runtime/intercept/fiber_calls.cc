#include "runtime/intercept/fiber_calls.h"

#include "bobbin/blocking_calls.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <atomic>
#include <cstdlib>
#include <cstring>

#include "runtime/intercept/libc.h"
#include "runtime/util/check.h"

namespace bobbin::internal {

void* libc::resolve_next(const char* name) noexcept {
  void* f = ::dlsym(RTLD_NEXT, name);
  if (f == nullptr) {
    write_stderr("bobbin: cannot find the libc function ");
    fatal(name);
  }
  return f;
}

bool libc::comes_before_bobbin(const char* name, std::atomic<int>& cache) noexcept {
  int b = cache.load(std::memory_order_relaxed);
  if (b == 0) {
    Dl_info mine{}, first{};
    void* found = ::dlsym(RTLD_DEFAULT, name);
    const bool ok = ::dladdr(reinterpret_cast<void*>(&libc::resolve_next), &mine) != 0 && found != nullptr &&
                    ::dladdr(found, &first) != 0;
    b = ok && mine.dli_fbase != first.dli_fbase ? 1 : 2;
    cache.store(b, std::memory_order_relaxed);
  }
  return b == 1;
}

namespace intercept {

int read_intercept_state() noexcept {
  const char* v = std::getenv("BOBBIN_INTERCEPT");
  const int s = v == nullptr || std::strcmp(v, "0") != 0 ? 1 : 2;
  intercept_state.store(s, std::memory_order_relaxed);
  return s;
}

bool nonblocking(int fd) noexcept {
  int fl = ::fcntl(fd, F_GETFL);
  return fl < 0 || (fl & O_NONBLOCK) != 0;
}

namespace {
// Set once any socket in the process gets a send or receive timeout.
std::atomic<bool> g_socket_timeouts_used{false};
}  // namespace

void note_socket_option(int level, int name) noexcept {
  if (level != SOL_SOCKET) return;
  if (name == SO_RCVTIMEO_OLD || name == SO_SNDTIMEO_OLD || name == SO_RCVTIMEO_NEW || name == SO_SNDTIMEO_NEW) {
    g_socket_timeouts_used.store(true, std::memory_order_relaxed);
  }
}

deadline socket_timeout(int fd, int option) noexcept {
  if (!g_socket_timeouts_used.load(std::memory_order_relaxed)) return deadline::never();
  timeval tv{};
  socklen_t len = sizeof tv;
  if (::getsockopt(fd, SOL_SOCKET, option, &tv, &len) != 0) return deadline::never();  // ENOTSOCK
  if (tv.tv_sec == 0 && tv.tv_usec == 0) return deadline::never();
  return deadline(std::chrono::seconds(tv.tv_sec) + std::chrono::microseconds(tv.tv_usec));
}

}  // namespace intercept
}  // namespace bobbin::internal

namespace bobbin {
bool blocking_calls_intercepted() noexcept { return internal::intercept::enabled_for_process(); }
}  // namespace bobbin
