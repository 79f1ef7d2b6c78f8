// Interceptors for pthread keys: pthread_key_create, pthread_key_delete, pthread_getspecific and
// pthread_setspecific. glibc makes and numbers every key; bobbin records
// which are per fiber (those made by OpenSSL's libcrypto, or by a library
// named in BOBBIN_FIBER_KEYS) and, for those, keeps a fiber's values itself
// (runtime/fiber/fiber_keys.h says why and which). Every other key, and
// every call off a fiber, is glibc's, at the cost of a load and a branch.
#undef _FORTIFY_SOURCE
#include <dlfcn.h>
#include <pthread.h>

#include <atomic>

#include "runtime/fiber/context.h"  // BOBBIN_TSAN
#include "runtime/fiber/fiber_control.h"
#include "runtime/fiber/fiber_keys.h"
#include "runtime/intercept/fiber_calls.h"

// glibc's own name for pthread_key_create (the default version since 2.34),
// called directly: ThreadSanitizer makes a key while it initializes, before
// dlsym or any instrumented code may run (see pthread_key_create below).
extern "C" int __pthread_key_create(pthread_key_t* key, void (*destructor)(void*));

namespace bobbin::internal::intercept {
namespace {

// Not instrumented under ThreadSanitizer, nor is anything these
// interceptors run on glibc's path: its runtime calls pthread_key_create
// while it initializes and pthread_setspecific as each thread starts,
// before instrumented code may run. So glibc's functions are found here
// with a plain dlsym rather than through libc.h's next_symbol, whose cold
// path is instrumented.
#define BOBBIN_UNINSTRUMENTED __attribute__((no_sanitize("thread")))

// (The builtins, not std::atomic, whose members an unoptimized build does
// not inline, so they would be instrumented.)
template <class Fn>
struct glibc_function {
  const char* name;
  Fn* fn = nullptr;
  BOBBIN_UNINSTRUMENTED __attribute__((always_inline)) Fn* get() noexcept {
    Fn* f = __atomic_load_n(&fn, __ATOMIC_RELAXED);
    if (__builtin_expect(f == nullptr, 0)) {
      f = reinterpret_cast<Fn*>(::dlsym(RTLD_NEXT, name));  // every thread finds the same
      __atomic_store_n(&fn, f, __ATOMIC_RELAXED);
    }
    return f;
  }
};

namespace real {
using key_delete_fn = int(pthread_key_t);
using getspecific_fn = void*(pthread_key_t);
using setspecific_fn = int(pthread_key_t, const void*);
glibc_function<key_delete_fn> pthread_key_delete{"pthread_key_delete"};
glibc_function<getspecific_fn> pthread_getspecific{"pthread_getspecific"};
glibc_function<setspecific_fn> pthread_setspecific{"pthread_setspecific"};
}  // namespace real

// The calling fiber if `key` is a per-fiber key (its registry word in
// `word`), else null: glibc's value is the caller's.
BOBBIN_UNINSTRUMENTED inline fiber_control* fiber_owning_value(pthread_key_t key, uint64_t* word) noexcept {
  if (key >= fiber_keys::kMaxKeys) return nullptr;
  *word = __atomic_load_n(reinterpret_cast<const uint64_t*>(&fiber_keys::registry[key]), __ATOMIC_ACQUIRE);
  if ((*word & fiber_keys::kPerFiber) == 0) return nullptr;
  carrier* c = tls_carrier;  // read at the interceptor's entry: no switch has happened
  return c != nullptr ? c->current() : nullptr;
}

#if BOBBIN_TSAN
// Set by a constructor: ThreadSanitizer's runtime has initialized (it makes
// its own key first, from its initializer, which runs before any other).
bool tsan_ready = false;
__attribute__((constructor)) void note_tsan_ready() { tsan_ready = true; }
#endif

int create_key(pthread_key_t* key, void (*destructor)(void*), const void* creator) noexcept {
  const int r = __pthread_key_create(key, destructor);
  if (r != 0) return r;
  // The library first: AddressSanitizer makes its key while it initializes,
  // before getenv sees the environment, and enabled_for_process() would
  // then remember "on" for good (BOBBIN_INTERCEPT=0 was ignored under ASan).
  fiber_keys::created(*key, destructor, fiber_keys::library_keys_per_fiber(creator) && enabled_for_process());
  return 0;
}

}  // namespace
}  // namespace bobbin::internal::intercept

using namespace bobbin::internal::intercept;  // NOLINT: the interceptors below are its whole point
namespace fiber_keys = bobbin::internal::fiber_keys;

// ThreadSanitizer's own key is glibc's: it is made before bobbin's
// constructors run. (glibc's __pthread_key_create is left alone: nothing
// makes keys by that name, which libstdc++ only takes the address of.)
BOBBIN_INTERPOSE BOBBIN_UNINSTRUMENTED int pthread_key_create(pthread_key_t* key, void (*destructor)(void*)) {
#if BOBBIN_TSAN
  if (!tsan_ready) return __pthread_key_create(key, destructor);
#endif
  return create_key(key, destructor, __builtin_return_address(0));
}

BOBBIN_INTERPOSE BOBBIN_UNINSTRUMENTED int pthread_key_delete(pthread_key_t key) {
  // First: glibc may hand the number out again as soon as it is free.
  fiber_keys::deleted(key);
  return real::pthread_key_delete.get()(key);
}

BOBBIN_INTERPOSE BOBBIN_UNINSTRUMENTED void* pthread_getspecific(pthread_key_t key) {
  uint64_t word = 0;
  if (bobbin::internal::fiber_control* f = fiber_owning_value(key, &word)) return fiber_keys::get(f, key, word);
  return real::pthread_getspecific.get()(key);
}

// glibc declares the value access(none) (it is stored, never read through),
// and GCC takes that to mean it may be uninitialized when passed on.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
BOBBIN_INTERPOSE BOBBIN_UNINSTRUMENTED int pthread_setspecific(pthread_key_t key, const void* value) {
  uint64_t word = 0;
  if (bobbin::internal::fiber_control* f = fiber_owning_value(key, &word)) return fiber_keys::set(f, key, word, value);
  return real::pthread_setspecific.get()(key, value);
}
#pragma GCC diagnostic pop
