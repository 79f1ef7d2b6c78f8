// The table of fibers' futex waits (futex_table.h says when it is used and
// why no wake is lost). Each entry is a waiter (bobbin/internal/park.h) on
// the waiting fiber's stack, parked with park(): its deadline, the re-check
// timer and the wake-once protocol are the sync primitives' own.
#include "runtime/park/futex_table.h"

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdint>

#include "bobbin/internal/park.h"
#include "bobbin/internal/spin_lock.h"
#include "runtime/fiber/fiber_control.h"
#include "runtime/park/park_timer.h"
#include "runtime/sched/carrier.h"
#include "runtime/sched/scheduler.h"

namespace bobbin::internal {

namespace {

// A bucket per hash of the word's address. 256 of them: waits on distinct
// words rarely share one, and a scan passes over a bucket's other words'
// entries only.
struct alignas(64) bucket {
  spin_lock lock;
  waiter_list list;
  // Entries in `list` plus fibers about to add one (raised before the
  // word is checked): a waker that reads 0 after changing the word has
  // nobody here to wake.
  std::atomic<uint32_t> waiting{0};
};

constexpr unsigned kBuckets = 256;
bucket g_buckets[kBuckets];

unsigned index_of(const void* word) {
  // Words are 4-byte aligned; mix the higher bits in (Fibonacci hashing).
  const auto a = reinterpret_cast<uintptr_t>(word) >> 2;
  return static_cast<unsigned>((a * 0x9E3779B97F4A7C15ull) >> (64 - 8));
}
bucket& bucket_of(const void* word) { return g_buckets[index_of(word)]; }
static_assert(kBuckets == 1u << 8);

// A table entry: the waiter, and its place among the bound wakes.
struct table_waiter : waiter {
  table_waiter* bound_next = nullptr;
  table_waiter* bound_prev = nullptr;
  // In its stripe's list of bound wakes. Set by the waker before it
  // notifies; the release store of false by whoever unlinks it is the last
  // access to the entry (its fiber may return and end its frame after it).
  std::atomic<bool> listed{false};
};

// Bound wakes: fibers woken from the table that must resume on their home
// carrier and have not run yet, in lists striped by that carrier's index,
// so that the pinning monitor, when it marks a carrier blocked, finds the
// wakes stuck on it and passes them on (futex_table_pass_on_wakes_stuck_on).
struct alignas(64) bound_stripe {
  spin_lock lock;
  table_waiter* head = nullptr;
};
constexpr unsigned kBoundStripes = 16;
bound_stripe g_bound[kBoundStripes];

const carrier* home_of(const waiter* w) { return static_cast<const carrier*>(w->token.home); }
bound_stripe& stripe_of(const carrier* home) { return g_bound[home->index() % kBoundStripes]; }

void unlink_bound(bound_stripe& st, table_waiter* w) {
  if (w->bound_prev != nullptr) w->bound_prev->bound_next = w->bound_next; else st.head = w->bound_next;
  if (w->bound_next != nullptr) w->bound_next->bound_prev = w->bound_prev;
}

// What a waiter waits for, beyond the word (in waiter::payload): the scope
// above the bitset, in waiter::aux.
constexpr uintptr_t kSharedScope = uintptr_t{1} << 32;
uintptr_t key_bits(futex_scope scope, uint32_t bitset) {
  return uintptr_t{bitset} | (scope == futex_scope::shared ? kSharedScope : 0);
}
// A key that matches every wait on the word, whatever its scope and bitset
// (futex_table_wake_all).
constexpr uintptr_t kAnyWait = ~uintptr_t{0};
bool matches(const waiter* w, const void* word, uintptr_t key) {
  if (w->payload != word) return false;
  return key == kAnyWait || ((w->aux & kSharedScope) == (key & kSharedScope) &&
                             (static_cast<uint32_t>(w->aux) & static_cast<uint32_t>(key)) != 0);
}

// Read only of a waiter still waiting: one abandoned at a runtime's
// shutdown (runtime_impl::shutdown marks it timed out and leaks its stack)
// may stay linked here, its carrier gone.
bool home_blocked(const waiter* w) {
  if (w->state.load(std::memory_order_acquire) != wait_state::waiting) return false;
  const auto* home = static_cast<const carrier*>(w->token.home);
  return home != nullptr && home->blocked.load(std::memory_order_relaxed);
}

bool nobody_waits(const bucket& b) {
  // The waker has just changed the word (futex_table.h): order that store
  // before this load, as the waiter orders its count before its check.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  return b.waiting.load(std::memory_order_relaxed) == 0;
}

int wake_in(bucket& b, const void* word, int n, uintptr_t key);
void pass_on(const void* word, uintptr_t aux);

}  // namespace

__attribute__((visibility("hidden"))) std::atomic<bool> g_futex_table_used{false};

futex_wait_result futex_table_wait(carrier* c, const std::atomic<uint32_t>* word, uint32_t expected, deadline d,
                                   futex_scope scope, wait_reason reason, futex_resume resume, uint32_t bitset,
                                   futex_wakers wakers) {
  fiber_control* self = c->current();
  deadline until = d;
  bool rechecking = false;
  if (wakers == futex_wakers::may_bypass_bobbin) {
    // The same fiber back on the same word right after a re-check waits
    // twice as long before the next (futex_table.h); a wait begun later
    // (the caller took the lock and went on) starts again at kRecheckFirst.
    std::chrono::milliseconds pause = kRecheckFirst;
    const uint64_t now_ms = c->clock_ms();
    if (self->futex_recheck_word == word && now_ms - self->futex_recheck_ended_ms <= self->futex_recheck_ms) {
      pause = std::min(std::chrono::milliseconds(self->futex_recheck_ms) * 2, kRecheckMax);
    }
    self->futex_recheck_word = word;
    self->futex_recheck_ms = static_cast<uint32_t>(pause.count());
    const deadline next(pause);
    if (d.is_never() || next.time() < d.time()) {
      until = next;
      rechecking = true;
    }
  }

  // The timer is made before the bucket's lock is taken (park_timer.h),
  // after a first look at the word, which spares the allocation when the
  // lock was let go meanwhile; the look under the lock below decides.
  if (word->load(std::memory_order_relaxed) != expected) {
    self->futex_recheck_word = nullptr;
    return futex_wait_result::value_changed;
  }
  park_timer timer(c, until);
  table_waiter w;
  w.prepare();
  if (resume == futex_resume::parking_carrier) w.token.home = c;
  w.payload = const_cast<std::atomic<uint32_t>*>(word);
  w.aux = key_bits(scope, bitset);
  if (!g_futex_table_used.load(std::memory_order_relaxed)) g_futex_table_used.store(true, std::memory_order_seq_cst);
  bucket& b = bucket_of(word);
  b.lock.lock();
  b.waiting.fetch_add(1, std::memory_order_seq_cst);
  if (word->load(std::memory_order_seq_cst) != expected) {
    b.waiting.fetch_sub(1, std::memory_order_relaxed);
    b.lock.unlock();
    self->futex_recheck_word = nullptr;
    return futex_wait_result::value_changed;
  }
  b.list.push_back(&w);
  c->rt()->futex_table_parks.fetch_add(1, std::memory_order_relaxed);
  const wait_state s = park(w, b.lock, b.list, until, reason, /*cancellable=*/false, timer);
  b.waiting.fetch_sub(1, std::memory_order_relaxed);
  if (s == wait_state::notified) {
    if (w.listed.load(std::memory_order_acquire)) {
      // Still among the bound wakes (the monitor did not pass it on).
      bound_stripe& st = stripe_of(c);
      st.lock.lock();
      if (w.listed.load(std::memory_order_relaxed)) {
        unlink_bound(st, &w);
        w.listed.store(false, std::memory_order_relaxed);
      }
      st.lock.unlock();
    }
    self->futex_recheck_word = nullptr;
    return futex_wait_result::woken;
  }
  // Timed out: the caller's deadline, or a re-check before it.
  if (rechecking && !d.expired()) {
    self->futex_recheck_ended_ms = current_carrier()->clock_ms();  // it may have resumed on another carrier
    return futex_wait_result::woken;
  }
  self->futex_recheck_word = nullptr;
  return futex_wait_result::timed_out;
}

int futex_table_wake(const void* word, int n, futex_scope scope, uint32_t bitset) {
  if (n <= 0) return 0;
  bucket& b = bucket_of(word);
  if (nobody_waits(b)) return 0;
  return wake_in(b, word, n, key_bits(scope, bitset));
}

int futex_table_wake_after_locked_rmw(const void* word, int n, futex_scope scope, uint32_t bitset) {
  if (n <= 0) return 0;
  bucket& b = bucket_of(word);
  // No fence: the caller's locked instruction on the word already ordered
  // its change before this load (futex_table.h).
  if (b.waiting.load(std::memory_order_relaxed) == 0) return 0;
  return wake_in(b, word, n, key_bits(scope, bitset));
}

void futex_table_wake_all(const void* word) {
  bucket& b = bucket_of(word);
  if (nobody_waits(b)) return;
  wake_in(b, word, INT_MAX, kAnyWait);
}

void futex_table_pass_on_wakes_stuck_on(const carrier* c) {
  bound_stripe& st = stripe_of(c);
  for (;;) {
    const void* word = nullptr;
    uintptr_t aux = 0;
    st.lock.lock();
    for (table_waiter* w = st.head; w != nullptr; w = w->bound_next) {
      if (home_of(w) != c) continue;
      // Read before the unlink: once `listed` is false the fiber, back on
      // its carrier, may return and end the entry's frame.
      word = w->payload;
      aux = w->aux;
      unlink_bound(st, w);
      w->listed.store(false, std::memory_order_release);
      break;
    }
    st.lock.unlock();
    if (word == nullptr) return;
    pass_on(word, aux);
  }
}

unsigned futex_table_bucket_index(const void* word) { return index_of(word); }

namespace {

int wake_in(bucket& b, const void* word, int n, uintptr_t key) {
  // Claimed under the lock, woken after it (park.h). A few on the stack;
  // a broadcast to more wakes them a batch at a time.
  constexpr int kBatch = 32;
  table_waiter* claimed[kBatch];
  bool counts[kBatch];  // toward n: it can run now (else it is stuck)
  int counted = 0;
  int stuck = 0;
  for (;;) {
    int k = 0;
    bool runnable_left = false;
    b.lock.lock();
    // Fibers whose carrier can run them first; each counts toward n.
    for (waiter* w = b.list.front(); w != nullptr && counted < n;) {
      if (k == kBatch) {
        runnable_left = true;
        break;
      }
      waiter* next = w->next;
      if (matches(w, word, key) && !home_blocked(w)) {
        b.list.remove(w);
        if (w->claim()) {  // else its deadline won: it leaves by itself
          counts[k] = true;
          claimed[k++] = static_cast<table_waiter*>(w);
          counted++;
        }
      }
      w = next;
    }
    // Then, for the wakes left, fibers bound to a blocked carrier: each
    // keeps its wake (it is due one) but does not count, so the caller
    // passes the wake on (to the kernel's waiters: futex_wake).
    for (waiter* w = b.list.front(); !runnable_left && w != nullptr && k < kBatch && stuck < n - counted;) {
      waiter* next = w->next;
      if (matches(w, word, key)) {
        b.list.remove(w);
        if (w->claim()) {
          counts[k] = false;
          claimed[k++] = static_cast<table_waiter*>(w);
          stuck++;
        }
      }
      w = next;
    }
    const bool more = k == kBatch && counted < n;
    b.lock.unlock();
    // A counted fiber bound to its carrier is listed among the bound wakes
    // until it runs, unless that carrier was marked blocked meanwhile: then
    // its wake is passed on here. Under the stripe's lock, so that a monitor
    // marking the carrier blocked either finds it listed or is seen here.
    uintptr_t to_pass_on[kBatch];  // the waits' scope and bitset
    int passes = 0;
    for (int i = 0; i < k; i++) {
      table_waiter* w = claimed[i];
      const carrier* home = home_of(w);
      if (!counts[i] || home == nullptr) continue;
      bound_stripe& st = stripe_of(home);
      st.lock.lock();
      if (home->blocked.load(std::memory_order_relaxed)) {
        to_pass_on[passes++] = w->aux;
      } else {
        w->bound_prev = nullptr;
        w->bound_next = st.head;
        if (st.head != nullptr) st.head->bound_prev = w;
        st.head = w;
        w->listed.store(true, std::memory_order_relaxed);
      }
      st.lock.unlock();
    }
    for (int i = 0; i < k; i++) notify(claimed[i]);
    for (int i = 0; i < passes; i++) pass_on(word, to_pass_on[i]);
    if (!more) return counted;
  }
}

void pass_on(const void* word, uintptr_t aux) {
  pass_wake_on(static_cast<const std::atomic<uint32_t>*>(word),
               (aux & kSharedScope) != 0 ? futex_scope::shared : futex_scope::process_private,
               static_cast<uint32_t>(aux));
}

}  // namespace

}  // namespace bobbin::internal
