// PinnedStaging's arena and read-back logic with a fake page-locked allocator (malloc): no GPU needed.
#include "engine/backend/cuda/pinned_staging.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <set>

namespace bm::engine::cuda {
namespace {

std::set<void*>& live() {
  static std::set<void*> pointers;
  return pointers;
}
bool refuse_allocations = false;

cudaError_t fake_allocate(void** pointer, size_t bytes) {
  if (refuse_allocations) return cudaErrorMemoryAllocation;
  *pointer = std::malloc(bytes);
  live().insert(*pointer);
  return cudaSuccess;
}
cudaError_t fake_free(void* pointer) {
  EXPECT_EQ(live().erase(pointer), 1u) << "freed a pointer that was not allocated";
  std::free(pointer);
  return cudaSuccess;
}

class PinnedStagingTest : public ::testing::Test {
 protected:
  void SetUp() override { refuse_allocations = false; }
  void TearDown() override { EXPECT_TRUE(live().empty()) << "the staging leaked page-locked memory"; }
};

// Until the first settle there is no arena: uploads copy from pageable memory. The settle after that round grows
// the arena to what it asked for, and the next round is staged.
TEST_F(PinnedStagingTest, TheFirstRoundGoesPageableAndSizesTheArena) {
  PinnedStaging staging(fake_allocate, fake_free);
  EXPECT_EQ(staging.upload_region(1000), nullptr);
  EXPECT_EQ(staging.upload_region(3000), nullptr);
  ASSERT_EQ(staging.settle(), cudaSuccess);
  EXPECT_GE(staging.arena_bytes(), 4096);
  EXPECT_NE(staging.upload_region(1000), nullptr);
  EXPECT_NE(staging.upload_region(3000), nullptr);
}

// Regions handed out between two settles never overlap (a queued copy may still read an earlier one), start
// 256-byte aligned, and the arena starts over only at a settle.
TEST_F(PinnedStagingTest, RegionsOfOneRoundAreDisjointUntilSettle) {
  PinnedStaging staging(fake_allocate, fake_free);
  staging.upload_region(PinnedStaging::kMinArenaBytes);
  ASSERT_EQ(staging.settle(), cudaSuccess);
  char* first = static_cast<char*>(staging.upload_region(100));
  char* second = static_cast<char*>(staging.upload_region(300));
  char* third = static_cast<char*>(staging.upload_region(1));
  ASSERT_TRUE(first != nullptr && second != nullptr && third != nullptr);
  EXPECT_GE(second, first + 100);
  EXPECT_GE(third, second + 300);
  for (char* p : {first, second, third}) EXPECT_EQ((p - first) % 256, 0);
  ASSERT_EQ(staging.settle(), cudaSuccess);
  EXPECT_EQ(staging.upload_region(100), first);  // every copy queued before the settle has run
}

// A round that outgrows the arena gets nullptr for what does not fit (those uploads go pageable) and never a
// region that overlaps the ones already handed out; the next settle grows the arena to fit the whole round.
TEST_F(PinnedStagingTest, ARoundThatOverflowsFallsBackThenTheArenaGrows) {
  PinnedStaging staging(fake_allocate, fake_free);
  staging.upload_region(PinnedStaging::kMinArenaBytes);
  ASSERT_EQ(staging.settle(), cudaSuccess);
  const int64_t size = staging.arena_bytes();
  EXPECT_NE(staging.upload_region(size - 512), nullptr);
  EXPECT_EQ(staging.upload_region(1024), nullptr);
  ASSERT_EQ(staging.settle(), cudaSuccess);
  EXPECT_GT(staging.arena_bytes(), size);
  EXPECT_NE(staging.upload_region(size - 512), nullptr);
  EXPECT_NE(staging.upload_region(1024), nullptr);
}

// Weights and other large uploads are never staged, and do not grow the arena.
TEST_F(PinnedStagingTest, LargeUploadsStayPageable) {
  PinnedStaging staging(fake_allocate, fake_free);
  EXPECT_EQ(staging.upload_region(PinnedStaging::kMaxStagedUpload + 1), nullptr);
  ASSERT_EQ(staging.settle(), cudaSuccess);
  EXPECT_EQ(staging.arena_bytes(), 0);
}

// Page-locked memory that runs out is reported (CudaBackend clears it and copies from pageable memory); staging
// resumes once an allocation succeeds.
TEST_F(PinnedStagingTest, AFailedGrowthLeavesNoArenaUntilALaterSettle) {
  PinnedStaging staging(fake_allocate, fake_free);
  staging.upload_region(1000);
  refuse_allocations = true;
  EXPECT_EQ(staging.settle(), cudaErrorMemoryAllocation);
  EXPECT_EQ(staging.arena_bytes(), 0);
  EXPECT_EQ(staging.upload_region(1000), nullptr);
  refuse_allocations = false;
  ASSERT_EQ(staging.settle(), cudaSuccess);
  EXPECT_NE(staging.upload_region(1000), nullptr);
}

// The read-back buffer grows to the largest read so far and is reused; reads past its limit go pageable.
TEST_F(PinnedStagingTest, TheReadbackBufferGrowsAndIsReused) {
  PinnedStaging staging(fake_allocate, fake_free);
  void* small = nullptr;
  ASSERT_EQ(staging.readback(100, &small), cudaSuccess);
  ASSERT_NE(small, nullptr);
  void* again = nullptr;
  ASSERT_EQ(staging.readback(50, &again), cudaSuccess);
  EXPECT_EQ(again, small);
  void* large = nullptr;
  ASSERT_EQ(staging.readback(PinnedStaging::kMinArenaBytes * 4, &large), cudaSuccess);
  ASSERT_NE(large, nullptr);
  EXPECT_GE(staging.readback_bytes(), PinnedStaging::kMinArenaBytes * 4);
  void* too_large = &again;
  ASSERT_EQ(staging.readback(PinnedStaging::kMaxReadbackBytes + 1, &too_large), cudaSuccess);
  EXPECT_EQ(too_large, nullptr);
  refuse_allocations = true;
  void* refused = &again;
  EXPECT_EQ(staging.readback(PinnedStaging::kMaxReadbackBytes, &refused), cudaErrorMemoryAllocation);
  EXPECT_EQ(refused, nullptr);
}

}  // namespace
}  // namespace bm::engine::cuda
