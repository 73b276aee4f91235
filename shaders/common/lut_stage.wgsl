// lut_stage — table rows staged in workgroup memory, shared by the look-up kernels accumulate and
// fused (the host prepends it with maddness_params.wgsl and maddness_sums.wgsl). Needs the
// kernel's `luts` binding, its overrides MCH (16-output chunks per workgroup) and CC (codebooks
// staged at a time), and a `lut_tile` workgroup array of at least CC·16·MCH vec4<u32>, laid out
// [CC, 16, MCH]. Staging is for trees of depth 4 (16 rows per codebook); with STAGE = 0 (deeper
// trees: 32–256 rows per codebook would not fit) lut_entry reads the table words from `luts`.
// CPU mirror: maddness::mirror::accumulate_sums.

override STAGE: u32 = 1u;  // 1: stage_luts fills lut_tile (DEPTH = 4); 0: no staging

// This workgroup's tile of G × m_tiles × q_tiles (position tiles fastest; linear index
// wid.x + wid.y·num_workgroups.x): (group, first chunk, position tile). The group is ≥ G for
// workgroups past the end, which return at once.
fn lookup_tile(wid: vec3<u32>, nwg: vec3<u32>) -> vec3<u32> {
    let tile = wid.x + wid.y * nwg.x;
    let rest = tile / params.q_tiles;
    return vec3<u32>(rest / params.m_tiles, (rest % params.m_tiles) * MCH, tile % params.q_tiles);
}

// Stages lut[g][c0 .. c0+CC][0..16][mc0 .. mc0+MCH] (zeros past the codebooks and the chunks).
// Every invocation of the workgroup calls it; the barrier after it is the caller's.
fn stage_luts(lid: u32, g: u32, c0: u32, mc0: u32) {
    let cb = params.codebooks;
    let mw = params.m_chunks;
    for (var e = lid; e < CC * 16u * MCH; e += 256u) {
        let j = e % MCH;
        let row = e / MCH;             // (c - c0)·16 + code
        let c = c0 + row / 16u;
        var v = vec4<u32>(0u);
        if c < cb && mc0 + j < mw {
            v = luts[((g * cb + c) * 16u + row % 16u) * mw + mc0 + j];
        }
        lut_tile[e] = v;
    }
}

// The table word of chunk mc0 + mc of group g for codebook c0 + cs (cs < CC) and code b of
// `word` (the code word holding codebook c0 + cs at code b): staged, or read from `luts`
// ([G, CB, 2^DEPTH, MW]) with STAGE = 0.
fn lut_entry(g: u32, c0: u32, cs: u32, word: u32, b: u32, mc0: u32, mc: u32) -> vec4<u32> {
    let code = (word >> (CODE_BITS * b)) & ((1u << CODE_BITS) - 1u);
    if STAGE == 1u {
        return lut_tile[(cs * 16u + code) * MCH + mc];
    }
    let row = (g * params.codebooks + c0 + cs) * (1u << DEPTH) + code;
    return luts[row * params.m_chunks + mc0 + mc];
}
