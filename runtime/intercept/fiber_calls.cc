#include "runtime/intercept/fiber_calls.h"

#include "bobbin/blocking_calls.h"

#include <dlfcn.h>
#include <execinfo.h>
#include <fcntl.h>
#include <link.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <vector>

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

// The executable segments of the loaded libraries whose file name starts
// with a prefix, found once (dl_iterate_phdr takes the dynamic linker's
// lock: never per call) and kept in an immutable array: threads that race to
// build it each build one, the first to publish wins, the others free
// theirs. Abseil is a dependency of bobbin, loaded before any fiber runs; a
// copy linked statically into the executable is not told apart (its waits
// would park), which is why bobbin links Debian's shared Abseil.
class library_code {
 public:
  explicit constexpr library_code(const char* prefix) : prefix_(prefix) {}
  bool contains(const void* pc) noexcept {
    const ranges* r = ranges_.load(std::memory_order_acquire);
    if (__builtin_expect(r == nullptr, 0)) r = find();
    const auto a = reinterpret_cast<uintptr_t>(pc);
    for (size_t i = 0; i < r->n; i++) {
      if (a >= r->at[i].begin && a < r->at[i].end) return true;
    }
    return false;
  }

 private:
  struct range {
    uintptr_t begin, end;
  };
  struct ranges {
    size_t n = 0;
    range* at = nullptr;
  };
  struct scan {
    const char* prefix;
    std::vector<range> found;
  };

  const ranges* find() noexcept {
    scan s{prefix_, {}};
    dl_iterate_phdr(
        [](dl_phdr_info* info, size_t, void* arg) {
          auto* s = static_cast<scan*>(arg);
          const char* name = info->dlpi_name != nullptr ? info->dlpi_name : "";
          const char* base = std::strrchr(name, '/');
          base = base != nullptr ? base + 1 : name;
          if (std::strncmp(base, s->prefix, std::strlen(s->prefix)) != 0) return 0;
          for (int i = 0; i < info->dlpi_phnum; i++) {
            const ElfW(Phdr)& ph = info->dlpi_phdr[i];
            if (ph.p_type != PT_LOAD || (ph.p_flags & PF_X) == 0) continue;
            const uintptr_t begin = info->dlpi_addr + ph.p_vaddr;
            s->found.push_back(range{begin, begin + ph.p_memsz});
          }
          return 0;
        },
        &s);
    auto* mine = new ranges{s.found.size(), new range[s.found.size() + 1]};
    std::copy(s.found.begin(), s.found.end(), mine->at);
    const ranges* expected = nullptr;
    if (ranges_.compare_exchange_strong(expected, mine, std::memory_order_acq_rel)) return mine;
    delete[] mine->at;
    delete mine;
    return expected;
  }

  const char* prefix_;
  std::atomic<const ranges*> ranges_{nullptr};  // built once, never freed
};

constinit library_code abseil("libabsl_");
constinit library_code abseil_synchronization("libabsl_synchronization");

}  // namespace

bool called_by_abseil(const void* return_address) noexcept { return abseil.contains(return_address); }

bool inside_abseil_synchronization() noexcept {
  void* frames[12];
  // backtrace() unwinds with the compiler's unwind tables, which Abseil's
  // frame-pointer-less code has; its first call loads libgcc_s, already
  // loaded in any C++ program.
  const int n = ::backtrace(frames, 12);
  for (int i = 0; i < n; i++) {
    if (abseil_synchronization.contains(frames[i])) return true;
  }
  return false;
}

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
