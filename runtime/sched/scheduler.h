// Not part of the bobbin API.
//
// runtime_impl: the carriers of one runtime and what they share (global
// inject queue, idle-carrier list, stack pool, fiber registry, counters).
// The design overview is at the top of scheduler.cc.
#ifndef BOBBIN_RUNTIME_SCHED_SCHEDULER_H_
#define BOBBIN_RUNTIME_SCHED_SCHEDULER_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "bobbin/runtime.h"
#include "runtime/fiber/fiber_control.h"
#include "runtime/fiber/stack_pool.h"
#include "runtime/offload/blocking_pool.h"
#include "runtime/park/futex_wait.h"
#include "runtime/pinning/monitor.h"
#include "runtime/sched/carrier.h"
#include "runtime/sched/fiber_fifo.h"

namespace bobbin::internal {

class runtime_impl {
 public:
  explicit runtime_impl(const runtime_options& options);
  ~runtime_impl();

  absl::Status start();
  void shutdown();
  // Shutdown's step 0 (see scheduler.cc) and its report.
  void cancel_and_wait_for_fibers();
  void report_abandoned(const std::vector<fiber_control*>& abandoned) const;
  bool stopping() const { return stopping_.load(std::memory_order_acquire); }

  absl::Status spawn(const body_maker& make, const fiber_options& options, const std::source_location& where,
                     fiber_control** out);

  // Makes a parked or new fiber runnable, from any thread. On one of this
  // runtime's carriers it goes to that carrier's queue (runnext when `next`);
  // anywhere else, to the global queue. Wakes an idle carrier if needed.
  void ready(fiber_control* f, bool next = true);

  // Called when work was added: wake one sleeping carrier unless one is
  // already spinning (looking for work).
  bool wake_idle_carrier();  // true if it woke one

  // Global inject queue.
  void push_global(fiber_control* f);
  void push_global_batch(fiber_control** fs, uint32_t n);
  // Takes a fiber to run and moves up to `batch` more to `into`'s queue.
  fiber_control* pop_global(carrier* into, uint32_t batch);
  bool global_empty() const { return global_size_.load(std::memory_order_acquire) == 0; }

  // Idle protocol (see scheduler.cc).
  void publish_idle(carrier* c);
  bool retract_idle(carrier* c);  // true if c was still listed (nobody woke it)
  // Work `asker` should not sleep on: the global queue, its own queue, or
  // another carrier's that is worth stealing from.
  bool any_work_visible(const carrier* asker) const;

  // Fiber lifecycle.
  void fiber_exited(fiber_control* f);
  void unregister(fiber_control* f);

  const runtime_options& options() const { return options_; }
  // The backend every carrier's reactor uses (runtime/io/backend_choice.h).
  bool on_epoll() const { return on_epoll_; }
  blocking_pool& offload_pool() { return *offload_pool_; }
  // Whether fibers' futex waits may park on their carriers' futex rings
  // (runtime/park/futex_wait.h): false without IORING_OP_FUTEX_WAIT, with
  // BOBBIN_FUTEX_RING=off at start, or once a carrier failed to create one.
  bool futex_rings_usable() const { return futex_ring_usable_.load(std::memory_order_relaxed); }
  // A carrier could not create its futex ring: waits block carriers from
  // now on; says why once.
  void futex_ring_failed(const absl::Status& why);
  void set_pin_listener(pin_listener l) { monitor_->set_listener(std::move(l)); }
  std::vector<std::unique_ptr<carrier>>& carriers() { return carriers_; }
  stack_pool& stacks() { return stacks_; }
  runtime_stats stats() const;
  uint64_t fibers_spawned() const { return spawned_.load(std::memory_order_relaxed); }
  uint64_t fibers_alive() const { return alive_.load(std::memory_order_relaxed); }

  std::atomic<int> num_spinning{0};
  std::atomic<int> num_idle{0};
  std::atomic<uint64_t> wakeups{0};
  std::atomic<uint64_t> os_condition_parks{0};  // runtime/sync/os_cond.cc
  std::atomic<uint64_t> futex_table_parks{0};   // runtime/park/futex_table.cc
  std::atomic<int> carriers_stopped{0};  // carriers past their loop (shutdown)
  // The fiber whose fields the pinning monitor is reading; an ending fiber
  // waits for the monitor before its control block can be freed.
  std::atomic<fiber_control*> monitor_reading{nullptr};

  // Fiber dumps (runtime/inspect/world_pause.h). Carriers check
  // pause_requested() before they mount a fiber and, if set, wait in
  // wait_out_pause() until end_pause().
  // Acquire (a plain load on x86): a carrier that sees the pause over then
  // mounts a fiber whose saved context the dump read before ending it.
  bool pause_requested() const { return pause_requested_.load(std::memory_order_acquire); }
  void request_pause() { pause_requested_.store(true, std::memory_order_seq_cst); }
  void end_pause() { pause_requested_.store(false, std::memory_order_release); }
  // One dump at a time per runtime; held across the pause.
  absl::Mutex& dump_mutex() const { return dump_mu_; }
  // Calls fn(fiber_control*) for every live fiber, under the registry's
  // shard locks: fn must be quick and must not park.
  template <class Fn>
  void for_each_fiber(Fn&& fn) const {
    for (const auto& s : registry_) {
      s.lock.lock();
      for (fiber_control* f = s.head; f; f = f->reg_next) fn(f);
      s.lock.unlock();
    }
  }

 private:
  runtime_options options_;
  // The first options_.carriers are the carriers; the rest are spares that
  // run only while the pinning monitor has them compensate (monitor.cc).
  std::vector<std::unique_ptr<carrier>> carriers_;
  stack_pool stacks_;
  std::unique_ptr<blocking_pool> offload_pool_;
  std::unique_ptr<pin_monitor> monitor_;
  std::atomic<bool> futex_ring_usable_{false};
  bool on_epoll_ = false;  // written by start(), before any carrier runs
  std::atomic<bool> stopping_{false};
  std::atomic<bool> stopped_{false};
  std::atomic<bool> cancel_new_fibers_{false};  // shutdown's grace period has begun

  mutable absl::Mutex global_mu_;
  fiber_fifo global_ ABSL_GUARDED_BY(global_mu_);
  std::atomic<uint32_t> global_size_{0};

  absl::Mutex idle_mu_;
  std::vector<carrier*> idle_ ABSL_GUARDED_BY(idle_mu_);

  static constexpr unsigned kRegistryShards = 16;
  struct registry_shard {
    mutable spin_lock lock;
    fiber_control* head = nullptr;
  };
  registry_shard registry_[kRegistryShards];

  std::atomic<int> outside_calls_{0};  // plain threads inside ready()
  alignas(64) std::atomic<bool> pause_requested_{false};  // read on every mount: a line of its own
  alignas(64) mutable absl::Mutex dump_mu_;
  std::atomic<uint64_t> spawned_{0};
  std::atomic<uint64_t> alive_{0};
};

// Ids are process-wide so a dump of two runtimes never shows the same id.
uint64_t next_fiber_id() noexcept;

}  // namespace bobbin::internal

#endif  // BOBBIN_RUNTIME_SCHED_SCHEDULER_H_
