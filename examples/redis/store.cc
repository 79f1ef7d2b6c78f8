#include "examples/redis/store.h"

#include <time.h>

#include <algorithm>
#include <mutex>

#include "absl/hash/hash.h"

namespace redis {
namespace {
// Debian's Abseil has its own string_view type, so heterogeneous lookups
// (no std::string built per find) need the conversion.
absl::string_view av(std::string_view s) { return absl::string_view(s.data(), s.size()); }
}  // namespace

int64_t now_ms() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

store::store() {
  shards_.reserve(kShards);
  for (size_t i = 0; i < kShards; i++) shards_.push_back(std::make_unique<shard>());
}

size_t store::shard_of(std::string_view key) const { return absl::HashOf(av(key)) % kShards; }

std::vector<size_t> store::lock_shards(const std::vector<std::string_view>& keys) {
  std::vector<size_t> ids;
  ids.reserve(keys.size());
  for (std::string_view k : keys) ids.push_back(shard_of(k));
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  for (size_t id : ids) shards_[id]->mu.lock();
  return ids;
}

void store::unlock_shards(const std::vector<size_t>& ids) {
  for (auto it = ids.rbegin(); it != ids.rend(); ++it) shards_[*it]->mu.unlock();
}

value* keyspace::find(std::string_view key) {
  store::shard& s = store_.shard_for(key);
  auto it = s.map.find(av(key));
  if (it == s.map.end()) return nullptr;
  if (it->second.expire_at_ms != 0 && it->second.expire_at_ms <= now_) {
    s.expiries.erase({it->second.expire_at_ms, it->first});
    s.map.erase(it);
    return nullptr;
  }
  return &it->second;
}

value& keyspace::find_or_create(std::string_view key, bool& created) {
  if (value* v = find(key)) {
    created = false;
    return *v;
  }
  created = true;
  return store_.shard_for(key).map[std::string(key)];
}

bool keyspace::erase(std::string_view key) {
  store::shard& s = store_.shard_for(key);
  auto it = s.map.find(av(key));
  if (it == s.map.end()) return false;
  bool live = it->second.expire_at_ms == 0 || it->second.expire_at_ms > now_;
  if (it->second.expire_at_ms != 0) s.expiries.erase({it->second.expire_at_ms, it->first});
  s.map.erase(it);
  return live;
}

void keyspace::set_expiry(std::string_view key, value& v, int64_t expire_at_ms) {
  store::shard& s = store_.shard_for(key);
  if (v.expire_at_ms == expire_at_ms) return;
  if (v.expire_at_ms != 0) s.expiries.erase({v.expire_at_ms, std::string(key)});
  v.expire_at_ms = expire_at_ms;
  if (expire_at_ms != 0) s.expiries.emplace(expire_at_ms, std::string(key));
}

size_t store::size() {
  size_t n = 0;
  for (auto& s : shards_) {
    std::lock_guard l(s->mu);
    n += s->map.size();
  }
  return n;
}

void store::clear() {
  for (auto& s : shards_) s->mu.lock();
  for (auto& s : shards_) {
    s->map.clear();
    s->expiries.clear();
  }
  for (auto it = shards_.rbegin(); it != shards_.rend(); ++it) (*it)->mu.unlock();
}

size_t store::reap_expired(size_t budget) {
  size_t reaped = 0;
  const int64_t now = now_ms();
  for (auto& s : shards_) {
    std::lock_guard l(s->mu);
    for (size_t i = 0; i < budget && !s->expiries.empty(); i++) {
      auto first = s->expiries.begin();
      if (first->first > now) break;
      s->map.erase(first->second);
      s->expiries.erase(first);
      reaped++;
    }
  }
  return reaped;
}

}  // namespace redis
