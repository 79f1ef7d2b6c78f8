// Not part of the bobbin API.
//
// The fiber's side of bobbin::fiber_local (fiber_local.cc): its values are
// destroyed on the fiber when its body returns.
#ifndef BOBBIN_RUNTIME_FIBER_FIBER_LOCAL_H_
#define BOBBIN_RUNTIME_FIBER_FIBER_LOCAL_H_

namespace bobbin::internal {

struct fiber_control;
struct fiber_local_table;

// Destroys `f`'s fiber_local values, last made first; on `f` itself.
void destroy_fiber_locals(fiber_control* f) noexcept;
// Frees the table of a fiber that never ended (abandoned at shutdown),
// leaving its values, as the objects on its stack are left.
void free_abandoned_fiber_locals(fiber_control* f) noexcept;

}  // namespace bobbin::internal

#endif  // BOBBIN_RUNTIME_FIBER_FIBER_LOCAL_H_
