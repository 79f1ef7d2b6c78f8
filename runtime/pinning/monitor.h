// Not part of the bobbin API.
//
// The pinning monitor: one thread per runtime that samples the carriers,
// reports pinning and drives compensation. See monitor.cc.
#ifndef BOBBIN_RUNTIME_PINNING_MONITOR_H_
#define BOBBIN_RUNTIME_PINNING_MONITOR_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

#include "bobbin/pinning.h"
#include "runtime/inspect/deadlock_watch.h"

namespace bobbin::internal {

class runtime_impl;
class carrier;
struct fiber_control;

class pin_monitor {
 public:
  pin_monitor(runtime_impl* rt, std::chrono::milliseconds threshold, unsigned max_spares);
  ~pin_monitor() { stop(); }

  void start();
  void stop();
  void set_listener(pin_listener l);

  uint64_t events() const { return events_.load(std::memory_order_relaxed); }
  uint64_t pinned_ns() const { return pinned_ns_.load(std::memory_order_relaxed); }
  unsigned spares_active() const { return spares_active_.load(std::memory_order_relaxed); }
  uint64_t spare_activations() const { return spare_activations_.load(std::memory_order_relaxed); }
  uint64_t backlog_wakeups() const { return backlog_wakeups_.load(std::memory_order_relaxed); }

 private:
  struct watch {
    uint64_t tick = ~uint64_t{0};
    fiber_control* fiber = nullptr;
    std::chrono::steady_clock::time_point since;
    int64_t cpu_since_ns = -1;  // the carrier thread's CPU time at `since`
    bool reported = false;
    carrier* spare = nullptr;  // brought online for this episode
    pin_event event;           // what was reported, for the end event
    uint64_t help_switches = ~uint64_t{0};  // carrier::switches at the last look
  };

  void run();
  void sample(carrier* c, watch& w, std::chrono::steady_clock::time_point now);
  void help_if_backlogged(carrier* c, watch& w);
  bool describe(carrier* c, fiber_control* f, bool kernel_blocked, long nr, uintptr_t sp, pin_event& e);
  void end_episode(carrier* c, watch& w, std::chrono::steady_clock::time_point now);
  void emit(const pin_event& e);
  void activate_spare(watch& w);
  void retire_spare(watch& w);

  runtime_impl* const rt_;
  deadlock_watch deadlocks_{rt_};  // checked on every tick, on this thread
  const std::chrono::milliseconds threshold_;
  const std::chrono::microseconds interval_;
  const unsigned max_spares_;
  enum class trace { off, brief, full } trace_ = trace::off;

  std::thread thread_;
  std::mutex mu_;  // guards stop_ and listener_ (std, for TSan: see blocking_pool.h)
  std::condition_variable cv_;
  bool stop_ = false;
  pin_listener listener_;

  std::atomic<uint64_t> events_{0};
  std::atomic<uint64_t> pinned_ns_{0};
  std::atomic<unsigned> spares_active_{0};
  std::atomic<uint64_t> spare_activations_{0};
  std::atomic<uint64_t> backlog_wakeups_{0};

  // stderr rate limit: at most kTraceBurst lines per second.
  std::chrono::steady_clock::time_point window_start_{};
  int window_lines_ = 0;
  uint64_t suppressed_ = 0;
};

}  // namespace bobbin::internal

#endif  // BOBBIN_RUNTIME_PINNING_MONITOR_H_
