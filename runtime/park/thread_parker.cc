#include "runtime/park/thread_parker.h"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>

#include "bobbin/internal/spin_lock.h"
#include "runtime/park/futex_wait.h"

namespace bobbin::internal {

// The free parkers, and every parker ever made (so that LeakSanitizer sees
// them reachable). Taken once per thread lifetime, under a spin lock: a
// mutex here would be bobbin's own interposed one.
class thread_parker_pool {
 public:
  static thread_parker* take() noexcept {
    lock_.lock();
    thread_parker* p = free_;
    if (p != nullptr) free_ = p->next_free_;
    lock_.unlock();
    if (p != nullptr) return p;
    auto* fresh = new thread_parker_block;
    lock_.lock();
    fresh->older = blocks_;
    blocks_ = fresh;
    lock_.unlock();
    return &fresh->parker;
  }
  static void give_back(thread_parker* p) noexcept {
    lock_.lock();
    p->next_free_ = free_;
    free_ = p;
    lock_.unlock();
  }

 private:
  // One cache line each: parkers of different threads are written by
  // different notifiers.
  struct alignas(64) thread_parker_block {
    thread_parker parker;
    thread_parker_block* older = nullptr;
  };
  static inline spin_lock lock_;
  static inline thread_parker* free_ = nullptr;
  static inline thread_parker_block* blocks_ = nullptr;
};

namespace {

// initial-exec, as tls_carrier: one %fs-relative load.
__thread thread_parker* tls_parker __attribute__((tls_model("initial-exec"))) = nullptr;

// Gives the thread's parker back when the thread exits. A bobbin wait in a
// thread-local destructor that runs after this one takes a parker again and
// keeps it (still reachable from the pool's list of blocks).
struct parker_return {
  ~parker_return() {
    if (tls_parker != nullptr) {
      thread_parker_pool::give_back(tls_parker);
      tls_parker = nullptr;
    }
  }
};

}  // namespace

thread_parker* thread_parker::current() noexcept {
  if (thread_parker* p = tls_parker) return p;
  static thread_local parker_return at_exit;
  (void)&at_exit;
  tls_parker = thread_parker_pool::take();
  return tls_parker;
}

void thread_parker::park(deadline d) noexcept {
  if (permit_.exchange(0, std::memory_order_acquire) == 1) return;
  timespec ts;
  const timespec* tsp = nullptr;
  if (!d.is_never()) {
    int64_t ns = d.monotonic_ns();
    ts.tv_sec = ns / 1000000000;
    ts.tv_nsec = ns % 1000000000;
    tsp = &ts;
  }
  // FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC deadline.
  // errno is the caller's: the condition-variable and lock calls that end
  // here (glibc's never set it) must leave it alone.
  const int saved_errno = errno;
  futex_syscall(&permit_, FUTEX_WAIT_BITSET_PRIVATE, 0u, tsp, FUTEX_BITSET_MATCH_ANY);
  errno = saved_errno;
  // A read-modify-write, not a store: an unpark that lands after the wait
  // returned is then either consumed here, and the caller's re-check that
  // follows sees what it published, or left for the next park.
  permit_.exchange(0, std::memory_order_acquire);
}

void thread_parker::unpark() noexcept {
  if (permit_.exchange(1, std::memory_order_release) == 0) {
    futex_syscall(&permit_, FUTEX_WAKE_PRIVATE, 1, nullptr, 0);
  }
}

}  // namespace bobbin::internal
