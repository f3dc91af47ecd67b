// LibTorch's CPU tensors of tens of megabytes without a page fault each time: glibc serves a block above
// its mmap threshold (at most 32 MB) from a fresh mapping and unmaps it when freed, so every such
// temporary (a GPT-2 vocabulary's logits, its embedding's gradient, a model's flat vectors in a
// Hessian-vector product) has the kernel zero its pages anew. LargeBlockCache keeps freed blocks of at
// least `min_bytes` and gives one back to the next request of the same size. It changes where memory
// lies, never a value. The CLI installs it (install_large_block_cache()) unless BLOCKSHARP_LARGE_BLOCKS=0;
// the Python module leaves PyTorch's allocator alone.
#pragma once
#include <c10/core/Allocator.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>

namespace bs {

class LargeBlockCache final : public c10::Allocator {
 public:
  // Blocks below min_bytes go to `base` untouched; at most limit_bytes of freed blocks are kept. A cache
  // must outlive every block it gave out (the installed one lives as long as the process).
  LargeBlockCache(c10::Allocator* base, size_t min_bytes, size_t limit_bytes);
  ~LargeBlockCache() override;
  c10::DataPtr allocate(size_t n) const override;
  c10::DeleterFnPtr raw_deleter() const override;

  struct Stats {
    int64_t hits = 0, misses = 0;
    size_t cached_bytes = 0, live_bytes = 0;
  };
  Stats stats() const;
  size_t min_bytes() const { return m_min; }
  size_t limit_bytes() const { return m_limit; }

 private:
  friend void release_block(void* p);
  void give_back(void* p, size_t n) const;
  size_t drop_largest() const;     // frees the largest cached block (m_mutex held); its size
  void evict_for(size_t n) const;  // a miss of n bytes: frees at least n cached bytes, largest blocks first

  c10::Allocator* m_base;
  const size_t m_min, m_limit;
  mutable std::mutex m_mutex;
  mutable std::multimap<size_t, void*> m_free;  // size -> cached block
  mutable Stats m_stats;
};

// The deleter of every large block (any LargeBlockCache's): back to its cache, or, for a pointer no
// cache gave out (raw_deallocate of a small block), to the base allocator's raw deleter.
void release_block(void* p);

// Installs one LargeBlockCache over LibTorch's CPU allocator for the rest of the process (blocks of
// 32 MB and more, at most a quarter of the machine's memory kept). Idempotent.
void install_large_block_cache();
// The installed cache, or nullptr where none is.
const LargeBlockCache* installed_large_block_cache();

// BLOCKSHARP_LARGE_BLOCKS: unset or 1 true (the CLI installs the cache), 0 false, anything else a
// UserError naming it.
bool large_block_cache_wanted();
// What the benchmarks report: "on (blocks of 32 MB and more, up to N MB kept)", "off
// (BLOCKSHARP_LARGE_BLOCKS=0)" or "off (not installed)" (a library user's process).
std::string describe_large_block_cache();

}  // namespace bs
