// Not part of the bobbin API.
//
// An intrusive first-in first-out list of runnable fibers, linked through
// fiber_control::next_global (a runnable fiber is on one list at a time).
// Unbounded and allocation-free. Not thread-safe: each user guards its own
// (the global queue with a mutex, a carrier's backlog with a spin lock; a
// carrier's bound list is touched by its own thread only).
#ifndef BOBBIN_RUNTIME_SCHED_FIBER_FIFO_H_
#define BOBBIN_RUNTIME_SCHED_FIBER_FIFO_H_

#include <cstdint>

#include "runtime/fiber/fiber_control.h"

namespace bobbin::internal {

class fiber_fifo {
 public:
  bool empty() const noexcept { return head_ == nullptr; }

  void push_back(fiber_control* f) noexcept {
    f->next_global = nullptr;
    if (tail_ != nullptr) tail_->next_global = f; else head_ = f;
    tail_ = f;
  }

  fiber_control* pop_front() noexcept {
    fiber_control* f = head_;
    if (f == nullptr) return nullptr;
    head_ = f->next_global;
    if (head_ == nullptr) tail_ = nullptr;
    f->next_global = nullptr;
    return f;
  }

  // Pops up to `max` into `out`; returns how many.
  uint32_t pop_front(fiber_control** out, uint32_t max) noexcept {
    uint32_t n = 0;
    while (n < max && head_ != nullptr) out[n++] = pop_front();
    return n;
  }

  void clear() noexcept { head_ = tail_ = nullptr; }

 private:
  fiber_control* head_ = nullptr;
  fiber_control* tail_ = nullptr;
};

}  // namespace bobbin::internal

#endif  // BOBBIN_RUNTIME_SCHED_FIBER_FIFO_H_
