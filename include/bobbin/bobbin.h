// bobbin/bobbin.h
//
// Everything bobbin offers, in one include. See README.md for a tour.
#ifndef BOBBIN_BOBBIN_H_
#define BOBBIN_BOBBIN_H_

#include "bobbin/blocking_calls.h"
#include "bobbin/deadline.h"
#include "bobbin/fiber.h"
#include "bobbin/fiber_local.h"
#include "bobbin/fs/file.h"
#include "bobbin/net/address.h"
#include "bobbin/net/tcp_listener.h"
#include "bobbin/net/tcp_stream.h"
#include "bobbin/offload.h"
#include "bobbin/pinning.h"
#include "bobbin/result.h"
#include "bobbin/runtime.h"
#include "bobbin/scope.h"
#include "bobbin/sync/channel.h"
#include "bobbin/sync/condition_variable.h"
#include "bobbin/sync/latch.h"
#include "bobbin/sync/mutex.h"
#include "bobbin/sync/semaphore.h"
#include "bobbin/this_fiber.h"
#include "bobbin/wait_reason.h"

#endif  // BOBBIN_BOBBIN_H_
