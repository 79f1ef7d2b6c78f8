#include "runtime/intercept/fiber_calls.h"

#include "bobbin/blocking_calls.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <link.h>
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

namespace {

// The executable segments of the loaded libabsl_*.so libraries, found once
// (dl_iterate_phdr takes the dynamic linker's lock: never per call). Abseil
// is a dependency of bobbin, loaded before any fiber runs; a copy linked
// statically into the executable is not told apart (its waits would park),
// which is why bobbin links Debian's shared Abseil.
class abseil_code {
 public:
  bool contains(const void* pc) noexcept {
    int n = count_.load(std::memory_order_acquire);
    if (__builtin_expect(n < 0, 0)) n = find();
    const auto a = reinterpret_cast<uintptr_t>(pc);
    for (int i = 0; i < n; i++) {
      if (a >= ranges_[i].begin && a < ranges_[i].end) return true;
    }
    return false;
  }

 private:
  struct range {
    uintptr_t begin, end;
  };
  static constexpr int kMaxRanges = 64;

  // Threads that race here compute the same ranges; each writes them before
  // publishing the count.
  int find() noexcept {
    struct scan {
      range found[kMaxRanges];
      int n = 0;
    } s;
    dl_iterate_phdr(
        [](dl_phdr_info* info, size_t, void* arg) {
          auto* s = static_cast<scan*>(arg);
          const char* name = info->dlpi_name != nullptr ? info->dlpi_name : "";
          const char* base = std::strrchr(name, '/');
          base = base != nullptr ? base + 1 : name;
          if (std::strncmp(base, "libabsl_", 8) != 0) return 0;
          for (int i = 0; i < info->dlpi_phnum && s->n < kMaxRanges; i++) {
            const ElfW(Phdr)& ph = info->dlpi_phdr[i];
            if (ph.p_type != PT_LOAD || (ph.p_flags & PF_X) == 0) continue;
            const uintptr_t begin = info->dlpi_addr + ph.p_vaddr;
            s->found[s->n++] = range{begin, begin + ph.p_memsz};
          }
          return 0;
        },
        &s);
    for (int i = 0; i < s.n; i++) ranges_[i] = s.found[i];
    count_.store(s.n, std::memory_order_release);
    return s.n;
  }

  range ranges_[kMaxRanges] = {};
  std::atomic<int> count_{-1};
};

constinit abseil_code abseil;

}  // namespace

bool called_by_abseil(const void* return_address) noexcept { return abseil.contains(return_address); }

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
