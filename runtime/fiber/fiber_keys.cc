// Per-fiber pthread keys (fiber_keys.h): the registry of keys glibc made
// through bobbin's pthread_key_create, and each fiber's values, kept in its
// fiber_local table (fiber_local.h). Only the owning fiber touches its
// values: no locks. The registry is written by key creation and deletion,
// which POSIX leaves unsynchronized with the key's use, as glibc does.
#include "runtime/fiber/fiber_keys.h"

#include <dlfcn.h>
#include <limits.h>
#include <link.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string_view>

#include "runtime/fiber/fiber_control.h"
#include "runtime/fiber/fiber_local.h"

namespace bobbin::internal::fiber_keys {

std::atomic<uint64_t> registry[kMaxKeys];

namespace {

// Each key's destructor, as given to pthread_key_create.
std::atomic<void (*)(void*)> destructors[kMaxKeys];

// The libraries whose keys are per fiber by default: OpenSSL's libcrypto
// keeps every per-thread state in keys (crypto/threads_pthread.c), none in
// compiler thread-locals, and parks fibers inside itself (its rwlocks).
constexpr std::string_view kFiberKeyLibraries[] = {"libcrypto.so"};

bool starts_with(std::string_view s, std::string_view prefix) {
  return !prefix.empty() && s.substr(0, prefix.size()) == prefix;
}

// Whether `file_name` (a base name) is named by BOBBIN_FIBER_KEYS. Read at
// every key creation, which is rare, so that a program (or a test) may set
// it before the library that needs it makes its keys.
bool named_by_environment(std::string_view file_name) {
  const char* v = std::getenv("BOBBIN_FIBER_KEYS");
  if (v == nullptr) return false;
  std::string_view list(v);
  while (!list.empty()) {
    const size_t comma = list.find(',');
    if (starts_with(file_name, list.substr(0, comma))) return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

// The file name of the object `pc` lies in, or null. _dl_find_object
// (glibc 2.35) takes no lock; dladdr takes the dynamic linker's, which
// dlopen holds while it runs a library's constructors: a constructor that
// waits for a thread that is making a key here (OpenSSL's run-once
// initialization) would deadlock.
const char* object_file_name(const void* pc) noexcept {
#if defined(__GLIBC__) && __GLIBC_PREREQ(2, 35)
  dl_find_object found{};
  if (_dl_find_object(const_cast<void*>(pc), &found) != 0 || found.dlfo_link_map == nullptr) return nullptr;
  return found.dlfo_link_map->l_name;  // "" for the executable
#else
  Dl_info info{};
  return ::dladdr(pc, &info) != 0 ? info.dli_fname : nullptr;
#endif
}

}  // namespace

bool library_keys_per_fiber(const void* creator) noexcept {
  const char* name = object_file_name(creator);
  if (name == nullptr) return false;
  const char* slash = std::strrchr(name, '/');
  const std::string_view base(slash != nullptr ? slash + 1 : name);
  for (std::string_view lib : kFiberKeyLibraries) {
    if (starts_with(base, lib)) return true;
  }
  return named_by_environment(base);
}

void created(pthread_key_t key, void (*destructor)(void*), bool per_fiber) noexcept {
  if (key >= kMaxKeys) return;
  destructors[key].store(destructor, std::memory_order_release);
  const uint64_t generation = (registry[key].load(std::memory_order_relaxed) >> 1) + 1;
  // Release: a fiber that learns the key (through whatever the creator
  // published it with) finds its destructor.
  registry[key].store(generation << 1 | (per_fiber ? kPerFiber : 0), std::memory_order_release);
}

void deleted(pthread_key_t key) noexcept {
  if (key >= kMaxKeys) return;
  const uint64_t generation = (registry[key].load(std::memory_order_relaxed) >> 1) + 1;
  registry[key].store(generation << 1, std::memory_order_release);
}

void* get(fiber_control* f, pthread_key_t key, uint64_t word) noexcept {
  const fiber_local_table* t = f->locals;
  if (t == nullptr || key >= t->key_values.size()) return nullptr;
  const fiber_local_table::key_value& v = t->key_values[key];
  return v.word == word ? v.value : nullptr;
}

int set(fiber_control* f, pthread_key_t key, uint64_t word, const void* value) noexcept {
  fiber_local_table* t = f->locals;
  if (value == nullptr && (t == nullptr || key >= t->key_values.size())) return 0;  // null already
  try {
    if (t == nullptr) t = f->locals = new fiber_local_table;
    // (destroy_values indexes afresh after each destructor, which may get here.)
    if (key >= t->key_values.size()) t->key_values.resize(key + 1);
  } catch (const std::bad_alloc&) {
    return ENOMEM;
  }
  t->key_values[key] = {word, const_cast<void*>(value)};
  return 0;
}

bool destroy_values(fiber_local_table* t) noexcept {
  bool ran = false;
  for (unsigned key = 0; key < t->key_values.size(); key++) {
    fiber_local_table::key_value& v = t->key_values[key];  // not used past the destructor: it may grow the table
    if (v.value == nullptr) continue;
    void* value = v.value;
    const uint64_t stored_under = v.word;
    v = {};
    // The destructor first, then the word: a key deleted and made again
    // in between does not hand this value to the new key's destructor.
    void (*destructor)(void*) = destructors[key].load(std::memory_order_acquire);
    const bool current = stored_under == registry[key].load(std::memory_order_acquire);
    if (!current || destructor == nullptr) continue;  // a deleted key's value is dropped, as glibc drops it
    destructor(value);
    ran = true;
  }
  return ran;
}

}  // namespace bobbin::internal::fiber_keys
