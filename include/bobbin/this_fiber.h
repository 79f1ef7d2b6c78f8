// bobbin/this_fiber.h
//
// Calls about the calling fiber, the analog of std::this_thread.
//
//   bobbin::this_fiber::sleep_for(10ms);   // parks; the carrier runs others
//   bobbin::this_fiber::yield();           // lets other runnable fibers run
//
// Off a fiber (on a plain thread) each call falls back to its std::this_thread
// counterpart, so code runs the same on or off the runtime.
// Blocks: sleep parks the fiber until the deadline (an io_uring timeout on
// the carrier's ring: a parked sleeper costs the carrier nothing).
// Cost: yield() is one context switch when another fiber is runnable, and
// returns at once otherwise.
#ifndef BOBBIN_THIS_FIBER_H_
#define BOBBIN_THIS_FIBER_H_

#include <chrono>
#include <cstdint>
#include <stop_token>
#include <string_view>

#include "bobbin/config.h"
#include "bobbin/deadline.h"

namespace bobbin::this_fiber {

// True when called on a fiber.
BOBBIN_API bool is_fiber() noexcept;
// The calling fiber's id (unique in the process, never reused), 0 off a fiber.
BOBBIN_API uint64_t id() noexcept;
// The calling fiber's name ("" if unnamed or off a fiber).
BOBBIN_API std::string_view name() noexcept;
// Index of the carrier running the caller, -1 off a fiber. May change after
// any call that parks.
BOBBIN_API int carrier_index() noexcept;

BOBBIN_API void yield() noexcept;
// Parks until `d`. Returns true, or false early if the fiber is cancelled
// (fiber::request_stop); off a fiber it always sleeps to the deadline.
BOBBIN_API bool sleep_until(deadline d) noexcept;

// True once the calling fiber has been cancelled (fiber::request_stop, its
// scope, or runtime shutdown). For code that computes without waiting and
// should check now and then. Always false off a fiber.
BOBBIN_API bool stop_requested() noexcept;

// A std::stop_token that is stopped when the calling fiber is cancelled, to
// hand to code that speaks C++20's vocabulary (std::stop_callback, a
// library taking a stop_token). bobbin's own waits do not need it. The
// first call allocates the fiber's std::stop_source; off a fiber it returns
// a token that is never stopped.
BOBBIN_API std::stop_token get_stop_token();

template <class Rep, class Period>
bool sleep_for(std::chrono::duration<Rep, Period> d) noexcept {
  return sleep_until(deadline(d));
}

}  // namespace bobbin::this_fiber

#endif  // BOBBIN_THIS_FIBER_H_
