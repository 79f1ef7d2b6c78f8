// Shared by the tests: run a body on a fresh runtime, bounded in time.
#ifndef BOBBIN_TESTS_TESTING_RUNTIME_FIXTURE_H_
#define BOBBIN_TESTS_TESTING_RUNTIME_FIXTURE_H_

#include <chrono>
#include <utility>

#include "bobbin/runtime.h"

namespace bobbin::testing {

// ThreadSanitizer counts every fiber as a thread and dies past 8,128 of
// them alive at once, so tests that park very many fibers scale down there.
#if defined(__SANITIZE_THREAD__)
inline constexpr bool kUnderTsan = true;
#else
inline constexpr bool kUnderTsan = false;
#endif
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
inline constexpr bool kUnderSanitizer = true;
#else
inline constexpr bool kUnderSanitizer = false;
#endif
// Creating a fiber under TSan also costs milliseconds, hence a low cap.
inline constexpr int max_live_fibers(int wanted) { return kUnderTsan && wanted > 2000 ? 2000 : wanted; }

inline runtime_options carriers(unsigned n) {
  runtime_options o;
  o.carriers = n;
  return o;
}

// Runs `body` on a main fiber of a runtime with `n` carriers.
template <class F>
auto run_on(unsigned n, F&& body) {
  return bobbin::run(std::forward<F>(body), carriers(n));
}

}  // namespace bobbin::testing

#endif  // BOBBIN_TESTS_TESTING_RUNTIME_FIXTURE_H_
