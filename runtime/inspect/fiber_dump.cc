#include "runtime/inspect/fiber_dump.h"

#include <execinfo.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <mutex>
#include <optional>

#include "absl/container/flat_hash_map.h"
#include "absl/debugging/symbolize.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "runtime/fiber/cancel.h"
#include "runtime/inspect/stack_walk.h"
#include "runtime/inspect/world_pause.h"
#include "runtime/pinning/stack_capture.h"
#include "runtime/sched/carrier.h"
#include "runtime/sched/scheduler.h"
#include "runtime/util/mutex_lock.h"

namespace bobbin::internal {

namespace {

constexpr int kMaxFrames = 64;
constexpr long kIoUringEnter = 426;  // a carrier waiting for completions is not a blocked one

int64_t monotonic_ms() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

// The base of every fiber stack: frames beyond it are Boost.Context's.
bool is_fiber_base(const std::string& function) {
  return function.find("bobbin::internal::fiber_entry") != std::string::npos;
}

void trim_at_fiber_base(std::vector<uintptr_t>& frames) {
  for (std::size_t i = 0; i < frames.size(); i++) {
    if (is_fiber_base(symbolize_return_address(frames[i]))) {
      frames.resize(i + 1);
      return;
    }
  }
}

std::string json_string(std::string_view s) {
  std::string out = "\"";
  for (char ch : s) {
    switch (ch) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(ch) < 0x20) {
          absl::StrAppendFormat(&out, "\\u%04x", static_cast<unsigned char>(ch));
        } else {
          out += ch;
        }
    }
  }
  out += '"';
  return out;
}

std::string spawn_site(const std::source_location& where) {
  if (where.line() == 0) return "";
  return absl::StrCat(where.file_name(), ":", where.line(), " in ", where.function_name());
}

std::string header(const fiber_snapshot& s, std::string_view what) {
  return absl::StrFormat("%s: pid %d, %d carriers (%s), %d fibers, %s\n", what, ::getpid(), s.carriers, s.backend,
                         s.fibers.size(),
                         absl::FormatTime("%Y-%m-%d %H:%M:%E3S UTC", absl::FromUnixMillis(s.taken_at_unix_ms),
                                          absl::UTCTimeZone()));
}

std::string format_duration_ms(int64_t ms) {
  if (ms < 1000) return absl::StrCat(ms, " ms");
  if (ms < 120000) return absl::StrFormat("%.1f s", ms / 1000.0);
  return absl::StrFormat("%.1f min", ms / 60000.0);
}

void append_stack(std::string& out, const fiber_record& r, const std::string& indent) {
  if (r.frames.empty()) {
    absl::StrAppend(&out, indent, "(no stack: ", r.no_stack_why.empty() ? "unknown" : r.no_stack_why, ")\n");
  } else if (r.scanned) {
    absl::StrAppend(&out, indent, "(scanned from its carrier's stack: may list stale frames)\n");
  }
  for (std::size_t i = 0; i < r.frames.size(); i++) {
    absl::StrAppendFormat(&out, "%s  #%-2d 0x%016x %s\n", indent, i, r.frames[i], symbolize_return_address(r.frames[i]));
  }
}

}  // namespace

std::string symbolize_return_address(uintptr_t pc) {
  static auto* cache = new absl::flat_hash_map<uintptr_t, std::string>;  // guarded by symbolizer_mutex()
  initialize_symbolizer_once();
  mutex_lock lock(&symbolizer_mutex());
  auto it = cache->find(pc);
  if (it != cache->end()) return it->second;
  char name[1024];
  // A return address points after the call: look up the call itself.
  std::string fn = absl::Symbolize(reinterpret_cast<void*>(pc - 1), name, sizeof name) ? name : "??";
  cache->emplace(pc, fn);
  return fn;
}

