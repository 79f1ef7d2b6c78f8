// bobbin/internal/fiber_body.h -- not part of the bobbin API.
//
// The type-erased callable a fiber runs, and the C-style entry points that
// spawn and join it. fiber<T> and spawn() in bobbin/fiber.h are the API.
#ifndef BOBBIN_INTERNAL_FIBER_BODY_H_
#define BOBBIN_INTERNAL_FIBER_BODY_H_

#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <source_location>
#include <string_view>
#include <type_traits>
#include <utility>

#include "absl/status/status.h"
#include "bobbin/config.h"
#include "bobbin/deadline.h"

namespace bobbin {
struct fiber_options;
namespace internal {

class runtime_impl;
struct fiber_control;

// What a fiber runs. The runtime calls run() once on the fiber's stack and
// destroys the body when the fiber has ended and its handle is gone.
class fiber_body {
 public:
  virtual ~fiber_body() = default;
  virtual void run() = 0;  // exceptions are caught by the runtime
  std::exception_ptr error;
};

// Where a fiber's result waits for join(); the handle sees only this.
template <class R>
class result_body : public fiber_body {
 public:
  std::optional<std::conditional_t<std::is_void_v<R>, char, R>> value;
};

template <class F, class R>
class typed_body final : public result_body<R> {
 public:
  explicit typed_body(F&& f) : fn_(std::forward<F>(f)) {}
  void run() override {
    if constexpr (std::is_void_v<R>) {
      fn_();
    } else {
      this->value.emplace(fn_());
    }
  }

 private:
  std::decay_t<F> fn_;
};

// How spawn_fiber builds a fiber's body: in memory it allocates together
// with the fiber's control block, so a spawn costs one allocation, not two
// (skynet's profile had glibc's malloc and free at 21% of its time).
// construct() may throw; it is called at most once.
struct body_maker {
  std::size_t size;
  std::size_t align;
  fiber_body* (*construct)(void* where, void* state);
  void* state;
};

// Starts a fiber running the body `make` builds on `rt`, or on the calling
// fiber's runtime if `rt` is null. On success *out holds a reference for the
// handle. `where` is the spawn call, for fiber dumps. The body is built
// before the stack is taken, and destroyed again if no stack can be had.
BOBBIN_API absl::Status spawn_fiber(runtime_impl* rt, const body_maker& make, const fiber_options& options,
                                    const std::source_location& where, fiber_control** out);
// Parks (or blocks the thread) until the fiber has ended. Returns its body.
BOBBIN_API fiber_body* join_fiber(fiber_control* f);
// Drops the handle's reference; a fiber still running goes on detached.
BOBBIN_API void detach_fiber(fiber_control* f);
BOBBIN_API void release_fiber(fiber_control* f);
BOBBIN_API void request_fiber_stop(fiber_control* f) noexcept;
BOBBIN_API bool wait_fiber(fiber_control* f, deadline d);
BOBBIN_API uint64_t fiber_id(const fiber_control* f) noexcept;
BOBBIN_API std::string_view fiber_name(const fiber_control* f) noexcept;
[[noreturn]] BOBBIN_API void fatal(std::string_view message) noexcept;

}  // namespace internal
}  // namespace bobbin

#endif  // BOBBIN_INTERNAL_FIBER_BODY_H_
