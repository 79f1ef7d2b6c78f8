// bobbin::scope (bobbin/scope.h): children, failures, deadline and the
// cancellation tree.
//
// A scope's state lives on the heap, owned by the scope object on its
// owner's stack. Children hold a raw pointer to it: none can outlive it,
// because the scope waits for them all before the state is freed. The
// scope holds each child's handle reference while the child is in its
// `children` list, so a cancel() from another thread can always reach the
// child's control block; a child takes itself off the list (swap-remove,
// by its scope_index) and drops that reference as its last act in the
// scope, so a long-lived scope holds only the children still running.
//
// The cancellation tree: a fiber lists the scopes it owns (fiber_control::
// owned_scopes); cancelling the fiber cancels them, which cancels their
// children, which cancels the scopes those own, and so on. Locks are taken
// parent before child only (a fiber's scopes_lock, then a scope's lock,
// then, through request_cancel, the children's), so the walk cannot
// deadlock with an owner that links or unlinks a scope (it takes only its
// own scopes_lock).
#include "bobbin/scope.h"

#include <string>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "bobbin/this_fiber.h"
#include "runtime/fiber/cancel.h"
#include "runtime/fiber/fiber_control.h"
#include "runtime/sched/carrier.h"
#include "runtime/util/check.h"

namespace bobbin {
namespace internal {

struct scope_state {
  spin_lock lock;  // guards everything below but the owner links
  std::vector<fiber_control*> children;  // running, each with its handle reference
  waiter_list joiners;                   // join() waits here for running == 0
  std::vector<std::exception_ptr> failures;
  std::exception_ptr first_failure;  // the first failure before any cancellation
  bool failure_reported = false;     // join() rethrew it
  int running = 0;                   // reserved and running children
  bool cancelled = false;
  bool deadline_passed = false;  // the deadline cancelled it, with children running

  deadline until;
  fiber_control* owner = nullptr;
  fiber_control* timer = nullptr;  // the deadline's timer fiber (handle reference)
  // In owner->owned_scopes, under owner->scopes_lock.
  scope_state* prev_owned = nullptr;
  scope_state* next_owned = nullptr;