fiber_snapshot snapshot_fibers(runtime_impl& rt, const absl::flat_hash_set<uint64_t>* only) {
  fiber_snapshot snap;
  snap.carriers = static_cast<int>(rt.options().carriers);
  snap.backend = rt.on_epoll() ? "epoll" : "io_uring";
  snap.taken_at_unix_ms = absl::ToUnixMillis(absl::Now());
  const fiber_control* self = current_fiber_or_null();
  mutex_lock one_dump(&rt.dump_mutex());
  {
    world_pause pause(rt);
    const int64_t now_ms = monotonic_ms();
    std::vector<std::pair<fiber_control*, std::size_t>> to_walk, to_capture;
    rt.for_each_fiber([&](fiber_control* f) {
      if (only != nullptr && !only->contains(f->id)) return;
      fiber_record r;
      r.id = f->id;
      r.name = f->name;
      r.state = f->state.load(std::memory_order_acquire);
      r.reason = f->reason.load(std::memory_order_relaxed);
      r.carrier = f->carrier.load(std::memory_order_relaxed);
      r.parent_id = f->parent_id;
      r.spawned_at = f->spawned_at;
      r.cancelled = cancel_requested(f);
      if (r.state == fiber_state::parked) {
        const auto at = static_cast<int64_t>(f->parked_at_ms.load(std::memory_order_relaxed) & ~kParkedWithDeadline);
        r.parked_ms = at > 0 ? std::max<int64_t>(0, now_ms - at) : -1;
      } else {
        r.reason = wait_reason::none;
      }
      if (f == self) {
        r.state = fiber_state::running;
        r.no_stack_why = "this fiber is taking the dump";
      } else if (pause.stack_is_frozen(f)) {
        to_walk.emplace_back(f, snap.fibers.size());
      } else if (r.state == fiber_state::running) {
        r.no_stack_why = "running on a carrier";
        to_capture.emplace_back(f, snap.fibers.size());
      } else {
        r.no_stack_why = "being switched out by its carrier";
      }
      snap.fibers.push_back(std::move(r));
    });
    // Nothing can mount these fibers before the pause ends, and a fiber
    // that is not mounted cannot end, so they stay valid outside the locks.
    scratch_stack scratch;
    uintptr_t frames[kMaxFrames];
    for (auto [f, i] : to_walk) {
      int n = walk_switched_out_stack(*f, scratch, frames, kMaxFrames);
      snap.fibers[i].frames.assign(frames, frames + n);
      if (n == 0) snap.fibers[i].no_stack_why = f->started.load(std::memory_order_relaxed) ? "stack not readable" : "not started yet";
    }
    // Running fibers: their carriers scan the stack they are on. Inside the
    // pause, so that no other fiber can be mounted at a freed `f`'s address
    // and be taken for it.
    auto& carriers = rt.carriers();
    std::optional<mutex_lock> one_capture;
    if (!to_capture.empty()) {
      one_capture.emplace(&capture_mutex());
      refresh_code_ranges();
    }
    for (auto [f, i] : to_capture) {
      fiber_record& r = snap.fibers[i];
      if (r.carrier < 0 || static_cast<std::size_t>(r.carrier) >= carriers.size()) continue;
      carrier* c = carriers[static_cast<std::size_t>(r.carrier)].get();
      const thread_syscall_state ks = read_thread_state(c->tid());
      if (ks.state != 'R' && ks.nr >= 0 && ks.nr != kIoUringEnter) {
        r.no_stack_why = absl::StrCat("blocked in the kernel in ", syscall_name(ks.nr), ", holding its carrier");
        continue;
      }
      stack_capture cap;
      if (c->capture_by_signal(cap, std::chrono::milliseconds(50)) != f || cap.count == 0) continue;
      r.frames.assign(cap.frames, cap.frames + cap.count);
      r.scanned = true;
    }
  }
  // The caller's own stack, if it is one of the fibers.
  for (auto& r : snap.fibers) {
    if (self != nullptr && r.id == self->id) {
      void* raw[kMaxFrames];
      int n = ::backtrace(raw, kMaxFrames);
      for (int i = 1; i < n; i++) r.frames.push_back(reinterpret_cast<uintptr_t>(raw[i]));
      if (!r.frames.empty()) r.no_stack_why.clear();
    }
  }
  for (auto& r : snap.fibers) {
    trim_at_fiber_base(r.frames);
    // A scan that does not reach the fiber's entry caught the carrier where
    // the stack is not a chain of calls (inside a context switch): no stack
    // rather than a wrong one.
    if (r.scanned && (r.frames.empty() || !is_fiber_base(symbolize_return_address(r.frames.back())))) {
      r.frames.clear();
      r.scanned = false;
      r.no_stack_why = "running on a carrier, caught inside a switch";
    }
  }
  std::sort(snap.fibers.begin(), snap.fibers.end(), [](const fiber_record& a, const fiber_record& b) { return a.id < b.id; });
  return snap;
}

