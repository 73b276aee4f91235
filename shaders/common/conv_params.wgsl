// conv_params — the uniform parameters and kernel-size constants of the exact convolution
// kernels. WGSL has no includes: the host (gpu::direct) prepends this file (after
// geometry.wgsl) to direct, direct_naive and direct_subgroup. Mirrors gpu::direct::ConvParams field by field (tests check
// every field: name, offset, type).

override KH: u32 = 1u;  // kernel height (1 for conv1d)
override KW: u32 = 1u;  // kernel width

struct Params {
    geo: GeometryParams,  // common/geometry.wgsl
    dilation_h: u32,
    dilation_w: u32,
    k_len: u32,        // K
    q_len: u32,        // N·OH·OW
    m_tiles: u32,      // tiles over the output channels of a group (kernel-specific)
    n_tiles: u32,      // tiles over the positions (kernel-specific)
}

@group(0) @binding(0) var<uniform> params: Params;
