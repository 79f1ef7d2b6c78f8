#include "runtime/sync/lock_cycle.h"

#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "runtime/inspect/fiber_dump.h"
#include "runtime/util/check.h"

#if BOBBIN_ASAN
#include <sanitizer/lsan_interface.h>
#endif

namespace bobbin {

namespace internal {

#ifdef NDEBUG
constexpr bool kTrackHoldersByDefault = false;
#else
constexpr bool kTrackHoldersByDefault = true;
#endif

std::atomic<bool> g_track_mutex_holders{kTrackHoldersByDefault};

// The holder of a mutex; only this file reads it from outside the mutex.
struct mutex_access {
  static fiber_control* holder(const mutex* m) {
    return static_cast<fiber_control*>(m->holder_.load(std::memory_order_acquire));
  }
};

namespace {

// BOBBIN_DETECT_LOCK_CYCLES=0|1 overrides the build's default, before main.
[[maybe_unused]] const bool g_env_applied = [] {
  if (const char* v = std::getenv("BOBBIN_DETECT_LOCK_CYCLES"); v != nullptr && *v != '\0') {
    g_track_mutex_holders.store(std::strcmp(v, "0") != 0, std::memory_order_relaxed);
  }
  return true;
}();

// Longer chains are possible but a cycle that long is not worth the walk on
// every park.
constexpr int kMaxChain = 32;

struct link {
  fiber_control* holder;  // holds `held`, waits for `waits_for`
  const mutex* held;
  const mutex* waits_for;
  uint32_t wait_seq;
  // Copied during the walk: `holder` may end once the walk is over.
  uint64_t id = 0;
  std::string name;
  runtime_impl* rt = nullptr;
};

// Walks in progress. A walk reads fibers and mutexes it does not own, found
// through holder_ and waiting_for_mutex; while tracking is on, a fiber
// control block is freed, and a mutex destroyed, only once no walk is in
// progress (wait_out_cycle_walks), so that every object a walk reaches
// outlives the walk. Dekker-style: a walk counts itself (seq_cst) before its
// first read; a freer clears the object's links (holder_ at unlock,
// waiting_for_mutex at the end of a wait) before it checks the count. A walk
// that counted itself after that check cannot find the object any more.
std::atomic<int> g_cycle_walks{0};

struct walk_in_progress {
  walk_in_progress() { g_cycle_walks.fetch_add(1, std::memory_order_seq_cst); }
  ~walk_in_progress() { g_cycle_walks.fetch_sub(1, std::memory_order_release); }
};

std::string describe(uint64_t id, const std::string& name) {
  return name.empty() ? absl::StrCat("fiber ", id) : absl::StrCat("fiber ", id, " \"", name, "\"");
}

std::string describe(const fiber_control* f) { return describe(f->id, f->name); }

void report(fiber_control* self, const mutex* wanted, const link* chain, int n) {
  std::string text;
  if (n == 0) {
    text = absl::StrFormat(
        "bobbin: lock cycle (deadlock): %s locks bobbin::mutex %p, which it already holds (bobbin::mutex is not "
        "recursive)\n",
        describe(self), wanted);
  } else {
    text = absl::StrFormat("bobbin: lock cycle (deadlock): %s waits for bobbin::mutex %p", describe(self), wanted);
    for (int i = 0; i < n; i++) {
      absl::StrAppendFormat(&text, ", held by %s, which waits for bobbin::mutex %p",
                            describe(chain[i].id, chain[i].name), chain[i].waits_for);
    }
    absl::StrAppendFormat(&text, ", held by %s\n", describe(self));
  }
  // The stacks: the others are parked (or about to be) in lock(); ours is
  // taken here. Only fibers of our own runtime can be walked.
  absl::flat_hash_set<uint64_t> ids{self->id};
  for (int i = 0; i < n; i++) {
    if (chain[i].rt == self->rt) ids.insert(chain[i].id);
  }
  fiber_snapshot snap = snapshot_fibers(*self->rt, &ids);
  for (const fiber_record& r : snap.fibers) absl::StrAppend(&text, render_one(r, "  "));
  write_stderr(text);
}

}  // namespace

mutex_wait_mark::mutex_wait_mark(fiber_control* self, const mutex* m) noexcept : self_(self), wanted_(m) {
  if (self_ == nullptr) return;
  // The sequence number first: a walker that sees the new wait also sees
  // that it is a new one.
  self_->mutex_wait_seq.fetch_add(1, std::memory_order_acq_rel);
  self_->waiting_for_mutex.store(m, std::memory_order_release);
}

mutex_wait_mark::~mutex_wait_mark() {
  if (self_ != nullptr) self_->waiting_for_mutex.store(nullptr, std::memory_order_release);
}

void wait_out_cycle_walks() noexcept {
  while (g_cycle_walks.load(std::memory_order_seq_cst) != 0) __builtin_ia32_pause();
}

void mutex_wait_mark::check_for_cycle() {
  if (self_ == nullptr) return;
  link chain[kMaxChain];
  int n = 0;
  std::optional<walk_in_progress> walking(std::in_place);
  const mutex* m = wanted_;
  for (;;) {
    fiber_control* holder = mutex_access::holder(m);
    if (holder == nullptr) return;  // free, held by a thread, or in hand-over
    if (holder == self_) break;     // back to us: a cycle
    if (n == kMaxChain) return;
    for (int i = 0; i < n; i++) {
      if (chain[i].holder == holder) return;  // a cycle we are not on: its last fiber reports it
    }
    const uint32_t seq = holder->mutex_wait_seq.load(std::memory_order_acquire);
    const auto* next = static_cast<const mutex*>(holder->waiting_for_mutex.load(std::memory_order_acquire));
    if (next == nullptr) return;  // the holder is not waiting for a mutex: it can go on
    chain[n++] = link{.holder = holder, .held = m, .waits_for = next, .wait_seq = seq,
                      .id = 0, .name = {}, .rt = nullptr};
    m = next;
  }
  // Confirm (see the header): the same waits, the same holders, now.
  for (int i = 0; i < n; i++) {
    const link& l = chain[i];
    if (mutex_access::holder(l.held) != l.holder) return;
    if (l.holder->waiting_for_mutex.load(std::memory_order_acquire) != l.waits_for) return;
    if (l.holder->mutex_wait_seq.load(std::memory_order_acquire) != l.wait_seq) return;
  }
  if (mutex_access::holder(m) != self_) return;
  // Two fibers closing the cycle at once both see it. One report per
  // cycle: whoever first marks its member with the smallest id, in that
  // member's current wait, reports it.
  fiber_control* first = self_;
  uint32_t first_wait = self_->mutex_wait_seq.load(std::memory_order_relaxed);
  for (int i = 0; i < n; i++) {
    if (chain[i].holder->id < first->id) {
      first = chain[i].holder;
      first_wait = chain[i].wait_seq;
    }
  }
  if (first->cycle_reported_wait.exchange(first_wait, std::memory_order_acq_rel) == first_wait) return;
  for (int i = 0; i < n; i++) {
    chain[i].id = chain[i].holder->id;
    chain[i].name = chain[i].holder->name;
    chain[i].rt = chain[i].holder->rt;
  }
  walking.reset();  // from here only the copies are read
  report(self_, wanted_, chain, n);
}

void fiber_exited_holding(fiber_control* f) {
  const int held = f->mutexes_held.load(std::memory_order_relaxed);
  if (held <= 0) return;
  write_stderr(absl::StrFormat(
      "bobbin: %s ended holding %d bobbin::mutex%s; they stay locked, and fibers that lock them wait for good "
      "(spawned at %s:%d in %s)\n",
      describe(f), held, held == 1 ? "" : "es", f->spawned_at.file_name(), f->spawned_at.line(),
      f->spawned_at.function_name()));
  // The mutexes' holder fields point at f, and cycle walks read it: keep
  // it for good (a small, deliberate leak, in a program that has a bug).
  f->refs.fetch_add(1, std::memory_order_relaxed);
#if BOBBIN_ASAN
  __lsan_ignore_object(f);
#endif
}

}  // namespace internal

}  // namespace bobbin
