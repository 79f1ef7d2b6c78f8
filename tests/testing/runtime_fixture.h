// Shared by the tests: run a body on a fresh runtime, bounded in time.
#ifndef BOBBIN_TESTS_TESTING_RUNTIME_FIXTURE_H_
#define BOBBIN_TESTS_TESTING_RUNTIME_FIXTURE_H_

#include <unistd.h>

#include <chrono>
#include <utility>

#include "bobbin/pinning.h"
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

// How many times longer a bound in time is allowed to be in this build: 1 in
// the normal build, 5 under AddressSanitizer and 20 under ThreadSanitizer,
// which run this suite's fibers 2-5x and 5-20x slower (every switch, spawn
// and atomic goes through the sanitizer's runtime). A test that needs a
// bound in time passes it through scaled() and says in a comment why the
// bound holds in the normal build; the normal build keeps the exact bound,
// so what it proves is not weakened. The Python tests have SLACK_S for the
// same purpose.
#if defined(__SANITIZE_THREAD__)
inline constexpr int kTimeScale = 20;
#elif defined(__SANITIZE_ADDRESS__)
inline constexpr int kTimeScale = 5;
#else
inline constexpr int kTimeScale = 1;
#endif
template <class Rep, class Period>
constexpr std::chrono::duration<Rep, Period> scaled(std::chrono::duration<Rep, Period> bound) {
  return bound * kTimeScale;
}

inline runtime_options carriers(unsigned n) {
  runtime_options o;
  o.carriers = n;
  return o;
}

// Milliseconds of the steady clock since `t`.
inline double ms_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t).count();
}

// Reads one byte from `fd` inside a pinned_scope: called on a fiber, it
// keeps that fiber's carrier stuck in read(2) until a byte arrives (the
// stuck-carrier tests of the OS locks).
inline ssize_t pinned_read_byte(int fd) {
  pinned_scope pin("a test's stuck carrier");
  char c;
  return ::read(fd, &c, 1);
}

// Runs `body` on a main fiber of a runtime with `n` carriers.
template <class F>
auto run_on(unsigned n, F&& body) {
  return bobbin::run(std::forward<F>(body), carriers(n));
}

}  // namespace bobbin::testing

#endif  // BOBBIN_TESTS_TESTING_RUNTIME_FIXTURE_H_
