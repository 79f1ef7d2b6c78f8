// Not part of the bobbin API.
//
// bump(): adds to a statistics counter that only one thread writes.
#ifndef BOBBIN_RUNTIME_UTIL_COUNTER_H_
#define BOBBIN_RUNTIME_UTIL_COUNTER_H_

#include <atomic>
#include <cstdint>

namespace bobbin::internal {

// Adds to a counter that only one thread writes (a carrier's own): a plain
// load and store, not a locked read-modify-write, which would cost ~20
// cycles on every switch. Readers on other threads see a recent value.
inline void bump(std::atomic<uint64_t>& counter, uint64_t n = 1) noexcept {
  counter.store(counter.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

}  // namespace bobbin::internal

#endif  // BOBBIN_RUNTIME_UTIL_COUNTER_H_
