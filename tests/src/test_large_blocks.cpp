// LargeBlockCache (src/large_blocks.h): freed blocks of at least its minimum come back for a request of
// their size; smaller ones pass through; resident memory (live + cached) never passes the live blocks'
// own peak; the limit holds; raw_allocate works; threads may share it; installed, LibTorch's tensors
// reuse blocks and keep their values; BLOCKSHARP_LARGE_BLOCKS is 1, 0 or an error naming it.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <c10/core/CPUAllocator.h>

#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "errors.h"
#include "large_blocks.h"

using bs::LargeBlockCache;

namespace {
constexpr size_t MB = size_t{1} << 20;
}

TEST(LargeBlockCache, ReusesAFreedBlockForItsSizeOnly) {
  LargeBlockCache cache(c10::GetDefaultCPUAllocator(), MB, 64 * MB);
  void* first = nullptr;
  {
    auto a = cache.allocate(4 * MB);
    first = a.get();
    EXPECT_EQ(cache.stats().live_bytes, 4 * MB);
  }
  EXPECT_EQ(cache.stats().cached_bytes, 4 * MB);
  EXPECT_EQ(cache.stats().live_bytes, 0u);
  {
    auto b = cache.allocate(4 * MB);
    EXPECT_EQ(b.get(), first);  // the same block back
    EXPECT_EQ(cache.stats().hits, 1);
    EXPECT_EQ(cache.stats().cached_bytes, 0u);
  }
  {
    auto c = cache.allocate(5 * MB);  // another size: a miss, which frees the cached 4 MB first
    EXPECT_EQ(cache.stats().misses, 2);
    EXPECT_EQ(cache.stats().cached_bytes, 0u);
  }
  {
    auto small = cache.allocate(1000);  // below the minimum: the base allocator's, not counted
    EXPECT_NE(small.get(), nullptr);
    EXPECT_EQ(cache.stats().live_bytes, 0u);
  }
  EXPECT_EQ(cache.stats().cached_bytes, 5 * MB);
}

// live + cached after every step stays at or under the highest live total so far (what the process
// would have resident without the cache), over a sequence of mixed sizes.
TEST(LargeBlockCache, NeverHoldsMoreThanTheLiveBlocksPeak) {
  LargeBlockCache cache(c10::GetDefaultCPUAllocator(), MB, 1024 * MB);
  std::vector<c10::DataPtr> live;
  size_t peak = 0;
  const size_t sizes[] = {8, 6, 8, 3, 3, 12, 2, 8, 6, 6, 1, 12};
  for (int round = 0; round < 3; ++round)
    for (size_t i = 0; i < std::size(sizes); ++i) {
      live.push_back(cache.allocate(sizes[i] * MB));
      const auto s = cache.stats();
      peak = std::max(peak, s.live_bytes);
      EXPECT_LE(s.live_bytes + s.cached_bytes, peak) << "round " << round << " step " << i;
      if (i % 3 == 2) live.erase(live.begin(), live.begin() + 2);  // free some, keep some
    }
  live.clear();
  EXPECT_EQ(cache.stats().live_bytes, 0u);
  EXPECT_LE(cache.stats().cached_bytes, peak);
}

TEST(LargeBlockCache, KeepsAtMostItsLimit) {
  LargeBlockCache cache(c10::GetDefaultCPUAllocator(), MB, 10 * MB);
  { auto a = cache.allocate(8 * MB), b = cache.allocate(8 * MB), c = cache.allocate(16 * MB); }
  EXPECT_LE(cache.stats().cached_bytes, 10 * MB);
  EXPECT_EQ(cache.stats().cached_bytes, 8 * MB);  // one 8 MB block; the 16 MB one is over the limit
}

TEST(LargeBlockCache, RawAllocateAndDeallocate) {
  LargeBlockCache cache(c10::GetDefaultCPUAllocator(), MB, 64 * MB);
  void* big = cache.raw_allocate(2 * MB);
  void* small = cache.raw_allocate(100);
  static_cast<char*>(big)[2 * MB - 1] = 1;
  static_cast<char*>(small)[99] = 1;
  cache.raw_deallocate(small);
  cache.raw_deallocate(big);
  EXPECT_EQ(cache.stats().live_bytes, 0u);
  EXPECT_EQ(cache.stats().cached_bytes, 2 * MB);
}

TEST(LargeBlockCache, ThreadsShareIt) {
  LargeBlockCache cache(c10::GetDefaultCPUAllocator(), MB, 64 * MB);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&cache, t] {
      for (int i = 0; i < 200; ++i) {
        auto p = cache.allocate((1 + (i + t) % 3) * MB);
        static_cast<char*>(p.get())[0] = static_cast<char>(i);
      }
    });
  for (auto& t : threads) t.join();
  const auto s = cache.stats();
  EXPECT_EQ(s.live_bytes, 0u);
  EXPECT_EQ(s.hits + s.misses, 800);
  EXPECT_LE(s.cached_bytes, 64 * MB);
}

// Installed as LibTorch's CPU allocator (as the CLI does): a 40 MB tensor freed and asked for again
// gets its block back, and what LibTorch fills it with is what a fresh block would hold.
TEST(LargeBlockCache, InstalledLibTorchTensorsReuseBlocksAndKeepTheirValues) {
  bs::install_large_block_cache();
  const bs::LargeBlockCache* installed = bs::installed_large_block_cache();
  bs::install_large_block_cache();  // idempotent
  ASSERT_NE(installed, nullptr);
  EXPECT_EQ(bs::installed_large_block_cache(), installed);
  EXPECT_EQ(installed->min_bytes(), 32 * MB);
  EXPECT_EQ(bs::describe_large_block_cache(),
            "on (blocks of 32 MB and more, up to " + std::to_string(installed->limit_bytes() / MB) + " MB kept)");
  const int64_t n = 10 * 1024 * 1024;  // 40 MB of floats
  void* first = nullptr;
  {
    auto a = torch::ones({n});
    first = a.data_ptr();
  }
  auto b = torch::zeros({n});
  EXPECT_EQ(b.data_ptr(), first);
  EXPECT_EQ(b.abs().max().item<float>(), 0.0f);
  auto c = torch::arange(n, torch::kFloat32);
  EXPECT_EQ(c[n - 1].item<float>(), static_cast<float>(n - 1));
}

// The switch: unset or 1 wanted, 0 not, anything else one UserError naming the variable and the value.
TEST(LargeBlockCache, SwitchReadsZeroOrOneAndNamesABadValue) {
  const char* before = std::getenv("BLOCKSHARP_LARGE_BLOCKS");
  const std::string kept = before ? before : "";
  unsetenv("BLOCKSHARP_LARGE_BLOCKS");
  EXPECT_TRUE(bs::large_block_cache_wanted());
  setenv("BLOCKSHARP_LARGE_BLOCKS", "1", 1);
  EXPECT_TRUE(bs::large_block_cache_wanted());
  setenv("BLOCKSHARP_LARGE_BLOCKS", "0", 1);
  EXPECT_FALSE(bs::large_block_cache_wanted());
  setenv("BLOCKSHARP_LARGE_BLOCKS", "on", 1);
  try {
    bs::large_block_cache_wanted();
    ADD_FAILURE() << "no error for 'on'";
  } catch (const bs::UserError& e) {
    EXPECT_EQ(std::string(e.what()), "BLOCKSHARP_LARGE_BLOCKS: expected 0 or 1, got 'on'");
  }
  if (before)
    setenv("BLOCKSHARP_LARGE_BLOCKS", kept.c_str(), 1);
  else
    unsetenv("BLOCKSHARP_LARGE_BLOCKS");
}
