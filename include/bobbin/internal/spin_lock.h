// bobbin/internal/spin_lock.h -- not part of the bobbin API.
//
// A test-and-test-and-set lock guarding the few-instruction critical sections
// of bobbin's sync primitives (wait-list surgery). It never parks: parking
// while holding it would block the whole carrier, so the park protocol
// releases it only after the parking fiber has switched off its stack.
#ifndef BOBBIN_INTERNAL_SPIN_LOCK_H_
#define BOBBIN_INTERNAL_SPIN_LOCK_H_

#include <atomic>

namespace bobbin::internal {

class spin_lock {
 public:
  void lock() noexcept {
    for (;;) {
      if (!locked_.exchange(true, std::memory_order_acquire)) return;
      while (locked_.load(std::memory_order_relaxed)) __builtin_ia32_pause();
    }
  }
  bool try_lock() noexcept {
    return !locked_.load(std::memory_order_relaxed) && !locked_.exchange(true, std::memory_order_acquire);
  }
  void unlock() noexcept { locked_.store(false, std::memory_order_release); }

 private:
  std::atomic<bool> locked_{false};
};

}  // namespace bobbin::internal

#endif  // BOBBIN_INTERNAL_SPIN_LOCK_H_
