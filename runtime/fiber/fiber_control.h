// Not part of the bobbin API.
//
// The fiber control block: everything the runtime knows about one fiber.
//
// States, and who may touch the fiber in each:
//   runnable  on exactly one queue (a carrier's runnext slot or run queue, or
//             the global inject queue); its stack is not in use; the carrier
//             that dequeues it owns it.
//   running   mounted on exactly one carrier (carrier::current), running on
//             its own stack; only that carrier touches `ctx`.
//   parked    on no run queue; linked (through a `waiter` on its own stack)
//             into at most one wait list, or waiting for one io_uring
//             completion; whoever claims the waiter or reaps the completion
//             makes it runnable, exactly once.
//   done      its body returned; the stack is back in the pool; the control
//             block lives on until the handle and the registry let it go.
// A fiber leaves `running` only by switching away; the post-switch action
// that publishes it (requeue, unlock of the wait list) runs on the next
// context, after its stack is no longer in use.
#ifndef BOBBIN_RUNTIME_FIBER_FIBER_CONTROL_H_
#define BOBBIN_RUNTIME_FIBER_FIBER_CONTROL_H_

#include <atomic>
#include <cstdint>
#include <exception>
#include <memory>
#include <source_location>
#include <stop_token>
#include <string>

#include "bobbin/internal/fiber_body.h"
#include "bobbin/internal/park.h"
#include "bobbin/wait_reason.h"
#include "runtime/fiber/context.h"
#include "runtime/fiber/stack_pool.h"

namespace bobbin::internal {

enum class fiber_state : uint8_t { runnable, running, parked, done };

class carrier;
struct completion;
struct scope_state;
struct fiber_local_table;

// What a cancellation has to interrupt: a waiter in a primitive's wait list
// (guarded by `lock`), or an io_uring operation on `ring`'s carrier.
struct cancel_hook {
  enum kind_t : uint8_t { wait_list, ring_op } kind = wait_list;
  waiter* w = nullptr;
  spin_lock* lock = nullptr;
  carrier* ring = nullptr;
  completion* op = nullptr;
};

// Where a fiber keeps its hook. The fields are written by the fiber and read
// by a canceller on another thread; fiber_control::cancel_word orders the
// two (runtime/fiber/cancel.h), and relaxed atomics (plain moves on x86)
// keep the accesses race-free by the letter of the memory model as well,
// which ThreadSanitizer checks.
struct published_cancel_hook {
  std::atomic<cancel_hook::kind_t> kind{cancel_hook::wait_list};
  std::atomic<waiter*> w{nullptr};
  std::atomic<spin_lock*> lock{nullptr};
  std::atomic<carrier*> ring{nullptr};
  std::atomic<completion*> op{nullptr};

  void store(const cancel_hook& h) noexcept {
    kind.store(h.kind, std::memory_order_relaxed);
    w.store(h.w, std::memory_order_relaxed);
    lock.store(h.lock, std::memory_order_relaxed);
    ring.store(h.ring, std::memory_order_relaxed);
    op.store(h.op, std::memory_order_relaxed);
  }
  cancel_hook load() const noexcept {
    return {kind.load(std::memory_order_relaxed), w.load(std::memory_order_relaxed),
            lock.load(std::memory_order_relaxed), ring.load(std::memory_order_relaxed),
            op.load(std::memory_order_relaxed)};
  }
};

// Set in fiber_control::parked_at_ms when the wait has a deadline (it ends
// by itself, so it cannot be part of a deadlock).
inline constexpr uint64_t kParkedWithDeadline = uint64_t{1} << 63;

inline const char* state_name(fiber_state s) {
  switch (s) {
    case fiber_state::runnable: return "runnable";
    case fiber_state::running: return "running";
    case fiber_state::parked: return "parked";
    case fiber_state::done: return "done";
  }
  return "?";
}

struct fiber_control {
  exec_context ctx;
  fiber_stack stack;
  runtime_impl* rt = nullptr;
  uint64_t id = 0;
  std::string name;
  std::atomic<fiber_state> state{fiber_state::runnable};
  std::atomic<wait_reason> reason{wait_reason::none};
  std::atomic<int> carrier{-1};  // last carrier it ran on, for dumps
  // Declared pinning (bobbin/pinning.h): while pin_depth > 0 the fiber takes
  // the plain-thread path of every blocking call, so it never unmounts.
  std::atomic<int> pin_depth{0};
  std::atomic<const char*> pin_why{nullptr};
  // Built in the same allocation, after this block (make_fiber_control);
  // destroyed with it.
  fiber_body* body = nullptr;
  std::size_t body_align = 0;  // the block's alignment, to free it

