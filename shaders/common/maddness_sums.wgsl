// maddness_sums — exact sums of u8 table entries and the output store, shared by the look-up
// kernels accumulate, accumulate_shuffle and fused (the host prepends it after
// maddness_params.wgsl). Needs the kernel's `inv_scale`, `offset` and `output` bindings.
//
// A table word is a vec4<u32> holding the u8 entries of 16 outputs: output 4j + b in byte b of
// component j. Adding words byte-lane-wise keeps two vec4<u32> of 16-bit lane sums (bytes 0, 2
// in `lo`, bytes 1, 3 in `hi`); 16-bit lanes hold at most 257 entries of 255, so they are
// flushed into full u32 sums at least every 248 codebooks. Exact, in any order.
// CPU mirror: maddness::mirror::accumulate_sums and maddness::mirror::apply.

override RAW_SUMS: u32 = 0u;  // 1: write the exact u32 sums as bit patterns instead (tests)

const LANES: u32 = 0x00FF00FFu;

// Codebooks that may be added between two flushes.
const FLUSH_EVERY: u32 = 248u;

struct Sums16 {
    lo: vec4<u32>,  // 16-bit lane sums of bytes 0 and 2 of each word
    hi: vec4<u32>,  // ... of bytes 1 and 3
    s0: vec4<u32>,  // full sums of outputs 4j + 0
    s1: vec4<u32>,  // 4j + 1
    s2: vec4<u32>,  // 4j + 2
    s3: vec4<u32>,  // 4j + 3
}

fn sums_zero() -> Sums16 {
    let z = vec4<u32>(0u);
    return Sums16(z, z, z, z, z, z);
}

// Adds one table word (16 outputs' u8 entries).
fn sums_add(acc: ptr<function, Sums16>, v: vec4<u32>) {
    (*acc).lo += v & vec4<u32>(LANES);
    (*acc).hi += (v >> vec4<u32>(8u)) & vec4<u32>(LANES);
}

// Moves the 16-bit lane sums into the full sums.
fn sums_flush(acc: ptr<function, Sums16>) {
    (*acc).s0 += (*acc).lo & vec4<u32>(0xFFFFu);
    (*acc).s1 += (*acc).hi & vec4<u32>(0xFFFFu);
    (*acc).s2 += (*acc).lo >> vec4<u32>(16u);
    (*acc).s3 += (*acc).hi >> vec4<u32>(16u);
    (*acc).lo = vec4<u32>(0u);
    (*acc).hi = vec4<u32>(0u);
}

// The sum of output 4j + b of a word.
fn sums_get(acc: Sums16, j: u32, b: u32) -> u32 {
    var s = acc.s0[j];
    if b == 1u { s = acc.s1[j]; }
    if b == 2u { s = acc.s2[j]; }
    if b == 3u { s = acc.s3[j]; }
    return s;
}

// Writes output sum s of channel o at index `at` of the NCHW output: s · inv_scale[o] + offset[o],
// or the raw sum when RAW_SUMS = 1.
fn store_one(s: u32, o: u32, at: u32) {
    if RAW_SUMS == 1u {
        output[at] = bitcast<f32>(s);
    } else {
        output[at] = f32(s) * inv_scale[o] + offset[o];
    }
}

// Index in the NCHW output of channel 0 at position q (channel o adds o · OH·OW).
fn output_base(q: u32) -> u32 {
    let positions = params.geo.out_h * params.geo.out_w;
    return (q / positions) * params.geo.out_channels * positions + q % positions;
}

// Flushes the sums of position q (and, when `both`, of position qb) and writes their outputs
// m_first .. m_first + 16 of group g (those below the group's output count). One loop serves
// both positions so that kernels with two positions per invocation share the index work.
fn store_sums2(sums: Sums16, sums_b: Sums16, both: bool, g: u32, q: u32, qb: u32, m_first: u32) {
    var acc = sums;
    var acc_b = sums_b;
    sums_flush(&acc);
    sums_flush(&acc_b);
    let mg = params.geo.out_per_group;
    let positions = params.geo.out_h * params.geo.out_w;
    let at = output_base(q);
    let at_b = output_base(qb);
    for (var j = 0u; j < 4u; j++) {
        for (var b = 0u; b < 4u; b++) {
            let m = m_first + 4u * j + b;
            if m >= mg {
                return;
            }
            let o = g * mg + m;
            store_one(sums_get(acc, j, b), o, at + o * positions);
            if both {
                store_one(sums_get(acc_b, j, b), o, at_b + o * positions);
            }
        }
    }
}

// store_sums2 for one position.
fn store_sums(sums: Sums16, g: u32, q: u32, m_first: u32) {
    store_sums2(sums, sums, false, g, q, q, m_first);
}