std::string render_text(const fiber_snapshot& s) {
  // Fibers with the same state, wait reason, spawn site and stack print
  // once, with a count and their ids.
  struct group {
    std::vector<const fiber_record*> members;
    int64_t min_ms = INT64_MAX, max_ms = -1;
  };
  absl::flat_hash_map<std::string, group> groups;
  std::vector<std::string> order;
  for (const auto& r : s.fibers) {
    std::string key = absl::StrCat(state_name(r.state), "|", std::string(to_string(r.reason)), "|", spawn_site(r.spawned_at), "|",
                                   r.no_stack_why, "|", r.scanned);
    // By function, not by address: the same function switching away at
    // two call sites is one place to a reader.
    for (uintptr_t pc : r.frames) absl::StrAppend(&key, "|", symbolize_return_address(pc));
    auto [it, fresh] = groups.try_emplace(key);
    if (fresh) order.push_back(key);
    it->second.members.push_back(&r);
    if (r.parked_ms >= 0) {
      it->second.min_ms = std::min(it->second.min_ms, r.parked_ms);
      it->second.max_ms = std::max(it->second.max_ms, r.parked_ms);
    }
  }
  std::stable_sort(order.begin(), order.end(), [&](const std::string& a, const std::string& b) {
    return groups[a].members.size() > groups[b].members.size();
  });
  std::string out = header(s, "bobbin fiber dump");
  for (const auto& key : order) {
    const group& g = groups[key];
    const fiber_record& first = *g.members.front();
    absl::StrAppend(&out, "\n", g.members.size(), g.members.size() == 1 ? " fiber " : " fibers ", state_name(first.state));
    if (first.state == fiber_state::parked) {
      absl::StrAppend(&out, " on ", std::string(to_string(first.reason)));
      if (g.max_ms >= 0) {
        absl::StrAppend(&out, ", for ", format_duration_ms(g.min_ms));
        if (g.max_ms != g.min_ms) absl::StrAppend(&out, " to ", format_duration_ms(g.max_ms));
      }
    }
    if (first.state == fiber_state::running && first.carrier >= 0) absl::StrAppend(&out, " on carrier ", first.carrier);
    absl::StrAppend(&out, "\n  ids:");
    constexpr std::size_t kShownIds = 8;
    for (std::size_t i = 0; i < g.members.size() && i < kShownIds; i++) {
      const fiber_record& r = *g.members[i];
      absl::StrAppend(&out, " ", r.id);
      if (!r.name.empty()) absl::StrAppend(&out, " \"", r.name, "\"");
      if (r.cancelled) absl::StrAppend(&out, " (cancelled)");
    }
    if (g.members.size() > kShownIds) absl::StrAppend(&out, " ... (", g.members.size() - kShownIds, " more)");
    absl::StrAppend(&out, "\n");
    if (std::string site = spawn_site(first.spawned_at); !site.empty()) {
      absl::StrAppend(&out, "  spawned at ", site, "\n");
    }
    append_stack(out, first, "  ");
  }
  return out;
}

std::string render_one(const fiber_record& r, const std::string& indent) {
  std::string out = absl::StrCat(indent, "fiber ", r.id);
  if (!r.name.empty()) absl::StrAppend(&out, " \"", r.name, "\"");
  absl::StrAppend(&out, " ", state_name(r.state));
  if (r.state == fiber_state::parked) absl::StrAppend(&out, " on ", std::string(to_string(r.reason)));
  if (r.parked_ms >= 0) absl::StrAppend(&out, ", for ", format_duration_ms(r.parked_ms));
  if (r.cancelled) absl::StrAppend(&out, ", cancelled");
  absl::StrAppend(&out, "\n");
  if (std::string site = spawn_site(r.spawned_at); !site.empty()) {
    absl::StrAppend(&out, indent, "  spawned at ", site, "\n");
  }
  append_stack(out, r, absl::StrCat(indent, "  "));
  return out;
}

std::string render_json(const fiber_snapshot& s) {
  // One line: a file of several dumps is JSON Lines.
  std::string out = absl::StrFormat(R"({"bobbin_fiber_dump":1,"pid":%d,"time_unix_ms":%d,"carriers":%d,"backend":"%s","fibers":[)",
                                    ::getpid(), s.taken_at_unix_ms, s.carriers, s.backend);
  bool first = true;
  for (const auto& r : s.fibers) {
    if (!first) out += ',';
    first = false;
    absl::StrAppend(&out, R"({"id":)", r.id, R"(,"name":)", json_string(r.name), R"(,"state":")", state_name(r.state),
                    R"(","wait_reason":")", r.state == fiber_state::parked ? std::string(to_string(r.reason)) : "", R"(","carrier":)",
                    r.carrier, R"(,"parent":)", r.parent_id);
    if (r.parked_ms >= 0) absl::StrAppend(&out, R"(,"parked_ms":)", r.parked_ms);
    if (r.cancelled) out += R"(,"cancelled":true)";
    if (r.spawned_at.line() != 0) {
      absl::StrAppend(&out, R"(,"spawned_at":{"file":)", json_string(r.spawned_at.file_name()), R"(,"line":)",
                      r.spawned_at.line(), R"(,"function":)", json_string(r.spawned_at.function_name()), "}");
    }
    if (r.frames.empty() && !r.no_stack_why.empty()) {
      absl::StrAppend(&out, R"(,"no_stack":)", json_string(r.no_stack_why));
    }
    if (r.scanned) out += R"(,"stack_scanned":true)";
    out += R"(,"stack":[)";
    for (std::size_t i = 0; i < r.frames.size(); i++) {
      if (i) out += ',';
      absl::StrAppendFormat(&out, R"({"pc":"0x%x","function":%s})", r.frames[i],
                            json_string(symbolize_return_address(r.frames[i])));
    }
    out += "]}";
  }
  out += "]}\n";
  return out;
}

std::string dump_runtime(runtime_impl& rt, dump_format format) {
  fiber_snapshot s = snapshot_fibers(rt);
  return format == dump_format::json ? render_json(s) : render_text(s);
}

}  // namespace bobbin::internal
