// A host copy of one layer of the paged KV pool for the kernel tests: rows are encoded and decoded with
// the CPU's kv_store / kv_load (K and V each in its type), and the whole layer moves to and from the device.
#pragma once

#include <algorithm>
#include <numeric>
#include <random>
#include <vector>

#include "gpu_test_support.h"
#include "kv/kv_dtype.h"

namespace pagedlm::gpu_test {

class PagedPool {
 public:
  PagedPool(KvTypes types, int kv_heads, int head_dim, int block_size, int num_blocks)
      : types_(types), kv_heads_(kv_heads), head_dim_(head_dim), block_size_(block_size), num_blocks_(num_blocks) {
    const size_t pieces = static_cast<size_t>(num_blocks) * kv_heads;
    k_.assign(pieces * block_size * row_bytes(false), 0x5a);
    v_.assign(pieces * block_size * row_bytes(true), 0xa5);
    k_scales_.assign(pieces * kv_piece_scale_bytes(types.k, KvRole::kKey, head_dim, block_size), 0xee);
    v_scales_.assign(pieces * kv_piece_scale_bytes(types.v, KvRole::kValue, head_dim, block_size), 0xdd);
  }
  PagedPool(KvDtype dtype, int kv_heads, int head_dim, int block_size, int num_blocks)
      : PagedPool(KvTypes::both(dtype), kv_heads, head_dim, block_size, num_blocks) {}

  KvDtype dtype(bool value) const { return value ? types_.v : types_.k; }
  size_t row_bytes(bool value) const { return kv_row_bytes(dtype(value), head_dim_); }
  size_t row(int block, int head, int slot) const { return (static_cast<size_t>(block) * kv_heads_ + head) * block_size_ + slot; }

  // Row `row` of the pool through kv_store: int4 K rows of a piece must come in slot order, as the engine
  // writes them.
  void store(bool value, size_t row, const float* x) {
    const KvRole role = value ? KvRole::kValue : KvRole::kKey;
    const size_t piece = row / block_size_;
    kv_store(dtype(value), role, x, piece_rows(value, piece), piece_scales(value, piece), static_cast<int>(row % block_size_), head_dim_);
  }
  std::vector<float> load(bool value, size_t row) const {
    const KvRole role = value ? KvRole::kValue : KvRole::kKey;
    const size_t piece = row / block_size_;
    std::vector<float> out(head_dim_);
    auto& self = const_cast<PagedPool&>(*this);
    kv_load(dtype(value), role, self.piece_rows(value, piece), self.piece_scales(value, piece), static_cast<int>(row % block_size_), 1, head_dim_,
            out.data());
    return out;
  }

  // Device copies of the layer, and the PagedKv view of them.
  struct Device {
    DeviceBuffer<uint8_t> k, v, k_scales, v_scales;
  };
  std::unique_ptr<Device> upload() const {
    return std::unique_ptr<Device>(new Device{DeviceBuffer<uint8_t>(k_), DeviceBuffer<uint8_t>(v_), DeviceBuffer<uint8_t>(k_scales_),
                                              DeviceBuffer<uint8_t>(v_scales_)});
  }
  cuda::PagedKv view(const Device& d) const {
    return {d.k.get(), d.v.get(), k_scales_.empty() ? nullptr : d.k_scales.get(), v_scales_.empty() ? nullptr : d.v_scales.get(),
            types_.k, types_.v, kv_heads_, head_dim_, block_size_};
  }

  std::vector<uint8_t>& k() { return k_; }
  std::vector<uint8_t>& v() { return v_; }
  std::vector<uint8_t>& k_scales() { return k_scales_; }
  std::vector<uint8_t>& v_scales() { return v_scales_; }
  int block_size() const { return block_size_; }
  int num_blocks() const { return num_blocks_; }

 private:
  uint8_t* piece_rows(bool value, size_t piece) { return (value ? v_ : k_).data() + piece * block_size_ * row_bytes(value); }
  uint8_t* piece_scales(bool value, size_t piece) {
    std::vector<uint8_t>& scales = value ? v_scales_ : k_scales_;
    const KvRole role = value ? KvRole::kValue : KvRole::kKey;
    return scales.empty() ? nullptr : scales.data() + piece * kv_piece_scale_bytes(dtype(value), role, head_dim_, block_size_);
  }

  KvTypes types_;
  int kv_heads_, head_dim_, block_size_, num_blocks_;
  std::vector<uint8_t> k_, v_, k_scales_, v_scales_;
};

// Block tables for sequences of the given lengths, drawn from a shuffled pool so that a sequence's blocks
// are scattered; [num_seqs][max_blocks] with unused entries -1.
inline std::vector<int32_t> scattered_block_tables(std::mt19937& rng, const std::vector<int>& lengths, int block_size, int max_blocks,
                                                   int num_blocks) {
  std::vector<int32_t> free_blocks(num_blocks);
  std::iota(free_blocks.begin(), free_blocks.end(), 0);
  std::shuffle(free_blocks.begin(), free_blocks.end(), rng);
  std::vector<int32_t> tables(lengths.size() * max_blocks, -1);
  size_t next = 0;
  for (size_t s = 0; s < lengths.size(); ++s) {
    for (int b = 0; b * block_size < lengths[s]; ++b) tables[s * max_blocks + b] = free_blocks.at(next++);
  }
  return tables;
}

}  // namespace pagedlm::gpu_test
