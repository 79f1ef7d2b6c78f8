// bobbin::fiber_local's storage (bobbin/fiber_local.h).
//
// Each fiber has a table, made on its first fiber_local value and hung off
// its control block; each plain thread has one in a thread_local. A table
// is a vector indexed by the fiber_local's slot index, each entry tagged
// with the id of the fiber_local that made it, plus the order the values
// were made in, so that they are destroyed last-made first. Only the
// owning fiber (or thread) touches its table: no locks. Slot indices come
// from a process-wide allocator under a spin lock (fiber_locals are made
// rarely, usually once, as statics).
#include "runtime/fiber/fiber_local.h"

#include <limits.h>
#include <pthread.h>

#include <cstdint>
#include <mutex>
#include <vector>

#include "bobbin/fiber_local.h"
#include "bobbin/internal/spin_lock.h"
#include "runtime/fiber/context.h"  // BOBBIN_ASAN
#include "runtime/fiber/fiber_control.h"
#include "runtime/fiber/fiber_keys.h"
#include "runtime/sched/carrier.h"
#include "runtime/util/check.h"
#include "runtime/util/mutex_lock.h"  // current_fiber_or_null

#if BOBBIN_ASAN
#include <sanitizer/lsan_interface.h>
#endif

namespace bobbin::internal {

namespace {

spin_lock keys_lock;
std::vector<uint32_t>* free_indices = nullptr;  // under keys_lock; never freed (statics may outlive it)
uint32_t next_index = 0;                        // under keys_lock
uint64_t next_id = 1;                           // under keys_lock

// A plain thread's table: a plain initial-exec thread-local pointer, read
// on every get() off a fiber (a C++ thread_local with a destructor would
// cost a call to its wrapper, and __tls_get_addr in a shared library). It
// is freed, values first, by a pthread key's destructor, which glibc runs
// after the thread's C++ thread_local destructors (one of which may still
// use a fiber_local) and again while they leave values behind.
__thread fiber_local_table* tls_table __attribute__((tls_model("initial-exec"))) = nullptr;

void free_thread_table(void* table) {
  auto* t = static_cast<fiber_local_table*>(table);
  tls_table = t;  // a destructor that uses a fiber_local finds its table
  t->destroy_all();
  tls_table = nullptr;
  delete t;
}

pthread_key_t thread_table_key() {
  static const pthread_key_t key = [] {
    pthread_key_t k;
    if (pthread_key_create(&k, free_thread_table) != 0) fatal("bobbin: fiber_local: pthread_key_create failed");
    return k;
  }();
  return key;
}

// The calling fiber's table, or off a fiber the thread's (null if none).
// Reads the carrier here, inside an out-of-line call that never parks:
// never an address computed before a park (an initial-exec thread-local is
// read through %fs each time; bobbin is not built with link-time
// optimization, which could inline this into a caller's loop).
inline fiber_local_table* current_table() {
  carrier* c = tls_carrier;
  if (c != nullptr) {
    if (fiber_control* f = c->current()) return f->locals;
  }
  return tls_table;
}

fiber_local_table* make_current_table() {
  if (fiber_control* f = current_fiber_or_null()) {
    if (f->locals == nullptr) f->locals = new fiber_local_table;
    return f->locals;
  }
  if (tls_table == nullptr) {
    auto* t = new fiber_local_table;
    pthread_setspecific(thread_table_key(), t);  // registers it to be freed at thread exit
    tls_table = t;
  }
  return tls_table;
}

}  // namespace

fiber_local_key allocate_fiber_local_key() {
  std::lock_guard l(keys_lock);
  fiber_local_key key{};
  if (free_indices != nullptr && !free_indices->empty()) {
    key.index = free_indices->back();
    free_indices->pop_back();
  } else {
    key.index = next_index++;
  }
  key.id = next_id++;
  // Room for this key's index to come back (release is noexcept).
  if (free_indices == nullptr) free_indices = new std::vector<uint32_t>;
  free_indices->reserve(next_index);
  return key;
}

void release_fiber_local_key(fiber_local_key key) noexcept {
  std::lock_guard l(keys_lock);
  free_indices->push_back(key.index);  // room reserved by allocate_fiber_local_key: no allocation here
}

void* find_fiber_local(fiber_local_key key) noexcept {
  fiber_local_table* t = current_table();
  if (t == nullptr || key.index >= t->slots.size()) return nullptr;
  const fiber_local_table::slot& s = t->slots[key.index];
  return s.id == key.id ? s.value : nullptr;
}

void* store_fiber_local(fiber_local_key key, void* value, void (*destroy)(void*)) {
  fiber_local_table* t = make_current_table();
  if (key.index >= t->slots.size()) t->slots.resize(key.index + 1);
  if (t->slots[key.index].id != 0 && t->slots[key.index].id != key.id) {
    // A value of a destroyed fiber_local whose index was reused. Its
    // destructor may use fiber_locals, this one included (then the slot is
    // this key's by the time it returns, and is handled below).
    fiber_local_table::slot stale = t->take(key.index);
    stale.destroy(stale.value);
    if (key.index >= t->slots.size()) t->slots.resize(key.index + 1);
  }
  if (t->slots[key.index].id == key.id) {  // the initializer (or a destructor) called get() and stored one first
    void* stored = t->slots[key.index].value;  // read before `destroy` runs code that may grow the table
    destroy(value);
    return stored;
  }
  t->made.push_back(key.index);  // first: if it throws, the caller still owns `value`
  t->slots[key.index] = {key.id, value, destroy};
  return value;
}

void erase_fiber_local(fiber_local_key key) noexcept {
  fiber_local_table* t = current_table();
  if (t == nullptr || key.index >= t->slots.size() || t->slots[key.index].id != key.id) return;
  fiber_local_table::slot s = t->take(key.index);
  s.destroy(s.value);
}

void destroy_fiber_locals(fiber_control* f) noexcept {
  if (f->locals == nullptr) return;
  // Destructors of either kind may make values of the other (OpenSSL's do
  // not): rounds alternate until one runs nothing, at most glibc's
  // PTHREAD_DESTRUCTOR_ITERATIONS (4) for the keys; key values still stored
  // after that are dropped with the table, as glibc drops a thread's.
  for (int round = 0; round < PTHREAD_DESTRUCTOR_ITERATIONS; round++) {
    f->locals->destroy_all();
    if (!fiber_keys::destroy_values(f->locals) && f->locals->made.empty()) break;
  }
  f->locals->destroy_all();
  delete f->locals;
  f->locals = nullptr;
}

void free_abandoned_fiber_locals(fiber_control* f) noexcept {
  fiber_local_table* t = f->locals;
  if (t == nullptr) return;
  f->locals = nullptr;
  for (const fiber_local_table::key_value& v : t->key_values) {
    if (v.value != nullptr) {
      // Its pthread key values (OpenSSL's error queue, say) are reachable
      // only from here, and were a thread's, freed by nobody either:
      // leaked with their table, which LeakSanitizer is told to count as
      // live, as the abandoned fiber's stack is (scheduler.cc).
#if BOBBIN_ASAN
      __lsan_ignore_object(t);
#endif
      return;
    }
  }
  delete t;  // the fiber_local values stay, as the objects on the fiber's stack
}

}  // namespace bobbin::internal
