// Not part of the bobbin API.
//
// A deadline as the kernel takes an absolute CLOCK_MONOTONIC time: a
// `__kernel_timespec` for io_uring timeouts, a `timespec` for futex(2).
#ifndef BOBBIN_RUNTIME_UTIL_DEADLINE_TIME_H_
#define BOBBIN_RUNTIME_UTIL_DEADLINE_TIME_H_

#include <linux/time_types.h>

#include <cstdint>
#include <ctime>

#include "bobbin/deadline.h"

namespace bobbin::internal {

// `d` as seconds and nanoseconds on CLOCK_MONOTONIC; `d` must not be never.
template <class Timespec = __kernel_timespec>
Timespec monotonic_timespec(deadline d) noexcept {
  constexpr int64_t kNsPerSecond = 1'000'000'000;
  const int64_t ns = d.monotonic_ns();
  Timespec ts{};
  ts.tv_sec = ns / kNsPerSecond;
  ts.tv_nsec = ns % kNsPerSecond;
  return ts;
}

}  // namespace bobbin::internal

#endif  // BOBBIN_RUNTIME_UTIL_DEADLINE_TIME_H_
