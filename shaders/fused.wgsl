// fused — MADDNESS encode and accumulate in one kernel: a workgroup first hashes the windows of
// its positions into 4-bit codes held in workgroup memory (exactly as `encode`), then sums the
// 8-bit table entries they select (exactly as `accumulate`), so the codes never travel through
// global memory and the layer is one dispatch. When a layer's outputs span several workgroup
// tiles, each of them hashes its positions again.
//
// Workgroup: QT = floor(256 / MCH) positions × MCH chunks of 16 outputs; codes of the QT
// positions, W = ceil(CB/8) words each, in workgroup memory (QT·W ≤ 2048 words = 8 KiB); table
// rows of CC codebooks × 16 codes × MCH chunks staged as in `accumulate` (CC·MCH ≤ 32 = 8 KiB).
//
// Bindings (group 0):
//   0 params:     uniform MaddParams (as in encode.wgsl)
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
@group(0) @binding(1) var<storage, read> input: array<f32>;
@group(0) @binding(2) var<storage, read> splits: array<vec4<i32>>;
@group(0) @binding(3) var<storage, read> thresholds: array<f32>;
@group(0) @binding(4) var<storage, read> luts: array<vec4<u32>>;
@group(0) @binding(5) var<storage, read> inv_scale: array<f32>;
@group(0) @binding(6) var<storage, read> offset: array<f32>;
@group(0) @binding(7) var<storage, read_write> output: array<f32>;

var<workgroup> codes_tile: array<u32, 2048>;     // [QT, W]
var<workgroup> lut_tile: array<vec4<u32>, 512>;  // [CC, 16, MCH]

const LANES: u32 = 0x00FF00FFu;

/// The code word `w` (codebooks 8w .. 8w+8) of position q in group g: `encode`'s loop.
fn code_word(g: u32, q: u32, w: u32) -> u32 {
    let positions = params.out_h * params.out_w;
    let n = q / positions;
    let p = q % positions;
    let iy0 = i32((p / params.out_w) * params.stride_h) - i32(params.pad_top);
    let ix0 = i32((p % params.out_w) * params.stride_w) - i32(params.pad_left);
    let plane = params.in_h * params.in_w;
    let base = (n * params.in_channels + g * params.in_per_group) * plane;
    let c_end = min(params.codebooks, 8u * w + 8u);
    var word = 0u;
    for (var c = 8u * w; c < c_end; c++) {
        let gc = g * params.codebooks + c;
        var i = 0u;
        for (var t = 0u; t < 4u; t++) {
            let s = splits[gc * 4u + t];
            let iy = iy0 + s.y;
            let ix = ix0 + s.z;
            var a = 0.0;
            if iy >= 0 && ix >= 0 && u32(iy) < params.in_h && u32(ix) < params.in_w {
                a = input[base + u32(s.x) * plane + u32(iy) * params.in_w + u32(ix)];
            }
            i = 2u * i + select(0u, 1u, a > thresholds[(gc * 4u + t) * 16u + i]);
        }
        word |= i << (4u * (c % 8u));
    }
    return word;
}

@compute @workgroup_size(256)
fn fused(
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    let tile = wid.x + wid.y * nwg.x;
    if tile >= params.groups * params.m_tiles * params.q_tiles {
        return;
    }
    let QT = 256u / MCH;
    let q_tile = tile % params.q_tiles;
    let rest = tile / params.q_tiles;
    let m_tile = rest % params.m_tiles;
    let g = rest / params.m_tiles;
    let cb = params.codebooks;
    let words = params.words;
    let mw = params.m_chunks;
    let mc0 = m_tile * MCH;

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
    let live = q < params.q_len && mc < MCH && mc0 + mc < mw;

    var lo = vec4<u32>(0u);
    var hi = vec4<u32>(0u);
    var s0 = vec4<u32>(0u);
    var s1 = vec4<u32>(0u);
    var s2 = vec4<u32>(0u);
    var s3 = vec4<u32>(0u);
    var since_flush = 0u;

    for (var c0 = 0u; c0 < cb; c0 += CC) {
        for (var e = lid; e < CC * 16u * MCH; e += 256u) {
            let j = e % MCH;
            let row = e / MCH;
            let c = c0 + row / 16u;
            var v = vec4<u32>(0u);
            if c < cb && mc0 + j < mw {
                v = luts[((g * cb + c) * 16u + row % 16u) * mw + mc0 + j];
            }
            lut_tile[e] = v;
        }
        workgroupBarrier();
        if live {
            let c_end = min(CC, cb - c0);
            for (var cw = 0u; cw < c_end; cw += 8u) {
                let word = codes_tile[pq * words + (c0 + cw) / 8u];
                let n_in_word = min(8u, c_end - cw);
                for (var b = 0u; b < n_in_word; b++) {
                    let code = (word >> (4u * b)) & 15u;
                    let v = lut_tile[((cw + b) * 16u + code) * MCH + mc];
                    lo += v & vec4<u32>(LANES);
                    hi += (v >> vec4<u32>(8u)) & vec4<u32>(LANES);
                }
                since_flush += n_in_word;
                if since_flush >= 248u {
                    s0 += lo & vec4<u32>(0xFFFFu);
                    s1 += hi & vec4<u32>(0xFFFFu);
                    s2 += lo >> vec4<u32>(16u);
                    s3 += hi >> vec4<u32>(16u);
                    lo = vec4<u32>(0u);
                    hi = vec4<u32>(0u);
                    since_flush = 0u;
                }
            }
        }
        workgroupBarrier();
    }
    if !live {
        return;
    }
    s0 += lo & vec4<u32>(0xFFFFu);
    s1 += hi & vec4<u32>(0xFFFFu);
    s2 += lo >> vec4<u32>(16u);
    s3 += hi >> vec4<u32>(16u);

    let mg = params.out_per_group;
    let positions = params.out_h * params.out_w;
    let n = q / positions;
    let p = q % positions;
    let m_first = (mc0 + mc) * 16u;
    for (var j = 0u; j < 4u; j++) {
        for (var b = 0u; b < 4u; b++) {
            let m = m_first + 4u * j + b;
            if m >= mg {
                break;
            }
            var s = s0[j];
            if b == 1u { s = s1[j]; }
            if b == 2u { s = s2[j]; }
            if b == 3u { s = s3[j]; }
            let o = g * mg + m;
            output[(n * params.out_channels + o) * positions + p] = f32(s) * inv_scale[o] + offset[o];
        }
    }
}
