// A host copy of one layer of the paged KV pool for the kernel tests: rows are encoded and decoded with
// the CPU's kv_store_row / kv_load_row, and the whole layer moves to and from the device.
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
  PagedPool(KvDtype dtype, int kv_heads, int head_dim, int block_size, int num_blocks)
      : dtype_(dtype), kv_heads_(kv_heads), head_dim_(head_dim), block_size_(block_size), num_blocks_(num_blocks) {
    const size_t rows = static_cast<size_t>(num_blocks) * kv_heads * block_size;
    k_.assign(rows * row_bytes(), 0x5a);
    v_.assign(rows * row_bytes(), 0xa5);
    if (kv_dtype_has_scales(dtype)) {
      k_scales_.assign(rows, -1.0f);
      v_scales_.assign(rows, -1.0f);
    }
  }

  size_t row_bytes() const { return kv_row_bytes(dtype_, head_dim_); }
  size_t row(int block, int head, int slot) const { return (static_cast<size_t>(block) * kv_heads_ + head) * block_size_ + slot; }

  void store(bool value, size_t row, const float* x) {
    std::vector<uint8_t>& data = value ? v_ : k_;
    float* scale = k_scales_.empty() ? nullptr : &(value ? v_scales_ : k_scales_)[row];
    kv_store_row(dtype_, x, data.data() + row * row_bytes(), scale, head_dim_);
  }
  std::vector<float> load(bool value, size_t row) const {
    const std::vector<uint8_t>& data = value ? v_ : k_;
    const float* scale = k_scales_.empty() ? nullptr : &(value ? v_scales_ : k_scales_)[row];
    std::vector<float> out(head_dim_);
    kv_load_row(dtype_, data.data() + row * row_bytes(), scale, out.data(), head_dim_);
    return out;
  }

  // Device copies of the layer, and the PagedKv view of them.
  struct Device {
    DeviceBuffer<uint8_t> k, v;
    DeviceBuffer<float> k_scales, v_scales;
  };
  std::unique_ptr<Device> upload() const {
    return std::unique_ptr<Device>(new Device{DeviceBuffer<uint8_t>(k_), DeviceBuffer<uint8_t>(v_), DeviceBuffer<float>(k_scales_),
                                              DeviceBuffer<float>(v_scales_)});
  }
  cuda::PagedKv view(const Device& d) const {
    const bool scaled = kv_dtype_has_scales(dtype_);
    return {d.k.get(), d.v.get(), scaled ? d.k_scales.get() : nullptr, scaled ? d.v_scales.get() : nullptr, dtype_, kv_heads_, head_dim_, block_size_};
  }

  std::vector<uint8_t>& k() { return k_; }
  std::vector<uint8_t>& v() { return v_; }
  std::vector<float>& k_scales() { return k_scales_; }
  std::vector<float>& v_scales() { return v_scales_; }
  int block_size() const { return block_size_; }
  int num_blocks() const { return num_blocks_; }

 private:
  KvDtype dtype_;
  int kv_heads_, head_dim_, block_size_, num_blocks_;
  std::vector<uint8_t> k_, v_;
  std::vector<float> k_scales_, v_scales_;
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
