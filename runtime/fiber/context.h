// Not part of the bobbin API.
//
// The stack switch: Boost.Context's fcontext primitives, wrapped with the
// annotations that let AddressSanitizer and ThreadSanitizer follow a thread
// of execution from one stack to another. Every switch in bobbin goes through
// switch_context(), which finishes the sanitizers' side of the switch itself
// when it returns; a new fiber, which arrives without returning from it,
// calls finish_first_switch() before anything else.
#ifndef BOBBIN_RUNTIME_FIBER_CONTEXT_H_
#define BOBBIN_RUNTIME_FIBER_CONTEXT_H_

#include <boost/context/detail/fcontext.hpp>
#include <cstddef>

#if defined(__SANITIZE_ADDRESS__)
#define BOBBIN_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define BOBBIN_ASAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define BOBBIN_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define BOBBIN_TSAN 1
#endif
#endif

#if BOBBIN_ASAN
#include <sanitizer/asan_interface.h>
#endif
#if BOBBIN_TSAN
#include <sanitizer/tsan_interface.h>
#endif

namespace bobbin::internal {

namespace ctx = boost::context::detail;

// One execution context: a fiber's, or a carrier thread's own stack.
struct exec_context {
  ctx::fcontext_t fctx = nullptr;  // where to jump to resume it
  const void* stack_low = nullptr;  // lowest usable address (ASan wants it)
  std::size_t stack_size = 0;
#if BOBBIN_ASAN
  void* asan_fake_stack = nullptr;
#endif
#if BOBBIN_TSAN
  void* tsan_fiber = nullptr;
#endif
};

// Leaves `from` for `to`, passing `data`. Returns when something switches
// back to `from`, with what that switch passed. `from_is_ending` tells ASan to
// drop `from`'s fake stack: `from` will never run again.
inline ctx::transfer_t switch_context([[maybe_unused]] exec_context& from, exec_context& to, void* data,
                                      bool from_is_ending = false) {
#if BOBBIN_ASAN
  __sanitizer_start_switch_fiber(from_is_ending ? nullptr : &from.asan_fake_stack, to.stack_low, to.stack_size);
#else
  (void)from_is_ending;
#endif
#if BOBBIN_TSAN
  __tsan_switch_to_fiber(to.tsan_fiber, 0);
#endif
  ctx::transfer_t t = ctx::jump_fcontext(to.fctx, data);
#if BOBBIN_ASAN
  __sanitizer_finish_switch_fiber(from.asan_fake_stack, nullptr, nullptr);
#endif
  return t;
}

// Called first thing on a fiber's own stack, when it runs for the first time.
inline void finish_first_switch() {
#if BOBBIN_ASAN
  __sanitizer_finish_switch_fiber(nullptr, nullptr, nullptr);
#endif
}

}  // namespace bobbin::internal

#endif  // BOBBIN_RUNTIME_FIBER_CONTEXT_H_
