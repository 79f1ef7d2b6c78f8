#include "runtime/pinning/stack_capture.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <signal.h>
#include <ucontext.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <mutex>

#include "absl/debugging/symbolize.h"
#include "runtime/util/mutex_lock.h"
#include "absl/strings/str_format.h"
#include "runtime/fiber/fiber_control.h"
#include "runtime/sched/carrier.h"

namespace bobbin::internal {

namespace {

struct code_range {
  uintptr_t begin, end;
};
constexpr int kMaxRanges = 1024;
code_range g_ranges[kMaxRanges];
std::atomic<int> g_range_count{0};
// Scans running now (a signal handler's may outlive its requester's wait):
// a refresh rewrites the table only once none reads it.
std::atomic<int> g_scans_in_progress{0};

bool in_code(uintptr_t a, int count) {
  for (int i = 0; i < count; i++) {
    // Seven bytes before the address must be readable code too.
    if (a >= g_ranges[i].begin + 7 && a < g_ranges[i].end) return true;
  }
  return false;
}

// Whether the bytes before `ret` end with a call instruction (x86-64).
bool follows_call(uintptr_t ret) {
  const auto* p = reinterpret_cast<const unsigned char*>(ret);
  if (p[-5] == 0xE8) return true;  // call rel32
  // call r/m64 is FF /2: ModRM.reg == 2, in 2, 3, 6 or 7 bytes (+REX).
  for (int len : {2, 3, 4, 6, 7}) {
    if (p[-len] == 0xFF && ((p[-len + 1] >> 3) & 7) == 2) return true;
  }
  return false;
}

bool read_file(const char* path, char* buf, size_t size) {
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  ssize_t n = ::read(fd, buf, size - 1);
  ::close(fd);
  if (n <= 0) return false;
  buf[n] = '\0';
  return true;
}

std::once_flag g_symbolizer_once;

}  // namespace

absl::Mutex& capture_mutex() {
  static absl::Mutex mu(absl::kConstInit);
  return mu;
}

void refresh_code_ranges() {
  FILE* f = std::fopen("/proc/self/maps", "r");
  if (!f) return;
  // Empty the table, then wait out the scans that read it (a scan that
  // starts from here on sees it empty: seq_cst on both sides).
  g_range_count.store(0, std::memory_order_seq_cst);
  while (g_scans_in_progress.load(std::memory_order_seq_cst) != 0) sched_yield();
  char line[512];
  int n = 0;
  while (n < kMaxRanges && std::fgets(line, sizeof line, f)) {
    unsigned long b, e;
    char perms[5];
    if (std::sscanf(line, "%lx-%lx %4s", &b, &e, perms) == 3 && perms[2] == 'x') g_ranges[n++] = {b, e};
  }
  std::fclose(f);
  g_range_count.store(n, std::memory_order_release);
}

// Reads another thread's stack (or this one's from a signal handler): the
// sanitizers would see racy or redzone loads where there are none to report.
__attribute__((no_sanitize("address", "thread", "undefined"))) void scan_stack(uintptr_t pc, uintptr_t sp,
                                                                               uintptr_t low, uintptr_t limit,
                                                                               stack_capture& out) {
  g_scans_in_progress.fetch_add(1, std::memory_order_seq_cst);
  const int ranges = g_range_count.load(std::memory_order_seq_cst);
  out.count = 0;
  out.frames[out.count++] = pc;
  if (sp == 0 || sp < low || limit <= sp) {
    g_scans_in_progress.fetch_sub(1, std::memory_order_release);
    return;
  }
  // 16 KiB is deep enough for the frames that matter and bounds the cost.
  if (limit - sp > 16 * 1024) limit = sp + 16 * 1024;
  for (uintptr_t a = sp & ~uintptr_t{7}; a + 8 <= limit && out.count < kMaxCapturedFrames; a += 8) {
    uintptr_t w = *reinterpret_cast<const volatile uintptr_t*>(a);
    if (in_code(w, ranges) && follows_call(w)) out.frames[out.count++] = w;
  }
  g_scans_in_progress.fetch_sub(1, std::memory_order_release);
}

thread_syscall_state read_thread_state(pid_t tid) {
  thread_syscall_state st;
  char path[64], buf[512];
  std::snprintf(path, sizeof path, "/proc/self/task/%d/stat", static_cast<int>(tid));
  if (read_file(path, buf, sizeof buf)) {
    const char* close = std::strrchr(buf, ')');
    if (close && close[1] == ' ') st.state = close[2];
  }
  std::snprintf(path, sizeof path, "/proc/self/task/%d/syscall", static_cast<int>(tid));
  if (!read_file(path, buf, sizeof buf)) return st;
  if (std::strncmp(buf, "running", 7) == 0) {
    st.nr = -2;
    return st;
  }
  // "nr a1 a2 a3 a4 a5 a6 sp pc" (or "-1 sp pc" when not in a syscall).
  long nr = 0;
  unsigned long v[8] = {};
  int got = std::sscanf(buf, "%ld %lx %lx %lx %lx %lx %lx %lx %lx", &nr, &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
                        &v[6], &v[7]);
  if (got == 9) {
    st.nr = nr;
    st.sp = v[6];
    st.pc = v[7];
  } else if (got == 3 && nr == -1) {
    st.nr = -1;
    st.sp = v[0];
    st.pc = v[1];
  }
  return st;
}

std::string syscall_name(long nr) {
  switch (nr) {
    case 0: return "read(2)";
    case 1: return "write(2)";
    case 7: return "poll(2)";
    case 17: return "pread64(2)";
    case 18: return "pwrite64(2)";
    case 19: return "readv(2)";
    case 20: return "writev(2)";
    case 23: return "select(2)";
    case 34: return "pause(2)";
    case 35: return "nanosleep(2)";
    case 42: return "connect(2)";
    case 43: return "accept(2)";
    case 44: return "sendto(2)";
    case 45: return "recvfrom(2)";
    case 46: return "sendmsg(2)";
    case 47: return "recvmsg(2)";
    case 61: return "wait4(2)";
    case 72: return "fcntl(2)";
    case 73: return "flock(2)";
    case 74: return "fsync(2)";
    case 75: return "fdatasync(2)";
    case 202: return "futex(2)";
    case 230: return "clock_nanosleep(2)";
    case 232: return "epoll_wait(2)";
    case 257: return "openat(2)";
    case 270: return "pselect6(2)";
    case 271: return "ppoll(2)";
    case 281: return "epoll_pwait(2)";
    case 288: return "accept4(2)";
    case 318: return "getrandom(2)";
    case 426: return "io_uring_enter(2)";
  }
  return absl::StrFormat("syscall %d", nr);
}

absl::Mutex& symbolizer_mutex() {
  static absl::Mutex mu(absl::kConstInit);
  return mu;
}

void initialize_symbolizer_once() {
  std::call_once(g_symbolizer_once, [] { absl::InitializeSymbolizer(::program_invocation_name); });
}

std::vector<std::string> symbolize(const stack_capture& c) {
  initialize_symbolizer_once();
  mutex_lock lock(&symbolizer_mutex());
  std::vector<std::string> out;
  for (int i = 0; i < c.count; i++) {
    // A return address points after the call: look up the call itself.
    uintptr_t a = i == 0 ? c.frames[i] : c.frames[i] - 1;
    char name[512];
    if (absl::Symbolize(reinterpret_cast<void*>(a), name, sizeof name)) {
      out.push_back(absl::StrFormat("#%-2d 0x%x %s", i, c.frames[i], name));
      if (std::strstr(name, "bobbin::internal::fiber_entry") != nullptr) break;  // the base of a fiber stack
    } else {
      // No symbol (a static function inside glibc, whose symbol table is
      // stripped): the library and the offset, for addr2line or gdb.
      Dl_info info{};
      if (::dladdr(reinterpret_cast<void*>(a), &info) != 0 && info.dli_fname != nullptr) {
        const char* base = std::strrchr(info.dli_fname, '/');
        out.push_back(absl::StrFormat("#%-2d 0x%x ?? (%s+0x%x)", i, c.frames[i], base ? base + 1 : info.dli_fname,
                                      c.frames[i] - reinterpret_cast<uintptr_t>(info.dli_fbase)));
      } else {
        out.push_back(absl::StrFormat("#%-2d 0x%x ??", i, c.frames[i]));
      }
    }
  }
  return out;
}

int capture_signal() { return SIGRTMIN + 7; }

namespace {
void on_capture_signal(int, siginfo_t*, void* uctx) {
  int saved_errno = errno;
  carrier* c = current_carrier();
  if (c != nullptr) {
    auto* uc = static_cast<ucontext_t*>(uctx);
    auto pc = static_cast<uintptr_t>(uc->uc_mcontext.gregs[REG_RIP]);
    auto sp = static_cast<uintptr_t>(uc->uc_mcontext.gregs[REG_RSP]);
    c->capture_from_signal(pc, sp);
  }
  errno = saved_errno;
}
std::atomic<bool> g_handler_installed{false};
}  // namespace

void install_capture_handler() {
  if (g_handler_installed.exchange(true)) return;
  struct sigaction sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = &on_capture_signal;
  sa.sa_flags = SA_SIGINFO | SA_RESTART | SA_ONSTACK;
  sigemptyset(&sa.sa_mask);
  sigaction(capture_signal(), &sa, nullptr);
}

}  // namespace bobbin::internal
