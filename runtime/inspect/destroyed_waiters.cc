// The report a sync primitive's destructor writes when fibers or threads
// still wait on it (bobbin/internal/park.h). Destroying a primitive that has
// waiters is a bug in the program (the standard library calls it undefined
// behaviour), and its usual symptom is a fiber that never wakes and a
// program that hangs with no clue why; naming the waiters, where they were
// spawned and what they waited for turns that into a one-line diagnosis.
//
// What happens to the waiters afterwards is the primitive's choice, stated
// in `outcome`: a channel wakes them with `closed` and a condition variable
// as from a spurious wake-up (neither touches the object after waking); a
// mutex, semaphore, latch or wait group cannot give a waiter a truthful
// answer, so its fibers are stranded: claimed and never woken, they stay
// parked for good (and show in fiber dumps) rather than resume into freed
// memory when a deadline fires. A plain thread waiting there is only named:
// it blocks on its own parker, and with a deadline it would touch the freed
// object when it times out, as it would with std::mutex.
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bobbin/internal/park.h"
#include "runtime/fiber/fiber_control.h"
#include "runtime/util/check.h"

namespace bobbin::internal {

void report_destroyed_with_waiters(const char* primitive, const void* object,
                                   std::initializer_list<waiter_list*> lists, const char* outcome,
                                   bool strand_fibers) noexcept {
  std::string lines;
  int count = 0;
  for (waiter_list* list : lists) {
    for (waiter* w = list->front(), *next = nullptr; w != nullptr; w = next) {
      next = w->next;
      // A waiter whose deadline fired is on its way out (it unlinks itself
      // once it gets the lock the caller holds).
      if (w->state.load(std::memory_order_acquire) != wait_state::waiting) continue;
      count++;
      if (!w->token.is_fiber) {
        // A thread blocks on its own parker; nothing to strand it with.
        absl::StrAppend(&lines, "  a plain thread (or a pinned fiber)\n");
        continue;
      }
      // Parked: the fiber cannot end before it is woken, so its control
      // block stays valid while we hold the lock its waiter is linked under.
      const auto* f = static_cast<const fiber_control*>(w->token.target);
      absl::StrAppendFormat(&lines, "  fiber %d \"%s\" parked on %s, spawned at %s:%d in %s\n", f->id, f->name,
                            std::string(to_string(f->reason.load(std::memory_order_relaxed))),
                            f->spawned_at.file_name(), f->spawned_at.line(), f->spawned_at.function_name());
      // Claimed, never finished: its timer's completion loses the race for
      // it, and nothing else holds it.
      if (strand_fibers && w->claim()) list->remove(w);
    }
  }
  if (count == 0) return;
  write_stderr(absl::StrFormat("bobbin: %s %p destroyed while %d %s waiting on it; %s:\n%s", primitive, object, count,
                               count == 1 ? "was" : "were", outcome, lines));
}

}  // namespace bobbin::internal
