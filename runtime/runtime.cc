#include "bobbin/runtime.h"

#include "runtime/inspect/fiber_dump.h"
#include "runtime/sched/scheduler.h"

namespace bobbin {

absl::StatusOr<std::unique_ptr<runtime>> runtime::start(const runtime_options& options) {
  auto impl = std::make_unique<internal::runtime_impl>(options);
  absl::Status st = impl->start();
  if (!st.ok()) return st;
  return std::unique_ptr<runtime>(new runtime(impl.release()));
}

runtime::~runtime() {
  shutdown();
  delete impl_;
}

void runtime::shutdown() { impl_->shutdown(); }
unsigned runtime::carriers() const noexcept { return impl_->options().carriers; }
runtime_stats runtime::stats() const noexcept { return impl_->stats(); }
std::string runtime::dump(dump_format format) const { return internal::dump_runtime(*impl_, format); }
void runtime::set_pin_listener(pin_listener listener) { impl_->set_pin_listener(std::move(listener)); }

}  // namespace bobbin
