// The GGUF reader: every metadata type, alignment, and a corpus of malformed files that must each give a
// clear kModelFormat error (never a crash: this suite also runs under ASan/UBSan).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "model/gguf.h"
#include "model/llama_model.h"
#include "support/gguf_writer.h"
#include "support/synthetic_model.h"

namespace pagedlm {
namespace {

using testing::GgufWriter;

Result<GgufFile> parse(const std::vector<uint8_t>& bytes) { return GgufFile::parse(bytes.data(), bytes.size()); }

TEST(Gguf, ReadsEveryMetadataType) {
  GgufWriter w;
  w.add_u8("u8", 200);
  w.add_i8("i8", -100);
  w.add_u16("u16", 60000);
  w.add_i16("i16", -30000);
  w.add_u32("u32", 4000000000u);
  w.add_i32("i32", -2000000000);
  w.add_f32("f32", 1.5f);
  w.add_bool("bool", true);
  w.add_string("string", "héllo");
  w.add_u64("u64", 1ull << 40);
  w.add_i64("i64", -(1ll << 40));
  w.add_f64("f64", 2.25);
  w.add_string_array("strings", {"a", "", "ccc"});
  w.add_f32_array("floats", {1, 2, 3});
  w.add_i32_array("ints", {-1, 0, 7});
  // array of arrays of u8: [[1, 2], [3]]
  w.add_raw("nested", {9, 0, 0, 0, 9, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0,
                       0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1, 2,
                       0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 3});
  const std::vector<uint8_t> bytes = w.build();
  auto f = parse(bytes);
  ASSERT_TRUE(f.is_ok()) << f.status().message();
  const GgufFile& g = f.value();
  EXPECT_EQ(g.version(), 3u);
  EXPECT_EQ(*g.get_int("u8").value(), 200);
  EXPECT_EQ(*g.get_int("i8").value(), -100);
  EXPECT_EQ(*g.get_int("u16").value(), 60000);
  EXPECT_EQ(*g.get_int("i16").value(), -30000);
  EXPECT_EQ(*g.get_int("u32").value(), 4000000000ll);
  EXPECT_EQ(*g.get_int("i32").value(), -2000000000);
  EXPECT_EQ(*g.get_float("f32").value(), 1.5);
  EXPECT_EQ(*g.get_bool("bool").value(), true);
  EXPECT_EQ(*g.get_string("string").value(), "héllo");
  EXPECT_EQ(*g.get_int("u64").value(), 1ll << 40);
  EXPECT_EQ(*g.get_int("i64").value(), -(1ll << 40));
  EXPECT_EQ(*g.get_float("f64").value(), 2.25);
  EXPECT_EQ(g.get_string_array("strings").value(), (std::vector<std::string_view>{"a", "", "ccc"}));
  EXPECT_EQ(g.get_float_array("floats").value(), (std::vector<float>{1, 2, 3}));
  EXPECT_EQ(g.get_int_array("ints").value(), (std::vector<int32_t>{-1, 0, 7}));
  const GgufValue* nested = g.find("nested");
  ASSERT_NE(nested, nullptr);
  ASSERT_EQ(nested->items.size(), 2u);
  EXPECT_EQ(nested->items[0].count, 2u);
  EXPECT_EQ(nested->items[1].raw[0], 3);
  EXPECT_FALSE(g.get_int("missing").value().has_value());
  EXPECT_FALSE(g.get_string("u8").is_ok());  // wrong type is an error, not a silent default
}

TEST(Gguf, PlacesTensorsAtTheirAlignment) {
  for (uint32_t alignment : {32u, 64u, 256u}) {
    GgufWriter w;
    w.alignment = alignment;
    if (alignment != 32) w.add_u32("general.alignment", alignment);
    w.add_tensor("a", {3}, TensorType::kF32, testing::encode_tensor({1, 2, 3}, TensorType::kF32));
    w.add_tensor("b", {32, 2}, TensorType::kQ8_0, testing::encode_tensor(std::vector<float>(64, 0.5f), TensorType::kQ8_0));
    const auto bytes = w.build();
    auto f = parse(bytes);
    ASSERT_TRUE(f.is_ok()) << f.status().message();
    const GgufTensor* b = f.value().find_tensor("b");
    ASSERT_NE(b, nullptr);
    EXPECT_EQ((b->data - bytes.data()) % alignment, 0);
    EXPECT_EQ(b->bytes, 68u);
    float out[64];
    dequantize_row(b->type, b->data, out, 64);
    EXPECT_NEAR(out[63], 0.5f, 1e-3);
  }
}

TEST(Gguf, TypesDequantizeCloseToTheirSource) {
  std::vector<float> values(256);
  for (size_t i = 0; i < values.size(); ++i) values[i] = std::sin(static_cast<float>(i)) * 2.0f;
  const std::pair<TensorType, float> cases[] = {
      {TensorType::kF32, 0},      {TensorType::kF16, 2e-3f},   {TensorType::kBF16, 2e-2f},   {TensorType::kQ8_0, 2e-2f},
      {TensorType::kQ4_0, 0.3f},  {TensorType::kQ4_1, 0.15f},  {TensorType::kQ5_0, 0.13f},   {TensorType::kQ5_1, 0.07f},
      {TensorType::kIQ4_NL, 0.2f}, {TensorType::kQ2_K, 0.9f},  {TensorType::kQ3_K, 0.45f},   {TensorType::kQ4_K, 0.2f},
      {TensorType::kQ5_K, 0.1f},  {TensorType::kQ6_K, 5e-2f},  {TensorType::kIQ4_XS, 0.25f}};
  for (auto [type, tolerance] : cases) {
    const auto bytes = testing::encode_tensor(values, type);
    EXPECT_EQ(bytes.size(), tensor_row_bytes(type, values.size()));
    std::vector<float> out(values.size());
    dequantize_row(type, bytes.data(), out.data(), out.size());
    for (size_t i = 0; i < values.size(); ++i) ASSERT_NEAR(out[i], values[i], tolerance) << tensor_type_name(type) << " at " << i;
  }
}

TEST(Gguf, DequantizesQ4K) {
  // One block by hand: d = 1, dmin = 0.5, sub-block 0 scale 2 min 1, nibble 3 -> 1*2*3 - 0.5*1 = 5.5.
  BlockQ4_K block{};
  block.d = 0x3C00;     // 1.0
  block.dmin = 0x3800;  // 0.5
  block.scales[0] = 2;
  block.scales[4] = 1;
  block.nibbles[0] = 0x03;
  float out[256];
  dequantize_row(TensorType::kQ4_K, &block, out, 256);
  EXPECT_FLOAT_EQ(out[0], 5.5f);
  EXPECT_FLOAT_EQ(out[1], -0.5f);
}

TEST(Gguf, DequantizesQ5_0) {
  // d = 1. Byte 0 holds element 0 (low nibble 1) and element 16 (high nibble 2); bits 0 and 16 of `high`
  // add 16 to elements 0 and 16, bit 17 to element 17; then 16 comes off every element.
  BlockQ5_0 block{};
  block.d = 0x3C00;
  block.nibbles[0] = 0x21;
  const uint32_t high = 1u | 1u << 16 | 1u << 17;
  std::memcpy(block.high, &high, 4);
  float out[32];
  dequantize_row(TensorType::kQ5_0, &block, out, 32);
  EXPECT_FLOAT_EQ(out[0], 1.0f);
  EXPECT_FLOAT_EQ(out[16], 2.0f);
  EXPECT_FLOAT_EQ(out[17], 0.0f);
  EXPECT_FLOAT_EQ(out[1], -16.0f);
}

TEST(Gguf, DequantizesQ5K) {
  // d = 1, dmin = 0.5; sub-block 0: scale 2, min 1; sub-block 1: scale 3, min 0; sub-block 2: scale 1.
  // Value 0: nibble 3 + fifth bit (high[0] bit 0) = 19 -> 2 * 19 - 0.5 = 37.5. Value 32 (sub-block 1): high
  // nibble of byte 0 (5) + high[0] bit 1 = 21 -> 63. Value 65 (sub-block 2): nibble 0 + high[1] bit 2 = 16.
  BlockQ5_K block{};
  block.d = 0x3C00;
  block.dmin = 0x3800;
  block.scales[0] = 2;
  block.scales[1] = 3;
  block.scales[2] = 1;
  block.scales[4] = 1;
  block.nibbles[0] = 0x53;
  block.high[0] = 0x03;
  block.high[1] = 0x04;
  float out[256];
  dequantize_row(TensorType::kQ5_K, &block, out, 256);
  EXPECT_FLOAT_EQ(out[0], 37.5f);
  EXPECT_FLOAT_EQ(out[32], 63.0f);
  EXPECT_FLOAT_EQ(out[65], 16.0f);
  EXPECT_FLOAT_EQ(out[1], -0.5f);  // all bits 0 in sub-block 0: -dmin x min
}

TEST(Gguf, DequantizesQ3K) {
  // d = 1. Scale 0: low nibble of scales[0] (3) and bits 0-1 of scales[8] (2): 35 - 32 = 3. Scale 2 is all
  // zero bits: -32. Scale 8: high nibble of scales[0] (5) and bits 4-5 of scales[8] (2): 37 - 32 = 5.
  // Value 0: low[0] bits 0-1 (2), third bit high[0] bit 0 (1): 6 - 4 = 2, x 3 = 6. Value 32 (sub-block 2):
  // low[0] bits 2-3 (1), high[0] bit 1 (0): 1 - 4 = -3, x -32 = 96. Value 128 (sub-block 8): low[32] bits
  // 0-1 (3), high[0] bit 4 (1): 3, x 5 = 15.
  BlockQ3_K block{};
  block.d = 0x3C00;
  block.scales[0] = 0x53;
  block.scales[8] = 0x22;
  block.low[0] = 0x06;
  block.low[32] = 0x03;
  block.high[0] = 0x11;
  float out[256];
  dequantize_row(TensorType::kQ3_K, &block, out, 256);
  EXPECT_FLOAT_EQ(out[0], 6.0f);
  EXPECT_FLOAT_EQ(out[32], 96.0f);
  EXPECT_FLOAT_EQ(out[128], 15.0f);
  EXPECT_FLOAT_EQ(out[1], -12.0f);  // all bits 0: -4 x scale 0
}

TEST(Gguf, DequantizesQ2K) {
  // d = 1, dmin = 0.5. Sub-block 0: scale 3, min 2; sub-block 1: scale 2, min 1; sub-block 2: scale 1.
  // values[0] = 0b11100100 holds values 0, 32, 64, 96 (2 bits each): 0, 1, 2, 3.
  BlockQ2_K block{};
  block.d = 0x3C00;
  block.dmin = 0x3800;
  block.scales[0] = 0x23;
  block.scales[1] = 0x12;
  block.scales[2] = 0x01;
  block.values[0] = 0xE4;
  block.values[16] = 0x02;
  float out[256];
  dequantize_row(TensorType::kQ2_K, &block, out, 256);
  EXPECT_FLOAT_EQ(out[0], -1.0f);  // 3 x 0 - 0.5 x 2
  EXPECT_FLOAT_EQ(out[32], 1.0f);  // 1 x 1 - 0
  EXPECT_FLOAT_EQ(out[16], 3.5f);  // 2 x 2 - 0.5 x 1
}

TEST(Gguf, DequantizesIQ4XS) {
  // d = 1. Sub-block 0's scale: low nibble of scales_low[0] (1) and scales_high bits 0-1 (2): 33 - 32 = 1.
  // Sub-block 1's: high nibble of scales_low[0] (3) and bits 2-3 (1): 19 - 32 = -13. Byte 0 holds values 0
  // (index 0: -127) and 16 (index 15: 113); byte 16 starts sub-block 1 (index 8: 1).
  BlockIQ4_XS block{};
  block.d = 0x3C00;
  block.scales_low[0] = 0x31;
  block.scales_high = 0x6;
  block.nibbles[0] = 0xF0;
  block.nibbles[16] = 0x08;
  float out[256];
  dequantize_row(TensorType::kIQ4_XS, &block, out, 256);
  EXPECT_FLOAT_EQ(out[0], -127.0f);
  EXPECT_FLOAT_EQ(out[16], 113.0f);
  EXPECT_FLOAT_EQ(out[32], -13.0f);
}

TEST(Gguf, DequantizesQ6K) {
  // One block by hand, d = 1. Value 0: low bits 5 (low[0] & 15), high bits 2 (high[0] bits 0-1), so
  // 5 + 32 - 32 = 5, times scale 0 (2) = 10. Value 32: low[32] & 15 = 15, high[0] bits 2-3 = 0: 15 - 32 =
  // -17, times scale 2 (3) = -51. Value 64: low[0] >> 4 = 0, high[0] bits 4-5 = 0: -32, times scale 4 (1).
  // Value 128 (second half): low[64] & 15 = 1, high[32] bits 0-1 = 3: 49 - 32 = 17, times scale 8 (-1).
  BlockQ6_K block{};
  block.d = 0x3C00;
  block.scales[0] = 2;
  block.scales[2] = 3;
  block.scales[4] = 1;
  block.scales[8] = -1;
  block.low[0] = 0x05;
  block.low[32] = 0x0F;
  block.high[0] = 0x02;
  block.low[64] = 0x01;
  block.high[32] = 0x03;
  float out[256];
  dequantize_row(TensorType::kQ6_K, &block, out, 256);
  EXPECT_FLOAT_EQ(out[0], 10.0f);
  EXPECT_FLOAT_EQ(out[32], -51.0f);
  EXPECT_FLOAT_EQ(out[64], -32.0f);
  EXPECT_FLOAT_EQ(out[128], -17.0f);
  EXPECT_FLOAT_EQ(out[1], -64.0f);  // all bits 0: -32 x scale 0
}

// ---- malformed files ----------------------------------------------------------------------------------

std::vector<uint8_t> valid_file() {
  GgufWriter w;
  w.add_string("general.architecture", "llama");
  w.add_string_array("tokens", {"a", "b"});
  w.add_tensor("t", {32, 2}, TensorType::kF32, testing::encode_tensor(std::vector<float>(64, 1.0f), TensorType::kF32));
  return w.build();
}

void expect_error(const std::vector<uint8_t>& bytes, const std::string& fragment) {
  auto f = parse(bytes);
  ASSERT_FALSE(f.is_ok()) << "expected an error mentioning '" << fragment << "'";
  EXPECT_EQ(f.status().code(), ErrorCode::kModelFormat);
  EXPECT_NE(f.status().message().find(fragment), std::string::npos) << f.status().message();
}

TEST(GgufMalformed, BadMagic) {
  auto bytes = valid_file();
  bytes[0] = 'X';
  expect_error(bytes, "bad magic");
}

TEST(GgufMalformed, BadVersion) {
  auto bytes = valid_file();
  bytes[4] = 7;
  expect_error(bytes, "version 7");
}

TEST(GgufMalformed, EveryTruncationIsAnError) {
  const auto bytes = valid_file();
  for (size_t n = 0; n < bytes.size(); ++n) {
    auto f = GgufFile::parse(bytes.data(), n);
    ASSERT_FALSE(f.is_ok()) << "truncated at " << n;
    EXPECT_EQ(f.status().code(), ErrorCode::kModelFormat);
  }
}

TEST(GgufMalformed, HugeCounts) {
  auto bytes = valid_file();
  const uint64_t huge = 1ull << 62;
  std::memcpy(bytes.data() + 8, &huge, 8);
  expect_error(bytes, "truncated");
  bytes = valid_file();
  std::memcpy(bytes.data() + 16, &huge, 8);
  expect_error(bytes, "truncated");
}

TEST(GgufMalformed, HostileValues) {
  GgufWriter w;
  w.add_raw("bad_type", {99, 0, 0, 0});
  expect_error(w.build(), "unknown value type 99");

  GgufWriter long_string;
  long_string.add_raw("s", {8, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f});
  expect_error(long_string.build(), "truncated");

  GgufWriter long_array;
  long_array.add_raw("a", {9, 0, 0, 0, 4, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0});
  expect_error(long_array.build(), "truncated");

  GgufWriter bad_bool;
  bad_bool.add_raw("b", {7, 0, 0, 0, 2});
  expect_error(bad_bool.build(), "bool");

  GgufWriter deep;  // arrays nested past the limit
  std::vector<uint8_t> nested = {9, 0, 0, 0};
  for (int i = 0; i < 20; ++i) nested.insert(nested.end(), {9, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0});
  deep.add_raw("deep", nested);
  expect_error(deep.build(), "nests arrays too deeply");

  GgufWriter duplicate;
  duplicate.add_u32("k", 1);
  duplicate.add_u32("k", 2);
  expect_error(duplicate.build(), "duplicate metadata key 'k'");

  GgufWriter alignment;
  alignment.add_u32("general.alignment", 24);
  expect_error(alignment.build(), "power of two");
}

TEST(GgufMalformed, HostileTensors) {
  GgufWriter unknown_type;
  unknown_type.add_tensor("t", {32}, static_cast<TensorType>(77), std::vector<uint8_t>(128));
  expect_error(unknown_type.build(), "tensor 't' has unknown type id 77");

  GgufWriter unsupported_type;  // IQ2_XXS: a GGML type pagedlm reads no weights of
  unsupported_type.add_tensor("u", {256}, static_cast<TensorType>(16), std::vector<uint8_t>(66));
  expect_error(unsupported_type.build(), "tensor 'u' has unsupported type IQ2_XXS (type id 16)");

  GgufWriter odd_rows;
  odd_rows.add_tensor("q", {33}, TensorType::kQ8_0, std::vector<uint8_t>(68));
  expect_error(odd_rows.build(), "not a multiple of the Q8_0 block size");

  GgufWriter zero_dim;
  zero_dim.add_tensor("z", {0}, TensorType::kF32, {});
  expect_error(zero_dim.build(), "invalid dimension");

  GgufWriter rank;
  rank.add_tensor("r", {1, 1, 1, 1, 1}, TensorType::kF32, std::vector<uint8_t>(4));
  expect_error(rank.build(), "rank 5");

  GgufWriter overflow;  // element count would overflow 64 bits
  overflow.add_tensor("h", {1ull << 40, 1ull << 40}, TensorType::kF32, std::vector<uint8_t>(4));
  expect_error(overflow.build(), "invalid dimension");

  GgufWriter huge;  // 4 GiB claimed, 4 bytes present
  huge.add_tensor("h", {1ull << 20, 1ull << 10}, TensorType::kF32, std::vector<uint8_t>(4));
  expect_error(huge.build(), "outside the file");

  auto bytes = valid_file();
  bytes.pop_back();  // the last tensor loses its last byte
  expect_error(bytes, "data lies outside the file");

  GgufWriter duplicate;
  duplicate.add_tensor("t", {1}, TensorType::kF32, std::vector<uint8_t>(4));
  duplicate.add_tensor("t", {1}, TensorType::kF32, std::vector<uint8_t>(4));
  expect_error(duplicate.build(), "duplicate tensor 't'");
}

TEST(GgufMalformed, RandomByteFlipsNeverCrash) {
  const auto original = testing::synthetic_model({.dim = 32, .layers = 1, .heads = 2, .kv_heads = 1, .ffn = 32, .vocab = 260}).build();
  uint64_t state = 12345;
  for (int trial = 0; trial < 2000; ++trial) {
    auto bytes = original;
    for (int k = 0; k < 4; ++k) {
      state = state * 6364136223846793005ull + 1442695040888963407ull;
      bytes[(state >> 16) % 2048] ^= static_cast<uint8_t>(state >> 56);
    }
    auto f = GgufFile::parse(bytes.data(), bytes.size());
    if (!f.is_ok()) EXPECT_FALSE(f.status().message().empty());
  }
}

TEST(Gguf, OpenReportsMissingFiles) {
  auto f = GgufFile::open("/nonexistent/model.gguf");
  ASSERT_FALSE(f.is_ok());
  EXPECT_EQ(f.status().code(), ErrorCode::kIo);
  EXPECT_NE(f.status().message().find("/nonexistent/model.gguf"), std::string::npos);
}

// The tensor directory and tensor bytes of `a` and `b` agree, whatever files they came from.
void expect_same_tensors(const GgufFile& a, const GgufFile& b) {
  ASSERT_EQ(a.tensors().size(), b.tensors().size());
  for (const GgufTensor& t : a.tensors()) {
    const GgufTensor* other = b.find_tensor(t.name);
    ASSERT_NE(other, nullptr) << t.name;
    EXPECT_EQ(other->dims, t.dims);
    EXPECT_EQ(other->type, t.type);
    ASSERT_EQ(other->bytes, t.bytes);
    if (t.data != nullptr && other->data != nullptr) EXPECT_EQ(std::memcmp(other->data, t.data, t.bytes), 0) << t.name;
  }
}

TEST(GgufSplit, OpensEveryPartFromTheFirst) {
  testing::SyntheticSpec spec;
  const GgufWriter whole = testing::synthetic_model(spec);
  const auto paths = whole.write_split(testing::temp_path("split-model"), 3);
  auto split = GgufFile::open(paths[0]);
  ASSERT_TRUE(split.is_ok()) << split.status().message();
  EXPECT_EQ(split.value().file_count(), 3u);
  const auto bytes = whole.build();
  auto single = parse(bytes);
  ASSERT_TRUE(single.is_ok());
  expect_same_tensors(single.value(), split.value());
  EXPECT_EQ(split.value().get_string("general.architecture").value(), std::optional<std::string>("llama"));
}

TEST(GgufSplit, LoadsAsAModel) {
  testing::SyntheticSpec spec;
  const auto paths = testing::synthetic_model(spec).write_split(testing::temp_path("split-load"), 2);
  auto file = GgufFile::open(paths[0], /*map=*/false);
  ASSERT_TRUE(file.is_ok()) << file.status().message();
  auto model = LlamaModel::load(file.take());
  ASSERT_TRUE(model.is_ok()) << model.status().message();
  EXPECT_EQ(model.value()->config().n_layers, spec.layers);
}

TEST(GgufSplit, ALaterPartNamesTheFirst) {
  const auto paths = testing::synthetic_model({}).write_split(testing::temp_path("split-later"), 3);
  auto f = GgufFile::open(paths[1]);
  ASSERT_FALSE(f.is_ok());
  EXPECT_EQ(f.status().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(f.status().message().find(paths[0]), std::string::npos) << f.status().message();
}

TEST(GgufSplit, AMissingPartIsNamed) {
  const auto paths = testing::synthetic_model({}).write_split(testing::temp_path("split-missing"), 3);
  std::remove(paths[2].c_str());
  auto f = GgufFile::open(paths[0]);
  ASSERT_FALSE(f.is_ok());
  EXPECT_EQ(f.status().code(), ErrorCode::kIo);
  EXPECT_NE(f.status().message().find(paths[2]), std::string::npos) << f.status().message();
  EXPECT_NE(f.status().message().find("part 3 of 3"), std::string::npos) << f.status().message();
}

TEST(GgufSplit, ARenamedFirstPartIsRefusedWithTheReason) {
  const auto paths = testing::synthetic_model({}).write_split(testing::temp_path("split-renamed"), 2);
  const std::string renamed = testing::temp_path("split-renamed.gguf");
  ASSERT_EQ(std::rename(paths[0].c_str(), renamed.c_str()), 0);
  auto f = GgufFile::open(renamed);
  ASSERT_FALSE(f.is_ok());
  EXPECT_EQ(f.status().code(), ErrorCode::kModelFormat);
  EXPECT_NE(f.status().message().find("-00001-of-00002.gguf"), std::string::npos) << f.status().message();
}

TEST(GgufSplit, AMissingTensorCountDisagreementIsAnError) {
  GgufWriter w = testing::synthetic_model({});
  const auto paths = w.write_split(testing::temp_path("split-count"), 2);
  // Part 2 replaced by a part that holds no tensors: the count in part 1 no longer adds up.
  GgufWriter empty;
  empty.add_u16("split.no", 1);
  empty.add_u16("split.count", 2);
  empty.write(paths[1]);
  auto f = GgufFile::open(paths[0]);
  ASSERT_FALSE(f.is_ok());
  EXPECT_NE(f.status().message().find("split.tensors.count"), std::string::npos) << f.status().message();
}

TEST(GgufHeader, ReadsMetadataAndDirectoryWithoutData) {
  testing::SyntheticSpec spec;
  spec.vocab = 60000;  // a vocabulary whose strings run past the first read of the header (1 MiB)
  const std::string path = testing::write_synthetic_model(spec, "header-only.gguf");
  auto header = GgufFile::read_header(path);
  ASSERT_TRUE(header.is_ok()) << header.status().message();
  auto full = GgufFile::open(path);
  ASSERT_TRUE(full.is_ok());
  expect_same_tensors(full.value(), header.value());
  for (const GgufTensor& t : header.value().tensors()) EXPECT_EQ(t.data, nullptr);
  EXPECT_EQ(header.value().get_string_array("tokenizer.ggml.tokens").value().size(), 60000u);
}

TEST(GgufHeader, ReadsEverySplitPart) {
  const auto paths = testing::synthetic_model({}).write_split(testing::temp_path("split-header"), 3);
  auto header = GgufFile::read_header(paths[0]);
  ASSERT_TRUE(header.is_ok()) << header.status().message();
  auto full = GgufFile::open(paths[0]);
  ASSERT_TRUE(full.is_ok());
  expect_same_tensors(full.value(), header.value());
}

TEST(GgufHeader, TruncatedHeadersAreErrorsNotRetries) {
  const auto bytes = testing::synthetic_model({}).build();
  const std::string path = testing::temp_path("header-truncated.gguf");
  for (size_t cut : {size_t{3}, size_t{24}, bytes.size() / 3, bytes.size() - 1}) {
    std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(cut));
    auto f = GgufFile::read_header(path);
    ASSERT_FALSE(f.is_ok()) << cut;
    EXPECT_EQ(f.status().code(), ErrorCode::kModelFormat) << cut;
  }
  EXPECT_EQ(GgufFile::read_header("/nonexistent/model.gguf").status().code(), ErrorCode::kIo);
  EXPECT_EQ(GgufFile::read_header("/tmp").status().code(), ErrorCode::kIo);
}

}  // namespace
}  // namespace pagedlm
