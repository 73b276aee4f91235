// maddness_params — the uniform parameters of every MADDNESS kernel. WGSL has no includes: the
// host (gpu::maddness) prepends this file to encode, accumulate, accumulate_shuffle and
// fused. Mirrors gpu::maddness::MaddParams field by field (tests check every field: name, offset, type).
//
// Binding 0 of group 0 in every MADDNESS kernel.

struct MaddParams {
    batch: u32,
    in_channels: u32,
    in_h: u32,
    in_w: u32,
    out_channels: u32,
    out_h: u32,
    out_w: u32,
    groups: u32,
    stride_h: u32,
    stride_w: u32,
    pad_top: u32,
    pad_left: u32,
    in_per_group: u32,
    out_per_group: u32,
    codebooks: u32,     // CB, per group
    words: u32,         // W = ceil(CB/8)
    q_len: u32,         // Q = N·OH·OW
    m_chunks: u32,      // MW = ceil((O/groups)/16): 16-output chunks of a table row
    q_tiles: u32,       // accumulate: position tiles
    m_tiles: u32,       // accumulate: chunk tiles
}

@group(0) @binding(0) var<uniform> params: MaddParams;
