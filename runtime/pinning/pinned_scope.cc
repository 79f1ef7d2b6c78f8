#include "bobbin/pinning.h"
#include "runtime/fiber/fiber_control.h"
#include "runtime/sched/carrier.h"

namespace bobbin {

// Only the fiber itself writes its pin fields; the monitor reads them.
pinned_scope::pinned_scope(const char* why) noexcept : previous_why_(nullptr), on_fiber_(false) {
  internal::carrier* c = internal::current_carrier();
  internal::fiber_control* f = c != nullptr ? c->current() : nullptr;
  if (f == nullptr) return;  // a plain thread is always "pinned"
  on_fiber_ = true;
  previous_why_ = f->pin_why.exchange(why, std::memory_order_relaxed);
  f->pin_depth.fetch_add(1, std::memory_order_relaxed);
}

pinned_scope::~pinned_scope() {
  if (!on_fiber_) return;
  // Still the same fiber: it cannot have migrated while pinned.
  internal::fiber_control* f = internal::current_carrier()->current();
  f->pin_depth.fetch_sub(1, std::memory_order_relaxed);
  f->pin_why.store(previous_why_, std::memory_order_relaxed);
}

}  // namespace bobbin
