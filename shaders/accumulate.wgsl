// accumulate — MADDNESS table look-ups: for each output position and output channel, the sum
// over codebooks of the 8-bit table entry its code selects, summed exactly, then scaled:
//   y[n, o, p] = f32(Σ_c lut[g][c][code_c(q)][m]) · inv_scale[o] + offset[o],  o = g·Mg + m.
//
// A workgroup covers POSITIONS·QT positions (QT = floor(256 / MCH)) × MCH chunks of 16 outputs;
// invocation (pq, mc) owns chunk mc of position q = tile start + pq and, with POSITIONS = 2, of
// q + QT too. Per codebook it reads each position's code and ONE vec4<u32> table word (16
// packed u8 entries) per position and adds them byte-lane-wise: even and odd bytes into two
// vec4<u32> of 16-bit lane sums, flushed into full u32 sums (common/maddness_sums.wgsl). Two
// positions share the staging and the loop (1.1–1.6× faster than one on lavapipe,
// BENCHMARKS.md). Table rows of CC codebooks × 16 codes × MCH chunks are staged in workgroup
// memory (common/lut_stage.wgsl; CC·MCH ≤ 56 → at most 14 KiB, within wgpu's downlevel
// limit of 16 352 bytes).
//
// WGSL has no includes: the host (gpu::maddness) prepends common/maddness_params.wgsl,
// common/maddness_sums.wgsl and common/lut_stage.wgsl.
//
// Bindings (group 0):
//   0 params:    uniform MaddParams (common/maddness_params.wgsl; q_tiles counts tiles of
//                POSITIONS·QT positions)
//   1 codes:     array<u32>, [G, Q, W] packed codes (see encode.wgsl)
//   2 luts:      array<vec4<u32>>, [G, CB, K, MW]: K = 2^DEPTH codes, MW = ceil(Mg/16) chunks of 16 u8 entries
//                per (codebook, code), entry m in chunk m/16, word (m%16)/4, byte m%4; zero-padded
//   3 inv_scale: array<f32>, [O]
//   4 offset:    array<f32>, [O]
//   5 output:    array<f32>, [N, O, OH, OW], NCHW. With RAW_SUMS = 1 the exact u32 sums are
//                written instead (bit patterns, for the tests).
// Workgroups: linear index wid.x + wid.y·num_workgroups.x over G × m_tiles × q_tiles
// (position tiles fastest).
// CPU mirror: maddness::mirror::accumulate_sums and maddness::mirror::apply.

override MCH: u32 = 4u;        // 16-output chunks per workgroup, 1..=7
override CC: u32 = 8u;         // codebooks staged at a time, multiple of 8, CC·MCH ≤ 56 (STAGE = 1)
override POSITIONS: u32 = 2u;  // positions per invocation, 1 or 2

@group(0) @binding(1) var<storage, read> codes: array<u32>;
@group(0) @binding(2) var<storage, read> luts: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read> inv_scale: array<f32>;
@group(0) @binding(4) var<storage, read> offset: array<f32>;
@group(0) @binding(5) var<storage, read_write> output: array<f32>;

var<workgroup> lut_tile: array<vec4<u32>, 896>;  // [CC, 16, MCH]

@compute @workgroup_size(256)
fn accumulate(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let t = lookup_tile(wid, nwg);
    let g = t.x;
    if g >= params.geo.groups {
        return;
    }
    let mc0 = t.y;
    let q_tile = t.z;
    let QT = 256u / MCH;
    let cb = params.codebooks;

    let pq = lid % QT;
    let mc = lid / QT;                 // ≥ MCH: this invocation only helps staging
    let q = q_tile * POSITIONS * QT + pq;
    let qb = q + QT;                   // the second position (POSITIONS = 2)
    let live = q < params.q_len && mc < MCH && mc0 + mc < params.m_chunks;
    let live_b = POSITIONS == 2u && qb < params.q_len && live;
    let code_base = (g * params.q_len + min(q, params.q_len - 1u)) * params.words;
    let code_base_b = (g * params.q_len + min(qb, params.q_len - 1u)) * params.words;

    var acc = sums_zero();             // position q
    var acc_b = sums_zero();           // position qb
    var since_flush = 0u;

    let per = 32u / CODE_BITS;         // codes per word; divides CC
    for (var c0 = 0u; c0 < cb; c0 += CC) {
        if STAGE == 1u {
            stage_luts(lid, g, c0, mc0);
        }
        workgroupBarrier();
        if live {
            let c_end = min(CC, cb - c0);
            for (var cw = 0u; cw < c_end; cw += per) {
                let word = codes[code_base + (c0 + cw) / per];
                var word_b = 0u;
                if POSITIONS == 2u {
                    word_b = codes[code_base_b + (c0 + cw) / per];
                }
                let n_in_word = min(per, c_end - cw);
                for (var b = 0u; b < n_in_word; b++) {
                    sums_add(&acc, lut_entry(g, c0, cw + b, word, b, mc0, mc));
                    if POSITIONS == 2u {
                        sums_add(&acc_b, lut_entry(g, c0, cw + b, word_b, b, mc0, mc));
                    }
                }
                since_flush += n_in_word;
                if since_flush >= FLUSH_EVERY {
                    sums_flush(&acc);
                    sums_flush(&acc_b);
                    since_flush = 0u;
                }
            }
        }
        workgroupBarrier();
    }
    if live {
        store_sums2(acc, acc_b, live_b, g, q, qb, (mc0 + mc) * 16u);
    }
}
