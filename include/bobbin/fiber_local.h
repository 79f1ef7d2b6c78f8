// bobbin/fiber_local.h
//
// Storage of one value per fiber: Java's ThreadLocal on a virtual thread,
// Boost.Fiber's fiber_specific_ptr. Declare one (usually static), and each
// fiber that calls get() sees a value of its own, constructed on its first
// get() and destroyed when that fiber ends. Off a fiber (a plain thread,
// main) it is one value per thread, destroyed when the thread exits.
//
//   static bobbin::fiber_local<request_context> ctx;
//   void handle(request r) {
//     ctx->id = r.id;          // this fiber's own context
//     ...                      // parks, maybe resumes on another carrier
//     log(ctx->id);            // still this fiber's
//   }
//
//   // With an initial value, as ThreadLocal.withInitial:
//   static bobbin::fiber_local<std::mt19937> rng([] { return std::mt19937(seed()); });
//
// Why not thread_local: a fiber runs on a carrier thread, and a
// `thread_local` (or anything keyed by pthread_self() or gettid()) names
// that carrier's copy, which every fiber mounted on it shares, and which
// changes under the fiber when it parks and resumes on another carrier. A
// value that belongs to the request or the task belongs in a fiber_local.
// (A thread_local that is a cache of the thread's own, such as an
// allocator's free list or a reused buffer filled and drained between two
// parks, is fine: nothing is kept across a park.)
//
// Rules:
//   - get() never returns null; the reference stays valid until the fiber
//     ends (or the thread exits, off a fiber) or reset() is called.
//   - The initial value is made on the calling fiber, which may park while
//     making it; if it throws, get() throws and nothing is stored (unless
//     the initializer itself called get() first: that value stays).
//   - Values are destroyed on their own fiber, after its body returns and
//     before join() returns, in the reverse order of their construction. A
//     destructor may use other fiber_locals (a value made then is destroyed
//     too, up to four rounds, as pthread keys).
//   - Destroying the fiber_local itself does not reach into live fibers:
//     each value it made stays until its fiber ends, or until that fiber
//     first uses a fiber_local made later in the same slot (slots are
//     reused), whose get() destroys the old value first. So a fiber_local
//     declared in a plugin must not be destroyed by dlclose while fibers
//     that used it live. A fiber_local must outlive every get() on it, as
//     any object its users reference.
//   - The objects a fiber's function captured are destroyed after the
//     fiber ends, on whichever thread lets the fiber go (its joiner): a
//     capture's destructor that uses a fiber_local reaches that thread's or
//     fiber's value, not the ended fiber's.
//   - A thread's values are destroyed after its C++ thread_local objects
//     (whose destructors may still use them); the main thread's, at exit(),
//     are not destroyed, as pthread keys' are not.
//   - A fiber abandoned at runtime shutdown while parked never ends, and
//     its values are not destroyed (as the objects on its stack).
//
// Cost: get() is one call into the runtime (the current fiber is read
// there, never from a thread-local address the compiler could keep across
// a park), a bounds check and a compare: perf/RESULTS.md has it beside a
// thread_local access. The first get() on a fiber allocates the value and,
// for the fiber's first fiber_local, a small table.
#ifndef BOBBIN_FIBER_LOCAL_H_
#define BOBBIN_FIBER_LOCAL_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <utility>

#include "bobbin/config.h"

namespace bobbin {

namespace internal {
// A fiber_local's slot: `index` into each fiber's table (reused after the
// fiber_local is destroyed), `id` never reused, so a value left by a
// destroyed fiber_local is never mistaken for a new one's.
struct fiber_local_key {
  uint32_t index;
  uint64_t id;
};
BOBBIN_API fiber_local_key allocate_fiber_local_key();
BOBBIN_API void release_fiber_local_key(fiber_local_key key) noexcept;
// The calling fiber's (off a fiber: thread's) value for `key`, or null.
BOBBIN_API void* find_fiber_local(fiber_local_key key) noexcept;
// Takes `value` (owned from the moment it returns; `destroy` frees it) as
// the calling fiber's or thread's value for `key`, and returns the value
// stored: `value`, or the one an initializer that called get() itself
// stored first (then `value` is destroyed).
BOBBIN_API void* store_fiber_local(fiber_local_key key, void* value, void (*destroy)(void*));
// Destroys the calling fiber's or thread's value for `key`, if any.
BOBBIN_API void erase_fiber_local(fiber_local_key key) noexcept;
}  // namespace internal

template <class T>
class fiber_local {
 public:
  // Each value starts value-initialized: T().
  fiber_local() : key_(internal::allocate_fiber_local_key()) {}
  // Each value starts as initial()'s result.
  explicit fiber_local(std::function<T()> initial)
      : key_(internal::allocate_fiber_local_key()), initial_(std::move(initial)) {}
  fiber_local(const fiber_local&) = delete;
  fiber_local& operator=(const fiber_local&) = delete;
  ~fiber_local() { internal::release_fiber_local_key(key_); }

  // The calling fiber's value, made on first use.
  T& get() {
    void* v = internal::find_fiber_local(key_);
    if (v == nullptr) [[unlikely]] v = make();
    return *static_cast<T*>(v);
  }
  T& operator*() { return get(); }
  T* operator->() { return &get(); }

  // Whether the calling fiber has a value yet.
  bool has_value() const noexcept { return internal::find_fiber_local(key_) != nullptr; }
  // Destroys the calling fiber's value; the next get() makes a new one.
  void reset() noexcept { internal::erase_fiber_local(key_); }

 private:
  void* make() {
    std::unique_ptr<T> value(initial_ ? new T(initial_()) : new T());
    void* stored = internal::store_fiber_local(key_, value.get(), [](void* p) { delete static_cast<T*>(p); });
    value.release();  // owned by the fiber's table now
    return stored;
  }

  internal::fiber_local_key key_;
  std::function<T()> initial_;
};

}  // namespace bobbin

#endif  // BOBBIN_FIBER_LOCAL_H_