  // With `lock` held. Children are cancelled under it, so that join()
  // cannot drop their references meanwhile.
  void cancel_locked() noexcept {
    cancelled = true;
    for (fiber_control* c : children) request_cancel(c);
  }
};

namespace {

deadline earlier(deadline a, deadline b) {
  if (a.is_never()) return b;
  if (b.is_never()) return a;
  return a.time() < b.time() ? a : b;
}

void deadline_passed(scope_state* st) noexcept {
  st->lock.lock();
  if (st->running > 0 && !st->cancelled) {
    st->deadline_passed = true;
    st->cancel_locked();
  }
  st->lock.unlock();
}

// Waits until no child runs, including those spawned meanwhile (not
// interrupted by a cancellation of the caller: its own cancellation has
// cancelled the children instead). Returns what join() reports.
void join_all(scope_state* st, std::exception_ptr* first, bool* timed_out) {
  st->lock.lock();
  while (st->running > 0) {
    waiter w;
    w.prepare();
    st->joiners.push_back(&w);
    park(w, st->lock, st->joiners, deadline::never(), wait_reason::join, /*cancellable=*/false);
    st->lock.lock();
  }
  *first = st->first_failure;
  *timed_out = st->deadline_passed;
  st->lock.unlock();
}

}  // namespace

void scope_child_begin(scope_state* s) noexcept { current_carrier()->current()->member_of = s; }

void scope_child_end(scope_state* s, std::exception_ptr failure) noexcept {
  fiber_control* self = current_carrier()->current();
  self->member_of = nullptr;
  std::vector<waiter*> woken;
  s->lock.lock();
  const bool listed = self->scope_listed;
  if (listed) {  // off the list; the last child moves into this one's slot
    fiber_control* last = s->children.back();
    s->children[self->scope_index] = last;
    last->scope_index = self->scope_index;
    s->children.pop_back();
  } else {
    self->scope_ended = true;  // adopt() will not list it, and drops the reference
  }
  if (failure) {
    s->failures.push_back(failure);
    if (!s->cancelled && !s->first_failure) {
      s->first_failure = failure;
      s->cancel_locked();  // the siblings' work is moot now
    }
  }
  if (--s->running == 0) claim_all(s->joiners, 0, woken);
  s->lock.unlock();
  // Nothing of the scope is touched from here: join() may return and free it.
  notify_all(woken);
  if (listed) release_fiber(self);  // the handle reference the scope held
}

void cancel_owned_scopes(fiber_control* f) noexcept {
  f->scopes_lock.lock();
  for (scope_state* s = f->owned_scopes; s != nullptr; s = s->next_owned) {
    s->lock.lock();
    s->cancel_locked();
    s->lock.unlock();
  }
  f->scopes_lock.unlock();
}

}  // namespace internal

using internal::scope_state;

scope::scope(deadline d) : state_(new scope_state), uncaught_at_start_(std::uncaught_exceptions()) {
  internal::carrier* c = internal::current_carrier();
  BOBBIN_CHECK(c != nullptr && c->current() != nullptr, "bobbin: a bobbin::scope must be created on a fiber");
  internal::fiber_control* self = c->current();
  state_->owner = self;
  state_->until = self->member_of != nullptr ? internal::earlier(d, self->member_of->until) : d;
  if (!state_->until.is_never()) {
    scope_state* st = state_;
    try {
      auto timer = spawn_on(
          nullptr,
          [st] {
            if (this_fiber::sleep_until(st->until)) internal::deadline_passed(st);
          },
          {.name = "bobbin::scope deadline"}, std::source_location::current());
      state_->timer = std::exchange(timer.control_, nullptr);
      timer.body_ = nullptr;
    } catch (...) {
      delete state_;
      throw;
    }
  }
  self->scopes_lock.lock();
  state_->next_owned = self->owned_scopes;
  if (self->owned_scopes != nullptr) self->owned_scopes->prev_owned = state_;
  self->owned_scopes = state_;
  self->scopes_lock.unlock();
  // After linking: a cancellation of the owner either finds this scope in
  // its walk or was requested before, and is seen here.
  if (internal::cancel_requested(self)) cancel();
}

scope::~scope() {
  scope_state* st = state_;
  const bool unwinding = std::uncaught_exceptions() > uncaught_at_start_;
  st->lock.lock();
  const bool pending = st->running > 0;
  st->lock.unlock();
  if (pending) {
    if (unwinding) cancel();  // the block failed: its children's work is moot
    std::exception_ptr first;
    bool timed_out;
    internal::join_all(st, &first, &timed_out);
  }
  if (st->timer != nullptr) {
    internal::request_cancel(st->timer);
    internal::join_fiber(st->timer);
    internal::release_fiber(st->timer);
  }
  internal::fiber_control* owner = st->owner;
  owner->scopes_lock.lock();
  if (st->prev_owned != nullptr) st->prev_owned->next_owned = st->next_owned;
  else owner->owned_scopes = st->next_owned;
  if (st->next_owned != nullptr) st->next_owned->prev_owned = st->prev_owned;
  owner->scopes_lock.unlock();
  const bool unreported = st->first_failure && !st->failure_reported && !unwinding;
  if (unreported) {
    internal::fatal(absl::StrCat("bobbin: a bobbin::scope was left without join() after a child failed: ",
                                 internal::describe_exception(st->first_failure),
                                 " (call join(), which rethrows it, before leaving the scope)"));
  }
  delete st;
}

void scope::join() {
  std::exception_ptr first;
  bool timed_out = false;
  internal::join_all(state_, &first, &timed_out);
  if (first) {
    state_->lock.lock();
    state_->failure_reported = true;
    state_->lock.unlock();
    std::rethrow_exception(first);
  }
  if (timed_out) {
    throw std::system_error(std::make_error_code(std::errc::timed_out), "bobbin::scope: its deadline passed");
  }
}

void scope::cancel() noexcept {
  state_->lock.lock();
  state_->cancel_locked();
  state_->lock.unlock();
}

bool scope::cancelled() const noexcept {
  state_->lock.lock();
  const bool c = state_->cancelled;
  state_->lock.unlock();
  return c;
}

deadline scope::until() const noexcept { return state_->until; }

std::vector<std::exception_ptr> scope::exceptions() const {
  state_->lock.lock();
  std::vector<std::exception_ptr> all = state_->failures;
  state_->lock.unlock();
  return all;
}

void scope::reserve() {
  state_->lock.lock();
  state_->running++;
  state_->lock.unlock();
}

void scope::unreserve() noexcept {
  state_->lock.lock();
  state_->running--;
  state_->lock.unlock();
}

void scope::adopt(internal::fiber_control* child) noexcept {
  state_->lock.lock();
  if (child->scope_ended) {  // it ran and ended already
    state_->lock.unlock();
    internal::release_fiber(child);
    return;
  }
  child->scope_listed = true;
  child->scope_index = state_->children.size();
  state_->children.push_back(child);
  if (state_->cancelled) internal::request_cancel(child);
  state_->lock.unlock();
}

}  // namespace bobbin