  fiber_control* next_global = nullptr;  // link in the global inject queue

  // Joining: guarded by join_lock.
  spin_lock join_lock;
  waiter_list joiners;
  bool finished = false;
  bool detached = false;

  // References: one for the running fiber (dropped when its stack is freed),
  // one for the handle (dropped by join or detach); the last release deletes
  // the block. The registry holds none: a fiber leaves it when it ends.
  std::atomic<int> refs{2};

  // Registry of live fibers, for dumps; guarded by the registry shard lock.
  fiber_control* reg_prev = nullptr;
  fiber_control* reg_next = nullptr;
  unsigned reg_shard = 0;

  // For fiber dumps (runtime/inspect): where and by whom it was spawned,
  // whether it has run yet (a fiber that has not has no frames to walk),
  // and when it last parked, on its carrier's coarse clock (one store on
  // the park path). At the end, so the fields the switch path touches keep
  // their cache lines.
  std::source_location spawned_at;
  uint64_t parent_id = 0;  // 0: spawned by a plain thread
  std::atomic<bool> started{false};
  std::atomic<uint64_t> parked_at_ms{0};  // | kParkedWithDeadline for a timed wait

  // Lock-cycle detection (runtime/sync/lock_cycle.h), while mutex holders
  // are tracked: the bobbin::mutex this fiber waits for, a count of its
  // waits (to tell one wait from the next), and how many it holds.
  std::atomic<const void*> waiting_for_mutex{nullptr};
  std::atomic<uint32_t> mutex_wait_seq{0};
  std::atomic<int> mutexes_held{0};
  std::atomic<uint32_t> cycle_reported_wait{0};  // the wait of it a cycle report covered

  // The waiter (on this fiber's stack) it is parked on in a primitive's
  // wait list, while it is; for runtime shutdown, which marks the waiter of
  // an abandoned fiber so that nothing wakes it later (scheduler.cc).
  std::atomic<waiter*> parked_waiter{nullptr};

  // Cancellation (runtime/fiber/cancel.h): the request, sticky once made,
  // and the wait it would have to interrupt, published while the fiber is
  // parked in a cancellable wait.
  std::atomic<uint32_t> cancel_word{0};
  published_cancel_hook hook;
  // Made on first use by this_fiber::get_stop_token(), stopped with the
  // fiber's cancellation; owned (deleted with the block).
  std::atomic<std::stop_source*> stop_source{nullptr};
  ~fiber_control() { delete stop_source.load(std::memory_order_relaxed); }

  // bobbin::fiber_local values (runtime/fiber/fiber_local.cc): made on the
  // first one, touched only by this fiber, destroyed when its body returns.
  fiber_local_table* locals = nullptr;

  // Structured concurrency (runtime/fiber/scope.cc): the scope this fiber
  // is a child of, and the scopes it owns (cancelled with it), linked
  // through scope_state and guarded by scopes_lock.
  scope_state* member_of = nullptr;
  // Under the scope's lock: its place in the scope's children list, whether
  // it is on it yet (the spawner adds it after spawn() returns, and the
  // child may run and end before that), and whether it ended unlisted.
  size_t scope_index = 0;
  bool scope_listed = false;
  bool scope_ended = false;
  spin_lock scopes_lock;
  scope_state* owned_scopes = nullptr;

  // A futex wait in the table that re-checks on a timer (runtime/park/
  // futex_table.h): the word it last waited on and its last interval, so a
  // wait that goes on backs off. Touched by this fiber only; at the end, off
  // the cache lines of the fields the switch and park paths touch.
  const void* futex_recheck_word = nullptr;
  uint32_t futex_recheck_ms = 0;
  uint64_t futex_recheck_ended_ms = 0;  // carrier::clock_ms() when the last re-check returned
};

// A control block with the fiber's body built beside it, in one allocation;
// the body's constructor may throw (then nothing is left allocated).
fiber_control* make_fiber_control(const body_maker& make);
// Destroys the body and the block; called by the last release_ref.
void destroy_fiber_control(fiber_control* f) noexcept;
void release_ref(fiber_control* f) noexcept;

// what() of an exception a fiber ended with, for reports (fiber_entry.cc).
std::string describe_exception(const std::exception_ptr& e);

}  // namespace bobbin::internal

#endif  // BOBBIN_RUNTIME_FIBER_FIBER_CONTROL_H_
