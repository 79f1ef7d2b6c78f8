// Not part of the bobbin API.
//
// The fiber's side of bobbin::fiber_local (fiber_local.cc): its values are
// destroyed on the fiber when its body returns. The same table holds the
// fiber's values of per-fiber pthread keys (fiber_keys.h).
#ifndef BOBBIN_RUNTIME_FIBER_FIBER_LOCAL_H_
#define BOBBIN_RUNTIME_FIBER_FIBER_LOCAL_H_

#include <cstddef>
#include <cstdint>
#include <vector>

namespace bobbin::internal {

struct fiber_control;

struct fiber_local_table {
  struct slot {
    uint64_t id = 0;  // the fiber_local's; 0: empty
    void* value = nullptr;
    void (*destroy)(void*) = nullptr;
  };
  std::vector<slot> slots;
  std::vector<uint32_t> made;  // indices of the occupied slots, in the order their values were made
  // The fiber's values of per-fiber pthread keys (runtime/fiber/fiber_keys.h),
  // indexed by key; a value counts only under the registry word it was
  // stored under (a deleted key's values are not found).
  struct key_value {
    uint64_t word = 0;
    void* value = nullptr;
  };
  std::vector<key_value> key_values;

  // Empties the slot, and returns what it held for the caller to destroy
  // (after the table is consistent again: a destructor may use the table).
  slot take(uint32_t index) noexcept {
    slot s = slots[index];
    slots[index] = slot{};
    for (auto it = made.end(); it != made.begin();) {
      --it;
      if (*it == index) {
        made.erase(it);
        break;
      }
    }
    return s;
  }

  // Destroys every value, last made first, including values destructors
  // make meanwhile: up to kRounds times as many as there were (glibc gives
  // pthread keys PTHREAD_DESTRUCTOR_ITERATIONS, 4, rounds); the values a
  // destructor keeps making past that are leaked, not destroyed.
  static constexpr int kRounds = 4;
  void destroy_all() noexcept {
    std::size_t budget = made.size() * kRounds + kRounds;
    while (!made.empty() && budget-- > 0) {
      slot s = take(made.back());
      if (s.destroy != nullptr) s.destroy(s.value);
    }
  }
};

// Destroys `f`'s fiber_local values, last made first, and then its values
// of per-fiber pthread keys (as glibc runs a thread's C++ thread_local
// destructors before its keys'); on `f` itself.
void destroy_fiber_locals(fiber_control* f) noexcept;
// Frees the table of a fiber that never ended (abandoned at shutdown),
// leaving its values, as the objects on its stack are left.
void free_abandoned_fiber_locals(fiber_control* f) noexcept;

}  // namespace bobbin::internal

#endif  // BOBBIN_RUNTIME_FIBER_FIBER_LOCAL_H_
