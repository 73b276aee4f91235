// fused — MADDNESS encode and accumulate in one kernel: a workgroup first hashes the windows of
// its positions into 4-bit codes held in workgroup memory (exactly as `encode`), then sums the
// 8-bit table entries they select (exactly as `accumulate`), so the codes never travel through
// global memory and the layer is one dispatch. When a layer's outputs span several workgroup
// tiles, each of them hashes its positions again.
//
// Workgroup: QT = floor(256 / MCH) positions × MCH chunks of 16 outputs; codes of the QT
// positions, W = ceil(CB/8) words each, in workgroup memory (QT·W ≤ 2040 words); table rows of
// CC codebooks × 16 codes × MCH chunks staged as in `accumulate` (CC·MCH ≤ 32 = 8 KiB), 16 352
// bytes in all (wgpu's downlevel limit). Host code behind the `extra-kernels` feature (it
// measured no gain over two passes).
//
// WGSL has no includes: the host (gpu::maddness) prepends common/maddness_params.wgsl,
// common/maddness_sums.wgsl, common/maddness_tree.wgsl and common/lut_stage.wgsl.
//
// Bindings (group 0):
//   0 params:    uniform MaddParams (common/maddness_params.wgsl)
//   1 input:      array<f32>, [N, C, H, W] (conv1d: H = 1), NCHW
//   2 splits:     array<vec4<i32>>, [G, CB, 4] (see encode.wgsl)
//   3 thresholds: array<f32>, [G, CB, 4, 16] (see encode.wgsl)
//   4 luts:       array<vec4<u32>>, [G, CB, 16, MW] (see accumulate.wgsl)
//   5 inv_scale:  array<f32>, [O]
//   6 offset:     array<f32>, [O]
//   7 output:     array<f32>, [N, O, OH, OW], NCHW
// Workgroups: linear index wid.x + wid.y·num_workgroups.x over G × m_tiles × q_tiles.
// CPU mirror: maddness::mirror::apply (encode, accumulate_sums, then scale).

override MCH: u32 = 4u;   // 16-output chunks per workgroup, 1..=4
override CC: u32 = 8u;    // codebooks staged at a time, multiple of 8, CC·MCH ≤ 32

@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read> splits: array<vec4<i32>>;
@group(0) @binding(3) var<storage, read> thresholds: array<f32>;
@group(0) @binding(4) var<storage, read> luts: array<vec4<u32>>;
@group(0) @binding(5) var<storage, read> inv_scale: array<f32>;
@group(0) @binding(6) var<storage, read> offset: array<f32>;
@group(0) @binding(7) var<storage, read_write> output: array<f32>;

var<workgroup> codes_tile: array<u32, 2040>;     // [QT, W]
var<workgroup> lut_tile: array<vec4<u32>, 512>;  // [CC, 16, MCH]


@compute @workgroup_size(256)
fn fused(
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
    let words = params.words;

    // Hash the tile's positions.
    for (var e = lid; e < QT * words; e += 256u) {
        let q = q_tile * QT + e / words;
        var word = 0u;
        if q < params.q_len {
            word = code_word(g, q, e % words);
        }
        codes_tile[e] = word;
    }
    workgroupBarrier();

    let pq = lid % QT;
    let mc = lid / QT;
    let q = q_tile * QT + pq;
    let live = q < params.q_len && mc < MCH && mc0 + mc < params.m_chunks;

    var acc = sums_zero();
    var since_flush = 0u;

    for (var c0 = 0u; c0 < cb; c0 += CC) {
        stage_luts(lid, g, c0, mc0);
        workgroupBarrier();
        if live {
            let c_end = min(CC, cb - c0);
            for (var cw = 0u; cw < c_end; cw += 8u) {
                let word = codes_tile[pq * words + (c0 + cw) / 8u];
                let n_in_word = min(8u, c_end - cw);
                for (var b = 0u; b < n_in_word; b++) {
                    sums_add(&acc, lut_entry(g, c0, cw + b, word, b, mc0, mc));
                }
                since_flush += n_in_word;
                if since_flush >= FLUSH_EVERY {
                    sums_flush(&acc);
                    since_flush = 0u;
                }
            }
        }
        workgroupBarrier();
    }
    if live {
        store_sums(acc, g, q, (mc0 + mc) * 16u);
    }
}
