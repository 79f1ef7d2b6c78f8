// A shared library that makes pthread keys, standing in for a third-party
// library whose keys BOBBIN_FIBER_KEYS names (tests/fiber/fiber_keys_test.cc):
// bobbin decides per key from the library that called pthread_key_create.
#include <pthread.h>

extern "C" __attribute__((visibility("default"), noinline)) int key_probe_create(pthread_key_t* key,
                                                                                 void (*destructor)(void*)) {
  const int r = pthread_key_create(key, destructor);
  asm volatile("");  // keeps the call a call, so its return address lies in this library
  return r;
}
