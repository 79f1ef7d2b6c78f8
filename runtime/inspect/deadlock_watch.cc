#include "runtime/inspect/deadlock_watch.h"

#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "runtime/inspect/fiber_dump.h"
#include "runtime/sched/carrier.h"
#include "runtime/sched/scheduler.h"
#include "runtime/util/check.h"

namespace bobbin::internal {

std::atomic<int> g_timed_plain_thread_waits{0};

namespace {

// Waits only another fiber or thread can end. I/O, sleeps and offloaded
// calls end by themselves; so may a yield.
bool waits_for_others(wait_reason r) {
  switch (r) {
    case wait_reason::join:
    case wait_reason::mutex_lock:
    case wait_reason::condition_wait:
    case wait_reason::semaphore_acquire:
    case wait_reason::latch_wait:
    case wait_reason::wait_group_wait:
    case wait_reason::channel_send:
    case wait_reason::channel_receive:
      return true;
    default:
      return false;
  }
}

}  // namespace

bool deadlock_watch::everyone_is_stuck() const {
  if (g_timed_plain_thread_waits.load(std::memory_order_acquire) != 0) return false;
  int fibers = 0;
  bool stuck = true;
  rt_->for_each_fiber([&](fiber_control* f) {
    fibers++;
    if (f->state.load(std::memory_order_acquire) != fiber_state::parked ||
        !waits_for_others(f->reason.load(std::memory_order_relaxed)) ||
        (f->parked_at_ms.load(std::memory_order_relaxed) & kParkedWithDeadline) != 0) {
      stuck = false;
    }
  });
  return stuck && fibers > 0;
}

void deadlock_watch::tick(std::chrono::steady_clock::time_point now) {
  const auto after = rt_->options().deadlock_report_after;
  if (after.count() <= 0) return;
  uint64_t progress = rt_->fibers_spawned();  // every tick: no full stats()
  for (auto& c : rt_->carriers()) progress += c->switches.load(std::memory_order_relaxed);
  if (progress != last_progress_) {
    last_progress_ = progress;
    quiet_since_ = now;
    reported_ = false;
    return;
  }
  if (reported_ || now - quiet_since_ < after || !everyone_is_stuck()) return;
  reported_ = true;
  const uint64_t alive = rt_->fibers_alive();
  const auto quiet_ms = std::chrono::duration_cast<std::chrono::milliseconds>(now - quiet_since_).count();
  std::string report = absl::StrCat(
      "bobbin: all ", alive, " fibers are parked and nothing can wake them (deadlock): each waits on a bobbin ",
      "primitive without a deadline, no carrier has switched for ", quiet_ms, " ms, and no thread is in a timed wait\n");
  absl::StrAppend(&report, dump_runtime(*rt_, dump_format::text));
  write_stderr(report);
  if (rt_->options().abort_on_deadlock) {
    write_stderr("bobbin: aborting (runtime_options::abort_on_deadlock)\n");
    std::abort();
  }
}

}  // namespace bobbin::internal
