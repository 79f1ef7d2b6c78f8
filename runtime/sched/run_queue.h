// Not part of the bobbin API.
//
// A carrier's local run queue: a fixed ring of 256 runnable fibers. Only the
// owning carrier pushes (at the tail) and pops (at the head); other carriers
// steal half of it at once from the head. The head moves by compare-and-swap
// (owner pops and thieves race there); the tail is written by the owner only.
// When the ring is full the owner moves its oldest half to the carrier's
// backlog (take_half; carrier.cc, push_local), so a push never blocks and
// the ring never allocates. This is the shape of Go's
// runq; the memory-ordering argument is the same: a thief reads slots after
// an acquire load of the tail and validates them with its CAS on the head.
#ifndef BOBBIN_RUNTIME_SCHED_RUN_QUEUE_H_
#define BOBBIN_RUNTIME_SCHED_RUN_QUEUE_H_

#include <atomic>
#include <cstdint>

namespace bobbin::internal {

struct fiber_control;

class run_queue {
 public:
  static constexpr uint32_t kCapacity = 256;

  // Owner only. False when full: the caller must spill with take_half().
  // `now_us` (the owner's clock, see oldest_wait_us) stamps the entry.
  bool push(fiber_control* f, uint32_t now_us = 0) noexcept {
    uint32_t h = head_.load(std::memory_order_acquire);
    uint32_t t = tail_.load(std::memory_order_relaxed);
    if (t - h >= kCapacity) return false;
    slots_[t % kCapacity].store(f, std::memory_order_relaxed);
    stamps_[t % kCapacity].store(now_us, std::memory_order_relaxed);
    tail_.store(t + 1, std::memory_order_release);
    return true;
  }

  // Owner only.
  fiber_control* pop() noexcept {
    for (;;) {
      uint32_t h = head_.load(std::memory_order_acquire);
      uint32_t t = tail_.load(std::memory_order_relaxed);
      if (t == h) return nullptr;
      fiber_control* f = slots_[h % kCapacity].load(std::memory_order_relaxed);
      if (head_.compare_exchange_weak(h, h + 1, std::memory_order_acq_rel)) return f;
    }
  }

  // Any thread: moves up to half of the queue (at least one if any) into
  // `out`, returning the count. Used by thieves and by the owner's spill.
  uint32_t take_half(fiber_control** out) noexcept {
    for (;;) {
      uint32_t h = head_.load(std::memory_order_acquire);
      uint32_t t = tail_.load(std::memory_order_acquire);
      uint32_t n = t - h;
      n = n - n / 2;
      if (n == 0) return 0;
      if (n > kCapacity / 2) continue;  // read a torn head/tail pair; retry
      for (uint32_t i = 0; i < n; i++) out[i] = slots_[(h + i) % kCapacity].load(std::memory_order_relaxed);
      if (head_.compare_exchange_weak(h, h + n, std::memory_order_acq_rel)) return n;
    }
  }

  uint32_t size() const noexcept {
    uint32_t h = head_.load(std::memory_order_acquire);
    uint32_t t = tail_.load(std::memory_order_acquire);
    return t - h;
  }
  bool empty() const noexcept { return size() == 0; }

  // How long the fiber at the head has waited by `now_us` (0 if the queue
  // is empty). Any thread; racing a pop or steal it may read a neighbour's
  // stamp, which is as good. Reads the queue's own stamp, never the fiber,
  // which a thief may have taken and freed meanwhile.
  uint32_t oldest_wait_us(uint32_t now_us) const noexcept {
    uint32_t h = head_.load(std::memory_order_acquire);
    uint32_t t = tail_.load(std::memory_order_acquire);
    if (t == h) return 0;
    const uint32_t age = now_us - stamps_[h % kCapacity].load(std::memory_order_relaxed);
    return age > (1u << 31) ? 0 : age;  // stamped after now_us (another carrier's clock ran ahead)
  }

 private:
  alignas(64) std::atomic<uint32_t> head_{0};
  alignas(64) std::atomic<uint32_t> tail_{0};
  std::atomic<fiber_control*> slots_[kCapacity] = {};
  std::atomic<uint32_t> stamps_[kCapacity] = {};  // when each was pushed
};

}  // namespace bobbin::internal

#endif  // BOBBIN_RUNTIME_SCHED_RUN_QUEUE_H_
