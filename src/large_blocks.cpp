// large_blocks.h's cache. Every block it gave out is in a process-wide table (pointer -> its cache and
// size), so that one deleter serves DataPtrs and raw_deallocate alike; a block is reused only for a
// request of exactly its size (a training or product loop asks for the same sizes every step). A miss
// first frees cached blocks, largest first, at least as many bytes as it asks for: resident memory
// (live + cached) then never passes the highest the live blocks alone have reached, which is what the
// process would have resident without the cache.
#include "large_blocks.h"

#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/alloc_cpu.h>
#include <unistd.h>

#include <algorithm>
#include <iterator>
#include <unordered_map>

#include "errors.h"

namespace bs {

namespace {

struct Owner {
  const LargeBlockCache* cache;
  size_t size;
};

// The table and its mutex are never destroyed: blocks may be freed after main returns.
std::mutex& table_mutex() {
  static auto* m = new std::mutex();
  return *m;
}
std::unordered_map<void*, Owner>& table() {
  static auto* t = new std::unordered_map<void*, Owner>();
  return *t;
}
c10::Allocator*& raw_base() {  // the base allocator whose raw deleter frees what no cache gave out
  static c10::Allocator* b = nullptr;
  return b;
}
const LargeBlockCache*& installed() {
  static const LargeBlockCache* c = nullptr;
  return c;
}

}  // namespace

LargeBlockCache::LargeBlockCache(c10::Allocator* base, size_t min_bytes, size_t limit_bytes)
    : m_base(base), m_min(std::max<size_t>(min_bytes, 1)), m_limit(limit_bytes) {
  if (!raw_base()) raw_base() = base;
}

LargeBlockCache::~LargeBlockCache() {
  std::lock_guard<std::mutex> g(m_mutex);
  for (const auto& [size, p] : m_free) c10::free_cpu(p);
  m_free.clear();
}

c10::DataPtr LargeBlockCache::allocate(size_t n) const {
  if (n < m_min) return m_base->allocate(n);
  void* p = nullptr;
  {
    std::lock_guard<std::mutex> g(m_mutex);
    if (const auto it = m_free.find(n); it != m_free.end()) {
      p = it->second;
      m_free.erase(it);
      m_stats.cached_bytes -= n;
      ++m_stats.hits;
    } else {
      ++m_stats.misses;
      evict_for(n);
    }
    m_stats.live_bytes += n;
  }
  if (!p) {
    try {
      p = c10::alloc_cpu(n);
    } catch (...) {
      std::lock_guard<std::mutex> g(m_mutex);
      m_stats.live_bytes -= n;
      throw;
    }
  }
  {
    std::lock_guard<std::mutex> g(table_mutex());
    table()[p] = {this, n};
  }
  return {p, p, &release_block, c10::Device(c10::DeviceType::CPU)};
}

c10::DeleterFnPtr LargeBlockCache::raw_deleter() const { return &release_block; }

LargeBlockCache::Stats LargeBlockCache::stats() const {
  std::lock_guard<std::mutex> g(m_mutex);
  return m_stats;
}

size_t LargeBlockCache::drop_largest() const {
  const auto last = std::prev(m_free.end());
  const size_t n = last->first;
  m_stats.cached_bytes -= n;
  c10::free_cpu(last->second);
  m_free.erase(last);
  return n;
}

void LargeBlockCache::evict_for(size_t n) const {
  for (size_t freed = 0; !m_free.empty() && freed < n;) freed += drop_largest();
}

void LargeBlockCache::give_back(void* p, size_t n) const {
  std::lock_guard<std::mutex> g(m_mutex);
  m_stats.live_bytes -= n;
  if (n > m_limit) {
    c10::free_cpu(p);
    return;
  }
  while (!m_free.empty() && m_stats.cached_bytes + n > m_limit) drop_largest();  // room for it
  m_free.emplace(n, p);
  m_stats.cached_bytes += n;
}

void release_block(void* p) {
  if (!p) return;
  Owner owner{nullptr, 0};
  {
    std::lock_guard<std::mutex> g(table_mutex());
    if (const auto it = table().find(p); it != table().end()) {
      owner = it->second;
      table().erase(it);
    }
  }
  if (owner.cache) return owner.cache->give_back(p, owner.size);
  if (raw_base() && raw_base()->raw_deleter()) return raw_base()->raw_deleter()(p);
  c10::free_cpu(p);
}

void install_large_block_cache() {
  static LargeBlockCache* cache = [] {
    const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    const size_t memory = pages > 0 && page > 0 ? static_cast<size_t>(pages) * static_cast<size_t>(page) : 0;
    const size_t limit = memory > 0 ? memory / 4 : size_t{1} << 30;
    auto* c = new LargeBlockCache(c10::GetCPUAllocator(), size_t{32} << 20, limit);  // lives as long as the process
    c10::SetCPUAllocator(c, /*priority=*/1);
    installed() = c;
    return c;
  }();
  (void)cache;
}

const LargeBlockCache* installed_large_block_cache() { return installed(); }

bool large_block_cache_wanted() { return env_switch("BLOCKSHARP_LARGE_BLOCKS"); }

std::string describe_large_block_cache() {
  if (const LargeBlockCache* c = installed())
    return "on (blocks of " + std::to_string(c->min_bytes() >> 20) + " MB and more, up to " +
           std::to_string(c->limit_bytes() >> 20) + " MB kept)";
  if (!large_block_cache_wanted()) return "off (BLOCKSHARP_LARGE_BLOCKS=0)";
  return "off (not installed)";
}

}  // namespace bs
