// The interceptor for pthread_join, which std::thread::join and
// std::async's future (its shared state joins the thread it started) call.
//
// glibc waits for the thread's exit on the kernel-cleared TID word with an
// inline futex call, which no interposer sees, so on a fiber the wait would
// block its carrier. There is no public way to name that word, so a fiber
// polls instead: pthread_tryjoin_np, and while the thread still runs, a
// parked sleep that starts at 50 µs and doubles up to 2 ms. A thread that
// has already finished (std::async's, once its value is set) is joined
// within microseconds; a long-running one costs its joiner about 500 wakes a
// second. The result is pthread_join's: 0 and the thread's return value, or
// ESRCH/EINVAL from the try. Joining the carrier's own thread, a pinned
// fiber, a plain thread, or a fiber whose stop was requested (its parks
// return at once) make glibc's blocking call; the pinning report names it.
// pthread_timedjoin_np and pthread_clockjoin_np are glibc's, as they were.
#undef _FORTIFY_SOURCE
#undef _FILE_OFFSET_BITS
#include <liburing.h>
#include <pthread.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>

#include "runtime/intercept/fiber_calls.h"
#include "runtime/intercept/libc.h"

namespace bobbin::internal::intercept {
namespace real {
BOBBIN_NEXT_SYMBOL(pthread_join)
BOBBIN_NEXT_SYMBOL(pthread_tryjoin_np)
}  // namespace real
}  // namespace bobbin::internal::intercept

using bobbin::internal::carrier;
using namespace bobbin::internal::intercept;  // NOLINT: the interceptor below is its whole point

__attribute__((noinline)) static int pthread_join_on_carrier(pthread_t thread, void** result) {
  carrier* c = parking_carrier();
  if (c == nullptr || pthread_equal(thread, pthread_self())) return real::pthread_join(thread, result);
  int64_t nap_ns = 50'000;
  for (;;) {
    const int r = real::pthread_tryjoin_np(thread, result);
    if (r != EBUSY) return r;
    __kernel_timespec ts{0, nap_ns};
    const int parked = park_on_ring(c, [&](io_uring_sqe* sqe) { io_uring_prep_timeout(sqe, &ts, 0, 0); },
                                    bobbin::wait_reason::join);
    if (parked == -ECANCELED) return real::pthread_join(thread, result);
    nap_ns = std::min<int64_t>(nap_ns * 2, 2'000'000);
  }
}

BOBBIN_INTERPOSE int pthread_join(pthread_t thread, void** result) {
  if (__builtin_expect(bobbin::internal::tls_carrier == nullptr, 1)) return real::pthread_join(thread, result);
  return pthread_join_on_carrier(thread, result);
}
