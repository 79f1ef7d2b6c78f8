// Not part of the bobbin API.
//
// The times POSIX waits take (pthread_mutex_timedlock, clocklock,
// pthread_cond_timedwait, clockwait, futex timeouts, sleeps), as a bobbin
// deadline.
#ifndef BOBBIN_RUNTIME_INTERCEPT_ABS_TIME_H_
#define BOBBIN_RUNTIME_INTERCEPT_ABS_TIME_H_

#include <time.h>

#include <chrono>

#include "bobbin/deadline.h"

namespace bobbin::internal::intercept {

// The deadline of `abstime` on `clock` (CLOCK_MONOTONIC or CLOCK_REALTIME);
// false when glibc would answer EINVAL (no time, or nanoseconds out of
// range). A CLOCK_REALTIME time becomes the time left now, on the
// monotonic clock: a jump of the wall clock during the wait does not move
// the deadline.
inline constexpr time_t kNeverSeconds = 4'000'000'000;

// Whether the kernel takes `t` as a time: nanoseconds in range, and for a
// duration (sleeps, relative futex timeouts) no negative seconds either.
constexpr bool valid_timespec(const timespec* t) noexcept {
  return t->tv_sec >= 0 && t->tv_nsec >= 0 && t->tv_nsec < 1'000'000'000;
}

// The deadline `rel` (a valid_timespec) from now. Past kNeverSeconds is
// never, as the kernel's saturating arithmetic makes it: the nanoseconds
// would overflow.
inline deadline relative_deadline(const timespec& rel) noexcept {
  if (rel.tv_sec >= kNeverSeconds) return deadline::never();
  return deadline(std::chrono::seconds(rel.tv_sec) + std::chrono::nanoseconds(rel.tv_nsec));
}

inline bool to_deadline(clockid_t clock, const timespec* abstime, deadline* d) noexcept {
  if (abstime == nullptr || abstime->tv_nsec < 0 || abstime->tv_nsec >= 1'000'000'000) return false;
  // Past the year 2096 (or ~127 years of uptime) is never: the nanoseconds
  // below would overflow near 9.2e9 s, and C code passes LONG_MAX for "no
  // limit".
  if (abstime->tv_sec >= kNeverSeconds) {
    *d = deadline::never();
    return true;
  }
  const auto at = std::chrono::seconds(abstime->tv_sec) + std::chrono::nanoseconds(abstime->tv_nsec);
  if (clock == CLOCK_MONOTONIC) {
    *d = deadline(
        std::chrono::steady_clock::time_point(std::chrono::duration_cast<std::chrono::steady_clock::duration>(at)));
    return true;
  }
  timespec now{};
  clock_gettime(CLOCK_REALTIME, &now);
  const auto left = at - (std::chrono::seconds(now.tv_sec) + std::chrono::nanoseconds(now.tv_nsec));
  *d = deadline(left);
  return true;
}

}  // namespace bobbin::internal::intercept

#endif  // BOBBIN_RUNTIME_INTERCEPT_ABS_TIME_H_
