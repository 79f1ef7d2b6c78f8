#include "runtime/inspect/world_pause.h"
#include "runtime/intercept/libc.h"

#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <mutex>

#include "runtime/sched/carrier.h"
#include "runtime/sched/scheduler.h"

namespace bobbin::internal {

namespace {

// Registration is once per process; a kernel without the command says so
// once too.
bool membarrier_ready() {
  static const bool ready =
      bobbin::internal::libc::syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
  return ready;
}

}  // namespace

world_pause::world_pause(runtime_impl& rt) : rt_(rt) {
  const bool can_fence = membarrier_ready();
  rt_.request_pause();
  exact_ = can_fence && bobbin::internal::libc::syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) == 0;
  for (auto& c : rt_.carriers()) {
    // current_ first: a carrier sets leaving_ before it changes current_.
    if (fiber_control* f = c->current_acquire()) busy_.insert(f);
    if (fiber_control* f = c->leaving_acquire()) busy_.insert(f);
  }
}

world_pause::~world_pause() { rt_.end_pause(); }

bool world_pause::stack_is_frozen(const fiber_control* f) const {
  if (!exact_ || busy_.contains(f)) return false;
  const fiber_state s = f->state.load(std::memory_order_acquire);
  return s == fiber_state::parked || s == fiber_state::runnable;
}

}  // namespace bobbin::internal
