// bobbin/pinning.h
//
// Pinning: when a fiber cannot unmount, it holds its carrier, and every
// fiber queued behind it waits. bobbin finds and reports pinning, and keeps
// the other fibers running where it can (compensation).
//
// Declared pinning. Code that must stay on one OS thread (thread-affine
// state, a native library that keeps thread-locals, an OS lock held across
// calls) runs inside a pinned region. In it the fiber is never migrated, and
// every blocking call blocks the carrier instead of parking the fiber,
// exactly as on a plain thread:
//
//   {
//     bobbin::pinned_scope pin("libfoo session");   // RAII
//     foo_begin(); stream.read_some(buf); foo_end(); // same OS thread throughout
//   }
//   int n = bobbin::pinned([&] { return foo_call(); }, "libfoo call");
//
// Detected pinning. A monitor thread (the analog of Go's sysmon) samples the
// carriers. A carrier that has run the same fiber for longer than
// runtime_options::pin_threshold (20 ms by default) without parking is
// reported, with the reason:
//   pin_reason::cpu       running on the CPU (a long computation)
//   pin_reason::syscall   blocked in the kernel outside bobbin (a plain
//                         read(2), sleep(3), getaddrinfo, a std::mutex),
//                         naming the system call from /proc
//   pin_reason::declared  inside a pinned region, blocked or running
// with the fiber's id and name, the carrier, how long so far, and a stack
// trace of the carrier captured at detection, symbolized. When the episode
// ends a second event gives the total duration.
//
// Seeing it: BOBBIN_TRACE_PINNED=short (one line per event) or =full (with
// the stack) prints to stderr, at most 10 events a second (the rest are
// counted, and the count is printed with the next event);
// runtime::set_pin_listener() receives every event; runtime_stats counts
// them (pin_events, pinned_ns).
//
// Compensation. While a carrier is blocked (declared, or in the kernel), the
// monitor brings a spare carrier online, which takes over the blocked
// carrier's runnable fibers and new work; it retires when the blocking ends.
// With runtime_options::spares_for_cpu_hogs, a carrier that has run one
// fiber for a whole monitor interval (threshold/4) with fibers queued behind
// it gets one too when no carrier is idle, so the kernel shares the cores
// between the hog and them (fibers are not preempted).
// runtime_options::max_spare_carriers bounds them. Fibers parked on the
// carrier's io_uring ring resume when that carrier switches.
//
// Fixing it: offload blocking or CPU-heavy calls (bobbin/offload.h), and use
// bobbin's I/O and sync primitives instead of the OS's. See README "Pinning".
// Cost: a pinned_scope is two relaxed stores; detection costs the carriers
// nothing (the monitor reads counters they keep anyway).
#ifndef BOBBIN_PINNING_H_
#define BOBBIN_PINNING_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "bobbin/config.h"

namespace bobbin {

class BOBBIN_API pinned_scope {
 public:
  // `why` is shown in pinning reports (copied only if a report is made: it
  // must outlive the scope, e.g. a string literal).
  explicit pinned_scope(const char* why = "pinned region") noexcept;
  ~pinned_scope();
  pinned_scope(const pinned_scope&) = delete;
  pinned_scope& operator=(const pinned_scope&) = delete;

 private:
  const char* previous_why_;
  bool on_fiber_;
};

template <class F>
decltype(auto) pinned(F&& fn, const char* why = "pinned region") {
  pinned_scope scope(why);
  return std::forward<F>(fn)();
}

enum class pin_reason : uint8_t { cpu, syscall, declared };
BOBBIN_API std::string_view to_string(pin_reason r) noexcept;

struct pin_event {
  uint64_t fiber_id = 0;
  std::string fiber_name;
  int carrier = -1;
  pin_reason reason = pin_reason::cpu;
  std::string detail;               // e.g. "blocked in the kernel in read(2)"
  bool ended = false;               // false: detected (ongoing); true: it ended
  std::chrono::nanoseconds duration{0};  // so far (detected) or in total (ended)
  std::vector<std::string> stack;   // symbolized frames, innermost first (detection only)
};

using pin_listener = std::function<void(const pin_event&)>;

// Formats an event as BOBBIN_TRACE_PINNED prints it (`full` adds the stack).
BOBBIN_API std::string format_pin_event(const pin_event& e, bool full);

}  // namespace bobbin

#endif  // BOBBIN_PINNING_H_
