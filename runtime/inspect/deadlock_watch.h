// Not part of the bobbin API.
//
// The global-deadlock report: "bobbin: all N fibers are parked and nothing
// can wake them", with a fiber dump (Go's "all goroutines are asleep -
// deadlock!"). Checked by the pinning monitor on every tick.
//
// A runtime is deadlocked when, for longer than
// runtime_options::deadlock_report_after:
//   - no carrier has switched and no fiber has been spawned (the monitor
//     compares the carriers' switch counters; this is the cheap test, and
//     the only one made while the runtime makes progress);
//   - every live fiber is parked on a bobbin primitive (mutex, condition
//     variable, semaphore, latch, wait group, channel, join) without a
//     deadline: no I/O, sleep, timed wait or offloaded call can wake it,
//     and none runs;
//   - no plain thread is inside a bobbin wait with a deadline (it could
//     time out and then wake a fiber).
// A plain thread that is not waiting could still wake a fiber later; bobbin
// cannot see it, which is why the condition must hold for a while and why
// the report says what it saw rather than aborting, unless
// runtime_options::abort_on_deadlock asks for Go's behaviour.
#ifndef BOBBIN_RUNTIME_INSPECT_DEADLOCK_WATCH_H_
#define BOBBIN_RUNTIME_INSPECT_DEADLOCK_WATCH_H_

#include <atomic>
#include <chrono>
#include <cstdint>

namespace bobbin::internal {

class runtime_impl;

// Plain threads inside a bobbin wait that has a deadline (park.cc).
extern std::atomic<int> g_timed_plain_thread_waits;

class deadlock_watch {
 public:
  explicit deadlock_watch(runtime_impl* rt) : rt_(rt) {}
  void tick(std::chrono::steady_clock::time_point now);

 private:
  bool everyone_is_stuck() const;

  runtime_impl* const rt_;
  uint64_t last_progress_ = UINT64_MAX;
  std::chrono::steady_clock::time_point quiet_since_{};
  bool reported_ = false;
};

}  // namespace bobbin::internal

#endif  // BOBBIN_RUNTIME_INSPECT_DEADLOCK_WATCH_H_
