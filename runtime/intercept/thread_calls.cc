// Interceptors for waiting on other threads: pthread_join, which
// std::thread::join and std::async's future (its shared state joins the
// thread it started) call, and pthread_once, which std::call_once calls
// (and std::async's future again, around that join).
//
// pthread_join. glibc waits for the thread's exit on the kernel-cleared TID
// word with an inline futex call, which no interposer sees, so on a fiber
// the wait would block its carrier. There is no public way to name that
// word, so a fiber polls instead: pthread_tryjoin_np, and while the thread
// still runs, a parked sleep that starts at 50 µs and doubles up to 2 ms. A
// thread about to exit (std::async's, once its value is set) is joined
// after a nap or two; a long-running one costs its joiner about 500 wakes a
// second. The result is pthread_join's: 0 and the thread's return value, or
// ESRCH; a detached thread is EINVAL, checked first (glibc's try answers
// EBUSY while one runs). Joining the carrier's own thread, a pinned fiber,
// a plain thread, or a fiber whose stop was requested (its parks return at
// once) make glibc's blocking call; the pinning report names it.
// pthread_timedjoin_np and pthread_clockjoin_np are glibc's, as they were.
//
// pthread_once. Running the init routine stays glibc's; waiting for another
// caller's init routine to finish parks the fiber on the once word (glibc
// 2.36: bit 1 "in progress", bit 2 "done", the fork generation above; the
// finishing caller stores "done" and wakes every waiter with
// FUTEX_WAKE_PRIVATE). Without it, a fiber parked inside an init routine
// (std::async's join) and a second fiber of its carrier waiting in glibc
// for the same once would deadlock: the waiter blocks the carrier the
// parked one must resume on. One difference: in a child forked while
// another thread of the parent ran an init routine, glibc starts it again
// (the fork generation changed); a fiber waits for it. Under
// ThreadSanitizer, whose own pthread_once interceptor keeps the word in its
// own format (bit 16: running) and waits with a raw futex call, a fiber
// polls the word with parked naps while it shows "running", then makes the
// call, which finds the function done and tells TSan what it orders.
#undef _FORTIFY_SOURCE
#undef _FILE_OFFSET_BITS
#include <liburing.h>
#include <pthread.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>

#include "runtime/fiber/context.h"  // BOBBIN_TSAN
#include "runtime/intercept/fiber_calls.h"
#include "runtime/intercept/libc.h"
#include "runtime/park/futex_wait.h"

namespace bobbin::internal::intercept {
using bobbin::internal::carrier;
namespace real {
BOBBIN_NEXT_SYMBOL(pthread_join)
BOBBIN_NEXT_SYMBOL(pthread_tryjoin_np)
BOBBIN_NEXT_SYMBOL(pthread_once)
}  // namespace real

namespace {

bool detached(pthread_t thread) noexcept {
  pthread_attr_t attr;
  if (pthread_getattr_np(thread, &attr) != 0) return false;  // let the join answer
  int state = PTHREAD_CREATE_JOINABLE;
  pthread_attr_getdetachstate(&attr, &state);
  pthread_attr_destroy(&attr);
  return state == PTHREAD_CREATE_DETACHED;
}

// glibc 2.36's pthread_once_t states (nptl/pthread_once.c).
constexpr int kOnceInProgress = 1;
constexpr int kOnceDone = 2;
// ThreadSanitizer's (sanitizer_common's guard: kGuardRunning).
constexpr uint32_t kTsanOnceRunning = 1u << 16;

// A parked sleep of `ns` between polls; false if the fiber's stop was
// requested.
bool nap(carrier* c, int64_t ns) {
  return park_for_timeout(c, __kernel_timespec{0, ns}, 0, bobbin::wait_reason::join);
}

}  // namespace
}  // namespace bobbin::internal::intercept

using namespace bobbin::internal::intercept;  // NOLINT: the interceptor below is its whole point

__attribute__((noinline)) static int pthread_join_on_carrier(pthread_t thread, void** result) {
  carrier* c = parking_carrier();
  if (c == nullptr || pthread_equal(thread, pthread_self())) return real::pthread_join(thread, result);
  if (detached(thread)) return EINVAL;
  int64_t nap_ns = 50'000;
  for (;;) {
    const int r = real::pthread_tryjoin_np(thread, result);
    if (r != EBUSY) return r;
    if (!nap(c, nap_ns)) return real::pthread_join(thread, result);
    nap_ns = std::min<int64_t>(nap_ns * 2, 2'000'000);
  }
}

BOBBIN_INTERPOSE int pthread_join(pthread_t thread, void** result) {
  if (__builtin_expect(bobbin::internal::tls_carrier == nullptr, 1)) return real::pthread_join(thread, result);
  return pthread_join_on_carrier(thread, result);
}

__attribute__((noinline)) static int pthread_once_on_carrier(pthread_once_t* once, void (*init)()) {
  carrier* c = parking_carrier();
  if (c == nullptr) return real::pthread_once(once, init);
  auto* word = reinterpret_cast<const std::atomic<uint32_t>*>(once);
#if BOBBIN_TSAN
  while ((word->load(std::memory_order_acquire) & kTsanOnceRunning) != 0 && nap(c, 100'000)) {
  }
  return real::pthread_once(once, init);
#endif
  for (;;) {
    const uint32_t v = word->load(std::memory_order_acquire);
    if ((v & kOnceDone) != 0) return 0;
    // Not started: glibc runs it here (or, if another thread starts it in
    // between, waits in glibc: that caller is not parked on this carrier).
    if ((v & kOnceInProgress) == 0) return real::pthread_once(once, init);
    bobbin::internal::futex_wait(word, v, bobbin::deadline::never(), bobbin::internal::futex_scope::process_private,
                                 bobbin::wait_reason::futex_wait, bobbin::internal::futex_resume::parking_carrier,
                                 ~0u, bobbin::internal::futex_wakers::may_bypass_bobbin);  // glibc wakes inline
  }
}

BOBBIN_INTERPOSE int pthread_once(pthread_once_t* once, void (*init)()) {
  if (__builtin_expect(bobbin::internal::tls_carrier == nullptr, 1)) return real::pthread_once(once, init);
  return pthread_once_on_carrier(once, init);
}
