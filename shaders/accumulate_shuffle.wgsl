// accumulate_shuffle — the look-ups of `accumulate` done with subgroup shuffles instead of
// data-dependent reads: for each codebook, the lanes of a subgroup together hold the 16 table
// entries of a row (lane l holds entry l, l + S, ... for subgroup size S), and every lane takes
// the entry its own code selects with subgroupShuffle — the GPU analogue of the byte shuffle
// (pshufb) of CPU MADDNESS. The table loads are then the same for every position and
// contiguous across lanes, with no workgroup memory and no barrier.
//
// A workgroup covers 512 positions × one chunk of 16 outputs; every invocation two positions,
// q and q + 256, which share the table loads (only their shuffles differ), summing 16 outputs
// each exactly as `accumulate` does (16-bit lane sums flushed into u32 every 248 codebooks).
// (Two positions per invocation measured 1.4–3× faster than one on lavapipe; BENCHMARKS.md.)
//
// WGSL has no includes: the host (gpu::maddness) prepends common/maddness_params.wgsl
// and common/maddness_sums.wgsl.
//
// Bindings (group 0):
//   0 params:    uniform MaddParams (common/maddness_params.wgsl; q_tiles counts 512-position tiles,
//                m_tiles equals m_chunks)
//   1 codes:     array<u32>, [G, Q, W] packed 4-bit codes (see encode.wgsl)
//   2 luts:      array<u32>, [G, CB, 4·MW, 16]: word j (outputs 4j .. 4j+4, one u8 each, output
//                4j + b in byte b) of code k — the tables of `accumulate` with codes innermost
//   3 inv_scale: array<f32>, [O]
//   4 offset:    array<f32>, [O]
//   5 output:    array<f32>, [N, O, OH, OW], NCHW (RAW_SUMS = 1: the exact u32 sums)
// Workgroups: linear index wid.x + wid.y·num_workgroups.x over G × m_tiles × q_tiles.
// Needs the `subgroups` feature (on the web, where browsers want `enable subgroups;`, the host
// prepends that line; naga takes the built-ins without it). CPU mirror:
// maddness::mirror::accumulate_sums and apply.

@group(0) @binding(1) var<storage, read> codes: array<u32>;
@group(0) @binding(2) var<storage, read> luts: array<u32>;
@group(0) @binding(3) var<storage, read> inv_scale: array<f32>;
@group(0) @binding(4) var<storage, read> offset: array<f32>;
@group(0) @binding(5) var<storage, read_write> output: array<f32>;

@compute @workgroup_size(256)
fn accumulate_shuffle(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
    @builtin(subgroup_invocation_id) lane: u32,
    @builtin(subgroup_size) sg: u32,
) {
    let tile = wid.x + wid.y * nwg.x;
    if tile >= params.geo.groups * params.m_tiles * params.q_tiles {
        return;
    }
    let q_tile = tile % params.q_tiles;
    let rest = tile / params.q_tiles;
    let mc = rest % params.m_tiles;
    let g = rest / params.m_tiles;
    let cb = params.codebooks;
    let row_words = params.m_chunks * 4u;
    let q = q_tile * 512u + lid;
    let qb = q + 256u;
    let live = q < params.q_len;
    let live_b = qb < params.q_len;
    let code_base = (g * params.q_len + min(q, params.q_len - 1u)) * params.words;
    let code_base_b = (g * params.q_len + min(qb, params.q_len - 1u)) * params.words;
    let rounds = (16u + sg - 1u) / sg;

    var acc = sums_zero();             // position q
    var acc_b = sums_zero();           // position qb
    var word = 0u;
    var word_b = 0u;
    var since_flush = 0u;
    for (var c = 0u; c < cb; c++) {
        if c % 8u == 0u {
            word = codes[code_base + c / 8u];
            word_b = codes[code_base_b + c / 8u];
        }
        let code = (word >> (4u * (c % 8u))) & 15u;
        let code_b = (word_b >> (4u * (c % 8u))) & 15u;
        let row = ((g * cb + c) * row_words + mc * 4u) * 16u;
        var v = vec4<u32>(0u);
        var u = vec4<u32>(0u);
        for (var r = 0u; r < rounds; r++) {
            let k = (r * sg + lane) % 16u;
            let held = vec4<u32>(luts[row + k], luts[row + 16u + k], luts[row + 32u + k], luts[row + 48u + k]);
            v = select(v, subgroupShuffle(held, code % sg), code / sg == r);
            u = select(u, subgroupShuffle(held, code_b % sg), code_b / sg == r);
        }
        sums_add(&acc, v);
        sums_add(&acc_b, u);
        since_flush += 1u;
        if since_flush == FLUSH_EVERY {
            sums_flush(&acc);
            sums_flush(&acc_b);
            since_flush = 0u;
        }
    }
    if live {
        store_sums2(acc, acc_b, live_b, g, q, qb, mc * 16u);
    }
}
