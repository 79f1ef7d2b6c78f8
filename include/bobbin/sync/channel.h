// bobbin/sync/channel.h
//
// A typed FIFO channel between fibers (and threads), on any carriers: Go's
// chan, with deadlines and an explicit outcome instead of panics.
//
//   bobbin::channel<std::string> ch(16);        // bounded: 16 buffered items
//   bobbin::channel<job> jobs(bobbin::unbounded); // never blocks senders
//   bobbin::channel<int> sync_ch(0);            // rendezvous: send waits for a receiver
//
//   ch.send("hello");                           // parks while full
//   while (auto msg = ch.receive()) use(*msg);  // nullopt once closed and drained
//   ch.close();
//
// Outcomes (channel_status): ok; closed (send after close(), or receive
// from a closed channel that is drained); timeout (the deadline passed);
// full / empty (only from try_send / try_receive). A failed send leaves its
// argument untouched, so nothing is lost: the caller still owns the value.
// Items buffered before close() are still delivered; fibers parked in send()
// when the channel closes get `closed` back with their value intact.
//
// Blocks: send parks while the buffer is full (or, with capacity 0, until a
// receiver takes the value); receive parks while it is empty. On a plain
// thread they block the thread. A parked receiver gets a value handed to it
// directly by the sender, without passing through the buffer.
// Cost: one spin-lock round trip per operation; the buffer is a std::deque
// (allocates as it grows); waking a parked peer is one run-queue push.
// Ordering: a send happens-before the receive that gets its value.
#ifndef BOBBIN_SYNC_CHANNEL_H_
#define BOBBIN_SYNC_CHANNEL_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <utility>
#include <vector>

#include "bobbin/deadline.h"
#include "bobbin/internal/park.h"
#include "bobbin/wait_reason.h"

namespace bobbin {

// canceled: the calling fiber was cancelled (fiber::request_stop in
// bobbin/fiber.h, or its scope's cancellation in bobbin/scope.h); a send that
// reports it did not send its value.
enum class channel_status : uint8_t { ok, closed, timeout, full, empty, canceled };

struct unbounded_t {
  explicit unbounded_t() = default;
};
inline constexpr unbounded_t unbounded{};

template <class T>
class channel {
 public:
  explicit channel(std::size_t capacity) : capacity_(capacity), bounded_(true) {}
  explicit channel(unbounded_t) : capacity_(0), bounded_(false) {}
  channel(const channel&) = delete;
  channel& operator=(const channel&) = delete;
  // Destroying a channel that fibers wait on is a bug (their waiters point
  // into it): it writes a report naming them and wakes them with `closed`,
  // a sender keeping its value, instead of leaving them parked for good.
  ~channel() {
    std::vector<internal::waiter*> woken;
    lock_.lock();
    if (!senders_.empty() || !receivers_.empty()) {
      internal::report_destroyed_with_waiters("bobbin::channel", this, {&senders_, &receivers_},
                                              "they get channel_status::closed", /*strand_fibers=*/false);
      closed_ = true;
      internal::claim_all(receivers_, kClosed, woken);
      internal::claim_all(senders_, kClosed, woken);
    }
    lock_.unlock();
    internal::notify_all(woken);
  }

  channel_status send(T&& value, deadline d = {}) { return do_send(&value, d, false); }
  channel_status send(const T& value, deadline d = {}) {
    T copy(value);
    return do_send(&copy, d, false);
  }
  channel_status try_send(T&& value) { return do_send(&value, deadline(), true); }

  channel_status receive(T& out, deadline d = {}) { return do_receive(&out, d, false); }
  // The next value, or nullopt once the channel is closed and drained (or
  // the calling fiber is cancelled).
  std::optional<T> receive() {
    std::optional<T> out;
    do_receive_optional(out);
    return out;
  }
  channel_status try_receive(T& out) { return do_receive(&out, deadline(), true); }

  // Wakes every parked sender (closed) and receiver (closed once drained).
  // Idempotent.
  void close() {
    std::vector<internal::waiter*> woken;
    lock_.lock();
    closed_ = true;
    internal::claim_all(receivers_, kClosed, woken);
    internal::claim_all(senders_, kClosed, woken);
    lock_.unlock();
    internal::notify_all(woken);
  }
  bool is_closed() const {
    lock_.lock();
    bool c = closed_;
    lock_.unlock();
    return c;
  }
  std::size_t size() const {
    lock_.lock();
    std::size_t n = buffer_.size();
    lock_.unlock();
    return n;
  }

