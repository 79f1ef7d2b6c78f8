// Interceptors for sleeping: nanosleep, clock_nanosleep, usleep, sleep.
// std::this_thread::sleep_for and sleep_until reach nanosleep or
// clock_nanosleep through libstdc++. glibc's usleep and sleep call its
// internal nanosleep, which no interposer sees, so they are intercepted
// themselves. On a fiber each is an IORING_OP_TIMEOUT; a parked fiber is not
// interrupted by signals, so the "remaining time" out-parameters are never
// written and EINTR never returned. A cancelled fiber (fiber::request_stop)
// returns at once with ECANCELED (sleep: the seconds requested), not EINTR:
// callers retry EINTR, and cancellation is sticky, so they would spin.
// The interceptors must define glibc's own names: no fortify wrappers and no
// pread -> pread64 redirection (meson builds with _FILE_OFFSET_BITS=64).
#undef _FORTIFY_SOURCE
#undef _FILE_OFFSET_BITS
#include <liburing.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>

#include "runtime/intercept/abs_time.h"
#include "runtime/intercept/fiber_calls.h"
#include "runtime/intercept/libc.h"

namespace bobbin::internal::intercept {
namespace real {
BOBBIN_NEXT_SYMBOL(nanosleep)
BOBBIN_NEXT_SYMBOL(clock_nanosleep)
BOBBIN_NEXT_SYMBOL(usleep)
BOBBIN_NEXT_SYMBOL(sleep)
}  // namespace real

namespace {

// Parks for the interval `rel` (a valid_timespec) measured on `clock`
// (CLOCK_MONOTONIC or CLOCK_BOOTTIME; `clock_flag` is its IORING_TIMEOUT_*
// flag), from now. Turned into an absolute time here: a relative timeout
// starts counting only when the loop submits it, which while the carrier's
// fibers run long is up to 500 us later (carrier.cc, kPollAfterUs): in
// scheduler_test a 2 ms usleep beside fibers that compute 200 us at a time
// resumed a median of 5 of their turns after its time, 2 once absolute.
bool park_for_interval(carrier* c, const timespec& rel, clockid_t clock, unsigned clock_flag) {
  if (rel.tv_sec >= kNeverSeconds) {  // the sum below could overflow: as good as never
    return park_for_timeout(c, __kernel_timespec{rel.tv_sec, rel.tv_nsec}, clock_flag, wait_reason::libc_sleep);
  }
  timespec now{};
  clock_gettime(clock, &now);
  __kernel_timespec at{now.tv_sec + rel.tv_sec, now.tv_nsec + rel.tv_nsec};
  if (at.tv_nsec >= 1000000000) {
    at.tv_sec++;
    at.tv_nsec -= 1000000000;
  }
  return park_for_timeout(c, at, clock_flag | IORING_TIMEOUT_ABS, wait_reason::libc_sleep);
}

bool park_for(carrier* c, std::chrono::nanoseconds d) {
  if (d <= d.zero()) return true;
  const timespec rel{static_cast<time_t>(d.count() / 1000000000), static_cast<long>(d.count() % 1000000000)};
  return park_for_interval(c, rel, CLOCK_MONOTONIC, 0);
}

int fail_canceled() {
  errno = ECANCELED;
  return -1;
}

}  // namespace
}  // namespace bobbin::internal::intercept

using bobbin::internal::carrier;
using namespace bobbin::internal::intercept;  // NOLINT: the interceptors below are its whole point

__attribute__((noinline)) static int nanosleep_on_carrier(const void* caller, const timespec* req, timespec* rem) {
  // absl::Mutex's backoff sleeps here: it must not park (fiber_calls.h).
  carrier* c = parking_carrier();
  if (c != nullptr && called_by_abseil(caller) && inside_abseil_synchronization()) c = nullptr;
  if (c == nullptr || req == nullptr || !valid_timespec(req)) return real::nanosleep(req, rem);
  // Linux measures nanosleep's interval on CLOCK_MONOTONIC.
  return park_for_interval(c, *req, CLOCK_MONOTONIC, 0) ? 0 : fail_canceled();
}

BOBBIN_INTERPOSE int nanosleep(const timespec* req, timespec* rem) {
  if (__builtin_expect(bobbin::internal::tls_carrier == nullptr, 1)) return real::nanosleep(req, rem);
  return nanosleep_on_carrier(__builtin_return_address(0), req, rem);
}

__attribute__((noinline)) static int clock_nanosleep_on_carrier(clockid_t clock, int flags, const timespec* req, timespec* rem) {
  carrier* c = parking_carrier();
  unsigned clock_flag;
  switch (clock) {
    case CLOCK_MONOTONIC: clock_flag = 0; break;
    case CLOCK_REALTIME: clock_flag = IORING_TIMEOUT_REALTIME; break;
    case CLOCK_BOOTTIME: clock_flag = IORING_TIMEOUT_BOOTTIME; break;
    default: c = nullptr;  // CPU-time clocks: the kernel's rules, on the carrier
  }
  if (c == nullptr || req == nullptr || !valid_timespec(req)) return real::clock_nanosleep(clock, flags, req, rem);
  bool slept;
  if (flags & TIMER_ABSTIME) {
    slept = park_for_timeout(c, __kernel_timespec{req->tv_sec, req->tv_nsec}, clock_flag | IORING_TIMEOUT_ABS,
                             bobbin::wait_reason::libc_sleep);
  } else if (clock == CLOCK_BOOTTIME) {
    slept = park_for_interval(c, *req, CLOCK_BOOTTIME, IORING_TIMEOUT_BOOTTIME);
  } else {
    // An interval on the wall clock is not moved by setting it: the same
    // as on the monotonic clock.
    slept = park_for_interval(c, *req, CLOCK_MONOTONIC, 0);
  }
  // clock_nanosleep returns the error number itself.
  return slept ? 0 : ECANCELED;
}

BOBBIN_INTERPOSE int clock_nanosleep(clockid_t clock, int flags, const timespec* req, timespec* rem) {
  if (__builtin_expect(bobbin::internal::tls_carrier == nullptr, 1)) return real::clock_nanosleep(clock, flags, req, rem);
  return clock_nanosleep_on_carrier(clock, flags, req, rem);
}

__attribute__((noinline)) static int usleep_on_carrier(useconds_t us) {
  carrier* c = parking_carrier();
  if (c == nullptr) return real::usleep(us);
  return park_for(c, std::chrono::microseconds(us)) ? 0 : fail_canceled();
}

BOBBIN_INTERPOSE int usleep(useconds_t us) {
  if (__builtin_expect(bobbin::internal::tls_carrier == nullptr, 1)) return real::usleep(us);
  return usleep_on_carrier(us);
}

__attribute__((noinline)) static unsigned int sleep_on_carrier(unsigned int seconds) {
  carrier* c = parking_carrier();
  if (c == nullptr) return real::sleep(seconds);
  if (!park_for(c, std::chrono::seconds(seconds))) {
    errno = ECANCELED;
    return seconds;
  }
  return 0;
}

BOBBIN_INTERPOSE unsigned int sleep(unsigned int seconds) {
  if (__builtin_expect(bobbin::internal::tls_carrier == nullptr, 1)) return real::sleep(seconds);
  return sleep_on_carrier(seconds);
}
