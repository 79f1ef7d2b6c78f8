// Stack overflow reporting. A fiber that runs off the bottom of its stack
// faults in the guard region below it. The SIGSEGV handler runs on the
// carrier's alternate signal stack (the fiber's own is unusable), recognises
// a fault in or just below the running fiber's guard, names the fiber and
// aborts. Any other fault is handed to the previous handler (or the default
// action), so ordinary crashes and sanitizers behave as before.
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "runtime/fiber/fiber_control.h"
#include "runtime/sched/carrier.h"
#include "runtime/util/check.h"

namespace bobbin::internal {

namespace {

struct sigaction g_previous;
std::atomic<bool> g_installed{false};
constexpr size_t kAltStackSize = 64 * 1024;

void on_segv(int sig, siginfo_t* info, void* uctx) {
  carrier* c = current_carrier();
  fiber_control* f = c != nullptr ? c->current() : nullptr;
  if (f != nullptr && f->stack.region != nullptr) {
    auto addr = reinterpret_cast<uintptr_t>(info->si_addr);
    auto low = reinterpret_cast<uintptr_t>(f->stack.low());
    auto region = reinterpret_cast<uintptr_t>(f->stack.region);
    // In the guard, or up to 64 KiB below it (a large frame that jumped it).
    if (addr < low && addr + 64 * 1024 >= region) {
      char buf[512];
      int n = std::snprintf(buf, sizeof buf,
                            "bobbin: stack overflow in fiber %llu \"%s\" (stack size %zu bytes, fault at %p); "
                            "give it a larger stack with fiber_options::stack_size or runtime_options::stack_size\n",
                            static_cast<unsigned long long>(f->id), f->name.c_str(), f->stack.size, info->si_addr);
      if (n > 0) write_stderr(std::string_view(buf, static_cast<size_t>(n) < sizeof buf ? n : sizeof buf - 1));
      signal(SIGABRT, SIG_DFL);
      std::abort();
    }
  }
  // Not an overflow. Say which fiber was running before chaining: under a
  // sanitizer the previous handler may be the default action, which would
  // otherwise end the process with no word at all.
  {
    char buf[256];
    int n = f != nullptr ? std::snprintf(buf, sizeof buf, "bobbin: signal %d (fault at %p) in fiber %llu \"%s\"\n", sig,
                                         info->si_addr, static_cast<unsigned long long>(f->id), f->name.c_str())
          : c != nullptr ? std::snprintf(buf, sizeof buf, "bobbin: signal %d (fault at %p) on carrier %u, between fibers\n",
                                         sig, info->si_addr, c->index())
                         : std::snprintf(buf, sizeof buf, "bobbin: signal %d (fault at %p) outside any carrier\n", sig,
                                         info->si_addr);
    if (n > 0) write_stderr(std::string_view(buf, static_cast<size_t>(n) < sizeof buf ? n : sizeof buf - 1));
  }
  // Chain.
  if (g_previous.sa_flags & SA_SIGINFO) {
    if (g_previous.sa_sigaction != nullptr) {
      g_previous.sa_sigaction(sig, info, uctx);
      return;
    }
  } else if (g_previous.sa_handler != SIG_DFL && g_previous.sa_handler != SIG_IGN &&
             g_previous.sa_handler != nullptr) {
    g_previous.sa_handler(sig);
    return;
  }
  // Default action: restore it and return; the faulting instruction re-runs
  // and the kernel delivers the default SIGSEGV (core dump).
  signal(sig, SIG_DFL);
}

}  // namespace

void install_overflow_handler() {
  if (g_installed.exchange(true)) return;
  struct sigaction sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = &on_segv;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGSEGV, &sa, &g_previous);
}

void* make_alt_signal_stack() {
  void* p = ::mmap(nullptr, kAltStackSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  stack_t ss;
  ss.ss_sp = p;
  ss.ss_size = kAltStackSize;
  ss.ss_flags = 0;
  if (sigaltstack(&ss, nullptr) != 0) {
    ::munmap(p, kAltStackSize);
    return nullptr;
  }
  return p;
}

void free_alt_signal_stack(void* p) {
  if (p == nullptr) return;
  stack_t ss;
  std::memset(&ss, 0, sizeof ss);
  ss.ss_flags = SS_DISABLE;
  sigaltstack(&ss, nullptr);
  ::munmap(p, kAltStackSize);
}

}  // namespace bobbin::internal