 private:
  static constexpr uintptr_t kOk = 1;
  static constexpr uintptr_t kClosed = 2;

  bool has_room() const { return !bounded_ || buffer_.size() < capacity_; }

  channel_status do_send(T* value, deadline d, bool try_only) {
    lock_.lock();
    if (closed_) {
      lock_.unlock();
      return channel_status::closed;
    }
    if (internal::waiter* r = internal::pop_and_claim(receivers_)) {
      // A receiver is parked, so the buffer is empty: hand the value over.
      static_cast<std::optional<T>*>(r->payload)->emplace(std::move(*value));
      r->aux = kOk;
      lock_.unlock();
      internal::notify(r);
      return channel_status::ok;
    }
    if (has_room()) {
      buffer_.push_back(std::move(*value));
      lock_.unlock();
      return channel_status::ok;
    }
    if (try_only || d.expired()) {
      lock_.unlock();
      return try_only ? channel_status::full : channel_status::timeout;
    }
    internal::waiter w;
    w.prepare();
    w.payload = value;
    senders_.push_back(&w);
    const internal::wait_state s = internal::park(w, lock_, senders_, d, wait_reason::channel_send);
    if (s == internal::wait_state::timed_out) return channel_status::timeout;
    if (s == internal::wait_state::canceled) return channel_status::canceled;
    return w.aux == kOk ? channel_status::ok : channel_status::closed;
  }

  // Called with lock_ held and a value just taken from the buffer: a parked
  // sender (if any) can now put its value in. Releases lock_.
  void refill_and_unlock() {
    if (internal::waiter* s = internal::pop_and_claim(senders_)) {
      buffer_.push_back(std::move(*static_cast<T*>(s->payload)));
      s->aux = kOk;
      lock_.unlock();
      internal::notify(s);
      return;
    }
    lock_.unlock();
  }

  // Takes a value without parking if one is there. Returns true with lock_
  // released if it did; false with lock_ still held otherwise.
  template <class Sink>
  bool take_ready(Sink&& sink) {
    lock_.lock();
    if (!buffer_.empty()) {
      sink(std::move(buffer_.front()));
      buffer_.pop_front();
      refill_and_unlock();
      return true;
    }
    if (internal::waiter* s = internal::pop_and_claim(senders_)) {
      // Rendezvous (capacity 0): take straight from the parked sender.
      sink(std::move(*static_cast<T*>(s->payload)));
      s->aux = kOk;
      lock_.unlock();
      internal::notify(s);
      return true;
    }
    return false;
  }

  channel_status park_receiver(std::optional<T>& slot, deadline d) {
    internal::waiter w;
    w.prepare();
    w.payload = &slot;
    receivers_.push_back(&w);
    const internal::wait_state s = internal::park(w, lock_, receivers_, d, wait_reason::channel_receive);
    if (s == internal::wait_state::timed_out) return channel_status::timeout;
    if (s == internal::wait_state::canceled) return channel_status::canceled;
    return w.aux == kOk ? channel_status::ok : channel_status::closed;
  }

  channel_status do_receive(T* out, deadline d, bool try_only) {
    if (take_ready([&](T&& v) { *out = std::move(v); })) return channel_status::ok;
    if (closed_) {
      lock_.unlock();
      return channel_status::closed;
    }
    if (try_only || d.expired()) {
      lock_.unlock();
      return try_only ? channel_status::empty : channel_status::timeout;
    }
    std::optional<T> slot;
    channel_status s = park_receiver(slot, d);
    if (s == channel_status::ok) *out = std::move(*slot);
    return s;
  }

  void do_receive_optional(std::optional<T>& out) {
    if (take_ready([&](T&& v) { out.emplace(std::move(v)); })) return;
    if (closed_) {
      lock_.unlock();
      return;
    }
    if (park_receiver(out, deadline()) != channel_status::ok) out.reset();
  }

  mutable internal::spin_lock lock_;
  std::deque<T> buffer_;
  const std::size_t capacity_;
  const bool bounded_;
  bool closed_ = false;
  internal::waiter_list senders_;
  internal::waiter_list receivers_;
};

}  // namespace bobbin

#endif  // BOBBIN_SYNC_CHANNEL_H_
