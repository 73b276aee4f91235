// maddness_params — the uniform parameters of every MADDNESS kernel. WGSL has no includes: the
// host (gpu::maddness) prepends this file (after geometry.wgsl) to encode, accumulate, accumulate_shuffle and
// fused. Mirrors gpu::maddness::MaddParams field by field (tests check every field: name, offset, type).
//
// Binding 0 of group 0 in every MADDNESS kernel.

struct MaddParams {
    geo: GeometryParams,  // common/geometry.wgsl
    codebooks: u32,     // CB, per group
    words: u32,         // W = ceil(CB/P), P = 32 / CODE_BITS codes per word
    q_len: u32,         // Q = N·OH·OW
    m_chunks: u32,      // MW = ceil((O/groups)/16): 16-output chunks of a table row
    q_tiles: u32,       // accumulate: position tiles
    m_tiles: u32,       // accumulate: chunk tiles
}

// The trees' depth L (4..=8, K = 2^L buckets) and the bits of one packed code (4 for depth 4,
// 8 for deeper trees; 32 / CODE_BITS codes per u32). Set by the host from the tables.
override DEPTH: u32 = 4u;
override CODE_BITS: u32 = 4u;

@group(0) @binding(0) var<uniform> params: MaddParams;
