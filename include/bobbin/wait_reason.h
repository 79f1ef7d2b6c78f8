// bobbin/wait_reason.h
//
// Why a fiber is parked. Every place in bobbin that parks a fiber passes its
// own reason, so a fiber dump says exactly what each parked fiber waits for
// (the analog of Go's waitReason). to_string() gives the stable text used in
// dumps and reports.
#ifndef BOBBIN_WAIT_REASON_H_
#define BOBBIN_WAIT_REASON_H_

#include <cstdint>
#include <string_view>

#include "bobbin/config.h"

namespace bobbin {

enum class wait_reason : uint8_t {
  none,
  yield,
  sleep,
  join,
  mutex_lock,
  condition_wait,
  semaphore_acquire,
  latch_wait,
  wait_group_wait,
  channel_send,
  channel_receive,
  net_accept,
  net_connect,
  net_read,
  net_write,
  net_close,
  file_io,
  offload,
  // Inside an intercepted libc call (see bobbin/blocking_calls.h).
  libc_read,
  libc_write,
  libc_accept,
  libc_connect,
  libc_poll,
  libc_sleep,
  libc_fsync,
  // Waiting for an OS lock or futex word (runtime/park/futex_wait.h).
  os_lock,
  // In pthread_cond_wait (std::condition_variable), taken over from glibc
  // (runtime/sync/os_cond.h).
  os_condition_wait,
  // In syscall(SYS_futex, FUTEX_WAIT...): std::atomic::wait, std::latch,
  // std::barrier, std::counting_semaphore, std::future and the guard of a
  // function-local static (runtime/intercept/futex_calls.cc).
  futex_wait,
  count_,  // not a reason: the number of reasons
};

BOBBIN_API std::string_view to_string(wait_reason r) noexcept;

}  // namespace bobbin

#endif  // BOBBIN_WAIT_REASON_H_
