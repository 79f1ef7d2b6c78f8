// bobbin/deadline.h
//
// A point on the monotonic clock by which a blocking call must finish.
//
// bobbin's socket calls, sleeps, channels and the sync primitives' *_until
// waits (condition_variable, mutex::try_lock_until, latch, semaphore,
// fiber::wait_until) take one, as their last argument; file I/O,
// mutex::lock, fiber::join and offload() do not (a file operation is not
// cancelled halfway; join has wait_until). It converts implicitly from a
// relative timeout (any
// std::chrono::duration) or from an absolute std::chrono::steady_clock
// time_point, so both spellings read naturally:
//
//   stream.read_some(buf, 500ms);                 // relative
//   stream.read_some(buf, start + 2s);            // absolute
//   stream.read_some(buf);                        // no deadline
//
// A relative timeout is turned into an absolute deadline when the deadline is
// constructed, so a loop that passes the same `deadline` object to several
// calls bounds their total time, not each call's.
//
// When a deadline passes, data-plane calls return std::errc::timed_out and
// sync primitives return their "timeout" status. Cost: one clock read when
// built from a duration; none otherwise.
#ifndef BOBBIN_DEADLINE_H_
#define BOBBIN_DEADLINE_H_

#include <chrono>
#include <cstdint>

namespace bobbin {

class deadline {
 public:
  using clock = std::chrono::steady_clock;

  // No deadline: the call may block forever.
  constexpr deadline() noexcept = default;

  template <class Rep, class Period>
  deadline(std::chrono::duration<Rep, Period> timeout) noexcept  // NOLINT: implicit by design
      : at_(clock::now() + std::chrono::duration_cast<clock::duration>(timeout)), set_(true) {
    if (timeout < timeout.zero()) at_ = clock::now();
  }

  template <class Duration>
  deadline(std::chrono::time_point<clock, Duration> at) noexcept  // NOLINT: implicit by design
      : at_(std::chrono::time_point_cast<clock::duration>(at)), set_(true) {}

  static constexpr deadline never() noexcept { return deadline(); }

  bool is_never() const noexcept { return !set_; }
  clock::time_point time() const noexcept { return set_ ? at_ : clock::time_point::max(); }
  bool expired() const noexcept { return set_ && clock::now() >= at_; }

  // Nanoseconds on CLOCK_MONOTONIC (what steady_clock reads on Linux), the
  // unit io_uring's absolute timeouts take.
  int64_t monotonic_ns() const noexcept {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(time().time_since_epoch()).count();
  }

 private:
  clock::time_point at_{};
  bool set_ = false;
};

}  // namespace bobbin

#endif  // BOBBIN_DEADLINE_H_
