// Shared by the tests: run a body on a fresh runtime, bounded in time.
#ifndef BOBBIN_TESTS_TESTING_RUNTIME_FIXTURE_H_
#define BOBBIN_TESTS_TESTING_RUNTIME_FIXTURE_H_

#include <chrono>
#include <utility>

#include "bobbin/runtime.h"

namespace bobbin::testing {

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
