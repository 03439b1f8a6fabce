// Philox4x32-10 (Salmon et al., SC'11; Random123), the counter-based generator behind
// every random number in libswitch: init, dropout, router jitter, data order. The same
// header compiles for host and device, so CPU and GPU draw identical numbers.
//
// A RandomStream is keyed by the run's seed and addressed by (purpose, site, step):
// element i of a stream is a pure function of those, so runs are reproducible, resume is
// bit-exact and no generator state needs saving.
#pragma once

#include <cmath>
#include <cstdint>

#include "core/tensor/host_device.h"

namespace sw {

struct Philox4x32 {
  uint32_t v[4];
};

SW_HOST_DEVICE inline void philox_mulhilo(uint32_t a, uint32_t b, uint32_t* hi, uint32_t* lo) {
  const uint64_t product = static_cast<uint64_t>(a) * b;
  *hi = static_cast<uint32_t>(product >> 32);
  *lo = static_cast<uint32_t>(product);
}

// The 10-round Philox4x32 bijection of `counter` under `key` (Random123 philox4x32_R(10)).
SW_HOST_DEVICE inline Philox4x32 philox4x32_10(Philox4x32 counter, uint32_t key0, uint32_t key1) {
  constexpr uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;
  constexpr uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;
  uint32_t* c = counter.v;
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, lo0, hi1, lo1;
    philox_mulhilo(kMul0, c[0], &hi0, &lo0);
    philox_mulhilo(kMul1, c[2], &hi1, &lo1);
    const uint32_t next[4] = {hi1 ^ c[1] ^ key0, lo1, hi0 ^ c[3] ^ key1, lo0};
    c[0] = next[0];
    c[1] = next[1];
    c[2] = next[2];
    c[3] = next[3];
    key0 += kWeyl0;
    key1 += kWeyl1;
  }
  return counter;
}

// Uniform in [0, 1) from 32 random bits, keeping 24: exactly representable in f32.
SW_HOST_DEVICE inline float uniform_from_bits(uint32_t bits) {
  return static_cast<float>(bits >> 8) * (1.0f / 16777216.0f);
}

// A stream addresses 2^32 blocks of four 32-bit words.
constexpr uint64_t kMaxStreamElements = uint64_t{1} << 34;

// What a stream is for; part of the counter so purposes never share numbers.
enum class RandomPurpose : uint32_t {
  kInit = 1,
  kDropout = 2,
  kJitter = 3,
  kData = 4,
  kSampling = 5
};

struct RandomStream {
  uint64_t seed = 0;
  uint32_t purpose = 0;
  uint32_t site = 0;  // parameter index, dropout site, router layer, ... (< 2^24)
  uint64_t step = 0;

  SW_HOST_DEVICE RandomStream() {}
  SW_HOST_DEVICE RandomStream(uint64_t seed_, RandomPurpose purpose_, uint32_t site_,
                              uint64_t step_)
      : seed(seed_), purpose(static_cast<uint32_t>(purpose_)), site(site_), step(step_) {}

  // Block b of the stream: counter (b, purpose << 24 | site, step lo, step hi).
  SW_HOST_DEVICE Philox4x32 block(uint32_t b) const {
    Philox4x32 counter{{b, (purpose << 24) | (site & 0xFFFFFFu), static_cast<uint32_t>(step),
                        static_cast<uint32_t>(step >> 32)}};
    return philox4x32_10(counter, static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
  }

  // Blocks first, first + 1, ..., first + kBatchBlocks - 1 (host): word w of block
  // first + l in words[w][l]. The same arithmetic as block(), laid out lane by lane so the
  // compiler vectorises the 10 rounds across blocks.
  static constexpr int kBatchBlocks = 16;
  void blocks(uint32_t first, uint32_t words[4][kBatchBlocks]) const {
    constexpr uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;
    constexpr uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;
    uint32_t* c0 = words[0];
    uint32_t* c1 = words[1];
    uint32_t* c2 = words[2];
    uint32_t* c3 = words[3];
    for (int l = 0; l < kBatchBlocks; ++l) {
      c0[l] = first + static_cast<uint32_t>(l);
      c1[l] = (purpose << 24) | (site & 0xFFFFFFu);
      c2[l] = static_cast<uint32_t>(step);
      c3[l] = static_cast<uint32_t>(step >> 32);
    }
    uint32_t key0 = static_cast<uint32_t>(seed), key1 = static_cast<uint32_t>(seed >> 32);
    for (int round = 0; round < 10; ++round) {
      for (int l = 0; l < kBatchBlocks; ++l) {
        const uint64_t p0 = static_cast<uint64_t>(kMul0) * c0[l];
        const uint64_t p1 = static_cast<uint64_t>(kMul1) * c2[l];
        const uint32_t n0 = static_cast<uint32_t>(p1 >> 32) ^ c1[l] ^ key0;
        const uint32_t n2 = static_cast<uint32_t>(p0 >> 32) ^ c3[l] ^ key1;
        c1[l] = static_cast<uint32_t>(p1);
        c3[l] = static_cast<uint32_t>(p0);
        c0[l] = n0;
        c2[l] = n2;
      }
      key0 += kWeyl0;
      key1 += kWeyl1;
    }
  }
  // 32 random bits for element i (four elements per block).
  SW_HOST_DEVICE uint32_t bits(uint64_t i) const {
    return block(static_cast<uint32_t>(i >> 2)).v[i & 3];
  }

  SW_HOST_DEVICE float uniform(uint64_t i) const { return uniform_from_bits(bits(i)); }

  // Standard normal for element i: Box-Muller on block i / 4, whose two word pairs give
  // two normals each (cos and sin), so a block yields four.
  SW_HOST_DEVICE double normal(uint64_t i) const {
    double z[4];
    normals_from_block(block(static_cast<uint32_t>(i >> 2)), z);
    return z[i & 3];
  }

  SW_HOST_DEVICE static void normals_from_block(const Philox4x32& r, double z[4]) {
    for (int pair = 0; pair < 2; ++pair) {
      const double u1 =
          (static_cast<double>(r.v[2 * pair]) + 1.0) * (1.0 / 4294967296.0);  // (0, 1]
      const double u2 = static_cast<double>(r.v[2 * pair + 1]) * (1.0 / 4294967296.0);
      const double radius = sqrt(-2.0 * log(u1)), angle = 6.283185307179586 * u2;
      z[2 * pair] = radius * cos(angle);
      z[2 * pair + 1] = radius * sin(angle);
    }
  }
};

}  // namespace sw
