// tied_params — the uniform parameters of the tied per-pixel encoding (encode_pixels,
// expand_codes). WGSL has no includes: the host (gpu::maddness) prepends this file after
// geometry.wgsl. Mirrors gpu::maddness::TiedParams field by field (tests check every field:
// name, offset, type).
//
// Tied tables (maddness::Tables::tied_trees_per_tap) have CB = taps·T codebooks per group:
// codebook t·T + c is tree c at tap t. Tree c is stored as codebook c (tap 0).
//
// Binding 0 of group 0 in both kernels.

struct TiedParams {
    geo: GeometryParams,  // common/geometry.wgsl
    codebooks: u32,       // CB = taps·T, per group
    words: u32,           // W = ceil(CB/P): code words per output position (P = 32 / CODE_BITS)
    q_len: u32,           // Q = N·OH·OW
    per_tap: u32,         // T: tied trees per group
    tap_words: u32,       // TW = ceil(T/P): code words per input pixel
    pixels: u32,          // P = N·H·W (conv1d: N·L)
    reserved0: u32,       // padding to a multiple of 16 bytes
    reserved1: u32,
}

// The trees' depth L (4..=8, K = 2^L buckets) and the bits of one packed code (4 for depth 4,
// 8 for deeper trees; 32 / CODE_BITS codes per u32). Set by the host from the tables.
override DEPTH: u32 = 4u;
override CODE_BITS: u32 = 4u;

@group(0) @binding(0) var<uniform> params: TiedParams;
