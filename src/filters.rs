//! Fixed, well-known filters written as convolution layers, for demos and tests: the image
//! filters of the MADDNESS paper's filtering experiment (a 3×3 Sobel pair and a 5×5 Gaussian
//! pair over RGB windows) and a bank of band-pass FIR filters for audio (windowed sinc,
//! log-spaced bands).
//!
//! Pure computation, no file I/O: the same definitions serve the examples, the tests and the
//! web demo (wasm). Layers follow the crate's conventions: conv2d weight `O×C×KH×KW` over an
//! `N×3×H×W` RGB input in [0, 1]; conv1d weight `O×1×K` over an `N×1×L` signal.

use crate::error::{Error, Result};
use crate::spec::ConvSpec;
use crate::tensor::Tensor;

/// A sample rate must be a finite number above 0 Hz.
fn check_sample_rate(rate: f64) -> Result<()> {
    if rate.is_finite() && rate > 0.0 {
        Ok(())
    } else {
        Err(Error::Argument(format!(
            "sample rate {rate} Hz is not positive"
        )))
    }
}

/// 3×3 Sobel kernel of the horizontal gradient (row-major, `[ky][kx]`): positive where the
/// image gets brighter to the right.
pub const SOBEL_X: [f32; 9] = [-1.0, 0.0, 1.0, -2.0, 0.0, 2.0, -1.0, 0.0, 1.0];
/// 3×3 Sobel kernel of the vertical gradient: positive where the image gets brighter
/// downwards.
pub const SOBEL_Y: [f32; 9] = [-1.0, -2.0, -1.0, 0.0, 0.0, 0.0, 1.0, 2.0, 1.0];

/// A normalised `k×k` Gaussian kernel (row-major, sums to 1) with standard deviation `sigma`
/// pixels, centred on the middle tap (`k` odd).
pub fn gaussian(k: usize, sigma: f64) -> Vec<f32> {
    let r = (k / 2) as f64;
    let mut w: Vec<f64> = (0..k * k)
        .map(|i| {
            let (y, x) = ((i / k) as f64 - r, (i % k) as f64 - r);
            (-(x * x + y * y) / (2.0 * sigma * sigma)).exp()
        })
        .collect();
    let s: f64 = w.iter().sum();
    w.iter_mut().for_each(|v| *v /= s);
    w.into_iter().map(|v| v as f32).collect()
}

/// A pair of image filters of the MADDNESS paper's filtering experiment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageFilter {
    /// 3×3 Sobel, horizontal ([`SOBEL_X`]) then vertical ([`SOBEL_Y`]) gradient.
    Sobel,
    /// 5×5 Gaussians with σ = 1 then σ = 2 pixels, each summing to 1.
    Gaussian,
}

impl ImageFilter {
    /// Both filters, in a fixed order.
    pub const ALL: [ImageFilter; 2] = [ImageFilter::Sobel, ImageFilter::Gaussian];

    /// `"sobel"` or `"gaussian"`.
    pub fn name(self) -> &'static str {
        match self {
            ImageFilter::Sobel => "sobel",
            ImageFilter::Gaussian => "gaussian",
        }
    }

    /// The filter named `name` (`"sobel"` or `"gaussian"`); [`Error::Argument`] otherwise.
    pub fn parse(name: &str) -> Result<ImageFilter> {
        match name {
            "sobel" => Ok(ImageFilter::Sobel),
            "gaussian" => Ok(ImageFilter::Gaussian),
            other => Err(Error::Argument(format!(
                "unknown image filter {other:?}; expected \"sobel\" or \"gaussian\""
            ))),
        }
    }

    /// Kernel side K (3 for Sobel, 5 for Gaussian).
    pub fn kernel_size(self) -> usize {
        match self {
            ImageFilter::Sobel => 3,
            ImageFilter::Gaussian => 5,
        }
    }

    /// The two `K×K` kernels (row-major).
    pub fn kernels(self) -> [Vec<f32>; 2] {
        match self {
            ImageFilter::Sobel => [SOBEL_X.to_vec(), SOBEL_Y.to_vec()],
            ImageFilter::Gaussian => [gaussian(5, 1.0), gaussian(5, 2.0)],
        }
    }

    /// The pair as one conv2d layer over RGB (no bias, stride 1, zero `padding` on every side):
    /// see [`ColourMix`] for how the three channels enter. Returns the spec and the weight.
    pub fn layer(self, mix: ColourMix, padding: usize) -> (ConvSpec, Tensor) {
        let k = self.kernel_size();
        let filters = self.kernels();
        let cin = 3;
        let cout = match mix {
            ColourMix::Mean => 2,
            ColourMix::PerChannel => 6,
        };
        let mut spec = ConvSpec::conv2d(cin, cout, k, k);
        spec.padding = vec![padding; 4];
        let mut w = vec![0.0f32; cout * cin * k * k];
        for (j, f) in filters.iter().enumerate() {
            for c in 0..cin {
                let (o, divisor) = match mix {
                    ColourMix::Mean => (j, 3.0),
                    ColourMix::PerChannel => (2 * c + j, 1.0),
                };
                let start = (o * cin + c) * k * k;
                for (dst, &v) in w[start..start + k * k].iter_mut().zip(f) {
                    *dst = v / divisor;
                }
            }
        }
        let weight = Tensor::new(vec![cout, cin, k, k], w)
            .expect("the weight's length is the product of its shape");
        (spec, weight)
    }
}

/// How an [`ImageFilter`] pair reads the three colour channels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColourMix {
    /// Two outputs: output `j` applies filter `j` to the mean of R, G and B. Every window
    /// reads all three channels (D = 3·K²), two output columns: the paper's setting.
    Mean,
    /// Six outputs: output `2·c + j` applies filter `j` to colour channel `c` alone (colour
    /// results, as the web demo shows them).
    PerChannel,
}

/// A bank of band-pass FIR filters with log-spaced bands, designed by the windowed-sinc method
/// (Hamming window), as one conv1d layer `bands×1×taps` with "same" zero padding.
#[derive(Clone, Debug, PartialEq)]
pub struct BandpassBank {
    /// Number of bands (output channels).
    pub bands: usize,
    /// Taps per filter; odd, so that each filter is symmetric with its centre on a sample
    /// (linear phase, delay `(taps − 1)/2` samples, which the "same" padding removes).
    pub taps: usize,
    /// Sample rate in Hz.
    pub sample_rate: f64,
    /// Lower edge of the lowest band, Hz (> 0).
    pub low_hz: f64,
    /// Upper edge of the highest band, Hz (below the Nyquist frequency `sample_rate / 2`).
    pub high_hz: f64,
}

impl Default for BandpassBank {
    /// 32 bands × 255 taps at 16 kHz, edges log-spaced from 150 Hz to 7 kHz (speech).
    fn default() -> Self {
        BandpassBank {
            bands: 32,
            taps: 255,
            sample_rate: 16_000.0,
            low_hz: 150.0,
            high_hz: 7_000.0,
        }
    }
}

impl BandpassBank {
    /// Checks the parameters; the message names the offending value.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Argument(m));
        if self.bands == 0 {
            return bad("a band-pass bank needs at least one band".into());
        }
        if self.taps.is_multiple_of(2) {
            return bad(format!(
                "band-pass filters need an odd number of taps, got {}",
                self.taps
            ));
        }
        check_sample_rate(self.sample_rate)?;
        let nyquist = self.sample_rate / 2.0;
        if !(self.low_hz > 0.0 && self.low_hz < self.high_hz && self.high_hz < nyquist) {
            return bad(format!(
                "band edges need 0 < low < high < {nyquist} Hz (the Nyquist frequency), got {} and {}",
                self.low_hz, self.high_hz
            ));
        }
        Ok(())
    }

    /// The `bands + 1` band edges in Hz, geometrically spaced from `low_hz` to `high_hz`; band
    /// `b` spans `edges[b]..edges[b + 1]`.
    pub fn edges(&self) -> Vec<f64> {
        let ratio = (self.high_hz / self.low_hz).powf(1.0 / self.bands as f64);
        (0..=self.bands)
            .map(|i| self.low_hz * ratio.powi(i as i32))
            .collect()
    }

    /// Centre frequency (geometric mean of the edges) of each band, Hz.
    pub fn centres(&self) -> Vec<f64> {
        self.edges()
            .windows(2)
            .map(|e| (e[0] * e[1]).sqrt())
            .collect()
    }

    /// The filters' taps, `bands × taps` row-major: ideal band-pass impulse responses (the
    /// difference of two low-pass sincs) times a Hamming window, each scaled to gain 1 at its
    /// band's centre frequency. Bands narrower than the window's resolution (about
    /// `3.3 · sample_rate / taps` Hz) come out wider than their edges say.
    pub fn taps(&self) -> Result<Vec<f32>> {
        self.validate()?;
        let k = self.taps;
        let mid = (k / 2) as f64;
        let sinc = |x: f64| {
            if x == 0.0 {
                1.0
            } else {
                (std::f64::consts::PI * x).sin() / (std::f64::consts::PI * x)
            }
        };
        let edges = self.edges();
        let mut out = Vec::with_capacity(self.bands * k);
        for b in 0..self.bands {
            let (f1, f2) = (edges[b] / self.sample_rate, edges[b + 1] / self.sample_rate);
            let h: Vec<f64> = (0..k)
                .map(|n| {
                    let m = n as f64 - mid;
                    let window = 0.54
                        - 0.46 * (2.0 * std::f64::consts::PI * n as f64 / (k - 1) as f64).cos();
                    (2.0 * f2 * sinc(2.0 * f2 * m) - 2.0 * f1 * sinc(2.0 * f1 * m)) * window
                })
                .collect();
            // Symmetric taps: the response at f is real up to the linear-phase delay.
            let fc = (f1 * f2).sqrt();
            let gain: f64 = h
                .iter()
                .enumerate()
                .map(|(n, v)| v * (2.0 * std::f64::consts::PI * fc * (n as f64 - mid)).cos())
                .sum();
            out.extend(h.iter().map(|v| (v / gain) as f32));
        }
        Ok(out)
    }

    /// The bank as a conv1d layer (`1` input channel, `bands` outputs, kernel `taps`, stride 1,
    /// zero padding `(taps − 1)/2` on both sides so output sample `t` is centred on input
    /// sample `t`; no bias). Returns the spec and the `bands×1×taps` weight.
    pub fn layer(&self) -> Result<(ConvSpec, Tensor)> {
        let taps = self.taps()?;
        let mut spec = ConvSpec::conv1d(1, self.bands, self.taps);
        spec.padding = vec![self.taps / 2; 2];
        let weight = Tensor::new(vec![self.bands, 1, self.taps], taps)?;
        Ok((spec, weight))
    }
}

/// A rectangular ("shoebox") room with one sound source and one microphone, for room impulse
/// responses by the image-source method (Allen & Berkley, 1979): every wall reflects with the
/// same pressure coefficient `reflection`, each image source contributes
/// `reflection^reflections / (4π·distance)` at delay `distance / speed_of_sound`, placed with a
/// Hann-windowed sinc (fractional delay, ±[`ROOM_SINC_HALF_WIDTH`] taps). No air absorption, no
/// high-pass of the original paper, frequency-independent walls.
#[derive(Clone, Debug, PartialEq)]
pub struct ShoeboxRoom {
    /// Room length, width and height, metres.
    pub size: [f64; 3],
    /// Source position, metres from the room's corner at the origin.
    pub source: [f64; 3],
    /// Microphone position, metres.
    pub mic: [f64; 3],
    /// Pressure reflection coefficient of every wall, in [0, 1).
    pub reflection: f64,
    /// Samples per second of the response.
    pub sample_rate: f64,
    /// Metres per second.
    pub speed_of_sound: f64,
}

/// Half width in taps of the windowed sinc that places each image's arrival.
pub const ROOM_SINC_HALF_WIDTH: usize = 8;

/// Speed of sound in air at 20 °C, m/s.
pub const SPEED_OF_SOUND: f64 = 343.0;

/// The most image sources one response may sum (bounds the work: 2 s in a 60 m³ room is about
/// 2·10^7).
pub const ROOM_MAX_IMAGES: u64 = 1 << 28;

impl ShoeboxRoom {
    /// A room whose walls are set for reverberation time `rt60` seconds: first by Eyring's
    /// formula, `RT60 = 24 ln 10 · V / (−c · S · ln(1 − α))`, `reflection = √(1 − α)`, then
    /// refined until the response's own Schroeder T20 ([`schroeder_rt60`]) is within 2 % of
    /// `rt60` (at most 8 rounds; each computes 0.8·RT60 of the response).
    pub fn with_rt60(
        size: [f64; 3],
        source: [f64; 3],
        mic: [f64; 3],
        rt60: f64,
        sample_rate: f64,
    ) -> Result<ShoeboxRoom> {
        if !(rt60.is_finite() && rt60 > 0.0) {
            return Err(Error::Argument(format!(
                "reverberation time {rt60} s is not a positive number"
            )));
        }
        let mut room = ShoeboxRoom {
            size,
            source,
            mic,
            reflection: 0.0,
            sample_rate,
            speed_of_sound: SPEED_OF_SOUND,
        };
        room.validate()?;
        let [lx, ly, lz] = size;
        let (volume, surface) = (lx * ly * lz, 2.0 * (lx * ly + lx * lz + ly * lz));
        // ln(1 − α) = −24 ln10 · V / (c S RT60); reflection = √(1 − α).
        let log_one_minus_alpha =
            -24.0 * std::f64::consts::LN_10 * volume / (SPEED_OF_SOUND * surface * rt60);
        room.reflection = (0.5 * log_one_minus_alpha).exp();
        room.validate()?;
        // The image sources of an empty shoebox decay more slowly than Eyring's diffuse field
        // (the axial and tangential paths meet few walls): about 1.5× here. Refine the walls
        // on the measured decay, on the first 0.8·RT60 of the response (T20 needs −25 dB).
        let taps = ((0.8 * rt60 * sample_rate).ceil() as usize).max(64);
        for _ in 0..8 {
            let Some(measured) = schroeder_rt60(&room.impulse_response(taps)?, sample_rate) else {
                break;
            };
            if (measured / rt60 - 1.0).abs() < 0.02 {
                break;
            }
            room.reflection = (room.reflection.ln() * measured / rt60).exp();
        }
        Ok(room)
    }

    /// A seeded room for `rt60` seconds: size 4–9 × 3–7 × 2.5–4 m, source and microphone at
    /// least 0.5 m from every wall and 1 m apart (the same seed gives the same room forever).
    pub fn seeded(rt60: f64, sample_rate: f64, seed: u64) -> Result<ShoeboxRoom> {
        let mut rng = crate::rng::SplitMix64::new(seed);
        let mut u = |lo: f64, hi: f64| lo + (hi - lo) * rng.uniform() as f64;
        let size = [u(4.0, 9.0), u(3.0, 7.0), u(2.5, 4.0)];
        let place = |u: &mut dyn FnMut(f64, f64) -> f64| [0, 1, 2].map(|i| u(0.5, size[i] - 0.5));
        let source = place(&mut u);
        let mut mic = place(&mut u);
        while (0..3).map(|i| (mic[i] - source[i]).powi(2)).sum::<f64>() < 1.0 {
            mic = place(&mut u);
        }
        ShoeboxRoom::with_rt60(size, source, mic, rt60, sample_rate)
    }

    /// Checks the room; the message names the offending value.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Argument(m));
        for (i, &l) in self.size.iter().enumerate() {
            if !(l.is_finite() && l > 0.0) {
                return bad(format!("room size[{i}] = {l} m is not positive"));
            }
            for (what, p) in [("source", self.source), ("microphone", self.mic)] {
                if !(p[i] > 0.0 && p[i] < l) {
                    return bad(format!(
                        "{what}[{i}] = {} m is outside the room (0 … {l} m)",
                        p[i]
                    ));
                }
            }
        }
        if !(0.0..1.0).contains(&self.reflection) {
            return bad(format!(
                "wall reflection {} is outside [0, 1)",
                self.reflection
            ));
        }
        check_sample_rate(self.sample_rate)?;
        if !(self.speed_of_sound.is_finite() && self.speed_of_sound > 0.0) {
            return bad(format!(
                "speed of sound {} m/s is not positive",
                self.speed_of_sound
            ));
        }
        Ok(())
    }

    /// Distance from source to microphone, metres.
    pub fn direct_distance(&self) -> f64 {
        (0..3)
            .map(|i| (self.source[i] - self.mic[i]).powi(2))
            .sum::<f64>()
            .sqrt()
    }

    /// The first `taps` samples of the room's impulse response (pressure at the microphone for
    /// a unit impulse at the source, time 0 at tap 0: the direct sound arrives at tap
    /// `direct_distance · sample_rate / speed_of_sound`). Every image whose arrival falls
    /// within the response is summed (in parallel over image rows).
    pub fn impulse_response(&self, taps: usize) -> Result<Vec<f32>> {
        self.validate()?;
        if taps == 0 {
            return Err(Error::Argument(
                "a room response needs at least 1 tap".into(),
            ));
        }
        let (fs, c) = (self.sample_rate, self.speed_of_sound);
        let half = ROOM_SINC_HALF_WIDTH as f64;
        let r_max = (taps as f64 + half) * c / fs;
        let n_f = self.size.map(|l| (r_max / (2.0 * l)).ceil() + 1.0);
        let images = n_f.iter().map(|&k| 2.0 * (2.0 * k + 1.0)).product::<f64>();
        if images.is_nan() || images > ROOM_MAX_IMAGES as f64 {
            return Err(Error::Argument(format!(
                "{taps} taps of this room need {images} image sources, above the limit of \
                 {ROOM_MAX_IMAGES}; use fewer taps or a larger room"
            )));
        }
        let n = n_f.map(|k| k as i64);
        // Per axis, every (offset, reflection count) of the images along it: position
        // (1 − 2q)·s + 2·k·L, reflections |k − q| + |k|.
        let axis = |i: usize| -> Vec<(f64, i32)> {
            let (l, s, m) = (self.size[i], self.source[i], self.mic[i]);
            let mut v = Vec::new();
            for k in -n[i]..=n[i] {
                for q in 0..2i64 {
                    let pos = (1 - 2 * q) as f64 * s + 2.0 * k as f64 * l;
                    v.push((pos - m, ((k - q).abs() + k.abs()) as i32));
                }
            }
            v
        };
        let (ax, ay, az) = (axis(0), axis(1), axis(2));
        let beta = self.reflection;
        use rayon::prelude::*;
        let h = ax
            .par_iter()
            .fold(
                || vec![0f64; taps],
                |mut h, &(dx, rx)| {
                    for &(dy, ry) in &ay {
                        let dxy = dx * dx + dy * dy;
                        if dxy.sqrt() > r_max {
                            continue;
                        }
                        for &(dz, rz) in &az {
                            let d = (dxy + dz * dz).sqrt();
                            if d > r_max {
                                continue;
                            }
                            let gain = beta.powi(rx + ry + rz) / (4.0 * std::f64::consts::PI * d);
                            add_windowed_sinc(&mut h, d * fs / c, gain);
                        }
                    }
                    h
                },
            )
            .reduce(
                || vec![0f64; taps],
                |mut a, b| {
                    a.iter_mut().zip(&b).for_each(|(a, b)| *a += b);
                    a
                },
            );
        Ok(h.iter().map(|&v| v as f32).collect())
    }
}

/// Adds `gain · sinc(n − t) · hann((n − t) / W)` to every tap `n` within `W` of `t`.
fn add_windowed_sinc(h: &mut [f64], t: f64, gain: f64) {
    use std::f64::consts::PI;
    let half = ROOM_SINC_HALF_WIDTH as f64;
    let lo = (t - half).ceil().max(0.0) as usize;
    let hi = ((t + half).floor() as usize).min(h.len().saturating_sub(1));
    // sin(π(n − t)) = −(−1)^n · sin(πt): one sine per image.
    let s0 = (PI * t).sin();
    for (n, out) in h.iter_mut().enumerate().take(hi + 1).skip(lo) {
        let x = n as f64 - t;
        let sinc = if x.abs() < 1e-9 {
            1.0
        } else {
            let sign = if n % 2 == 0 { -1.0 } else { 1.0 };
            sign * s0 / (PI * x)
        };
        *out += gain * sinc * 0.5 * (1.0 + (PI * x / half).cos());
    }
}

/// The reverberation time of an impulse response from its Schroeder backward-integrated energy
/// decay: a least-squares line through the decay between −5 and −25 dB (T20), extrapolated to
/// 60 dB. `None` when the decay never reaches −25 dB within the response.
pub fn schroeder_rt60(h: &[f32], sample_rate: f64) -> Option<f64> {
    let mut tail = vec![0f64; h.len() + 1];
    for i in (0..h.len()).rev() {
        tail[i] = tail[i + 1] + (h[i] as f64).powi(2);
    }
    let total = tail[0];
    if total <= 0.0 {
        return None;
    }
    let db = |i: usize| 10.0 * (tail[i] / total).max(1e-300).log10();
    let start = (0..h.len()).find(|&i| db(i) <= -5.0)?;
    let end = (start..h.len()).find(|&i| db(i) <= -25.0)?;
    let (mut sx, mut sy, mut sxx, mut sxy) = (0.0, 0.0, 0.0, 0.0);
    let count = (end - start + 1) as f64;
    for i in start..=end {
        let (x, y) = (i as f64 / sample_rate, db(i));
        sx += x;
        sy += y;
        sxx += x * x;
        sxy += x * y;
    }
    let slope = (count * sxy - sx * sy) / (count * sxx - sx * sx);
    (slope < 0.0).then(|| -60.0 / slope)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reference::conv_reference;

    #[test]
    fn sobel_on_a_ramp_measures_its_slope() {
        // Every channel = 0.1·x: the horizontal gradient is (1+2+1)·2·0.1 = 0.8 everywhere
        // inside, the vertical one 0.
        let (h, w) = (6, 7);
        let data: Vec<f32> = (0..3 * h * w).map(|i| 0.1 * (i % w) as f32).collect();
        let x = Tensor::new(vec![1, 3, h, w], data).unwrap();
        for mix in [ColourMix::Mean, ColourMix::PerChannel] {
            let (spec, weight) = ImageFilter::Sobel.layer(mix, 0);
            let y = conv_reference(&spec, &x, &weight, None).unwrap();
            let (o, p) = (y.shape()[1], y.shape()[2] * y.shape()[3]);
            for m in 0..o {
                let want = if m % 2 == 0 { 0.8 } else { 0.0 };
                for i in 0..p {
                    let v = y.data()[m * p + i];
                    assert!(
                        (v - want).abs() < 1e-5,
                        "{mix:?} output {m} position {i}: {v}, expected {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn gaussians_keep_a_constant_image_and_read_the_right_channels() {
        let (spec, w) = ImageFilter::Gaussian.layer(ColourMix::PerChannel, 2);
        spec.check_weight(w.shape()).unwrap();
        for o in 0..6 {
            for c in 0..3 {
                let s: f32 = w.data()[(o * 3 + c) * 25..][..25].iter().sum();
                let want = if c == o / 2 { 1.0 } else { 0.0 };
                assert!((s - want).abs() < 1e-6, "output {o} channel {c}: sum {s}");
            }
        }
        // Channel values 0.2, 0.5, 0.8: the mean is 0.5 for both blurs of the mean mix.
        let data: Vec<f32> = (0..3 * 64).map(|i| [0.2, 0.5, 0.8][i / 64]).collect();
        let x = Tensor::new(vec![1, 3, 8, 8], data).unwrap();
        let (spec, w) = ImageFilter::Gaussian.layer(ColourMix::Mean, 0);
        let y = conv_reference(&spec, &x, &w, None).unwrap();
        for (i, v) in y.data().iter().enumerate() {
            assert!((v - 0.5).abs() < 1e-6, "index {i}: {v}, expected 0.5");
        }
        // The σ = 2 kernel is flatter than the σ = 1 one.
        let [g1, g2] = ImageFilter::Gaussian.kernels();
        assert!(g2[12] < g1[12], "centre taps {} vs {}", g2[12], g1[12]);
        assert_eq!(ImageFilter::parse("sobel").unwrap(), ImageFilter::Sobel);
        assert!(ImageFilter::parse("box").is_err());
    }

    /// Amplitude of the steady-state response of filter `b` to a unit sine at `hz`, measured
    /// by running the layer through the f64 reference (away from the signal's ends).
    fn sine_gain(bank: &BandpassBank, spec: &ConvSpec, w: &Tensor, b: usize, hz: f64) -> f64 {
        let len = 4 * bank.taps;
        let x: Vec<f32> = (0..len)
            .map(|t| (std::f64::consts::TAU * hz * t as f64 / bank.sample_rate).sin() as f32)
            .collect();
        let x = Tensor::new(vec![1, 1, len], x).unwrap();
        let y = conv_reference(spec, &x, w, None).unwrap();
        let row = &y.data()[b * len..(b + 1) * len];
        let inner = &row[bank.taps..len - bank.taps];
        let rms =
            (inner.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / inner.len() as f64).sqrt();
        rms * std::f64::consts::SQRT_2
    }

    #[test]
    fn bandpass_filters_pass_their_band_and_stop_far_away() {
        let bank = BandpassBank::default();
        let (spec, w) = bank.layer().unwrap();
        assert_eq!(w.shape(), &[32, 1, 255]);
        let centres = bank.centres();
        for b in 0..bank.bands {
            let taps = &w.data()[b * bank.taps..(b + 1) * bank.taps];
            for n in 0..bank.taps / 2 {
                assert_eq!(
                    taps[n],
                    taps[bank.taps - 1 - n],
                    "band {b} tap {n} not symmetric"
                );
            }
            let dc: f64 = taps.iter().map(|&v| v as f64).sum();
            assert!(dc.abs() < 0.02, "band {b}: DC gain {dc}");
        }
        for b in [8, 16, 24, 31] {
            let pass = sine_gain(&bank, &spec, &w, b, centres[b]);
            assert!(
                (pass - 1.0).abs() < 0.02,
                "band {b} at {:.0} Hz: gain {pass}",
                centres[b]
            );
            for far in [centres[b] / 2.5, (centres[b] * 2.5).min(7_900.0)] {
                let stop = sine_gain(&bank, &spec, &w, b, far);
                assert!(stop < 0.02, "band {b} at {far:.0} Hz: gain {stop}");
            }
        }
        let bad = BandpassBank {
            taps: 256,
            ..BandpassBank::default()
        };
        assert!(bad.layer().unwrap_err().to_string().contains("256"));
        let bad = BandpassBank {
            high_hz: 9_000.0,
            ..BandpassBank::default()
        };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn room_response_arrives_on_time_and_decays_at_its_rt60() {
        for (rt60, seed) in [(0.25, 1u64), (0.5, 2), (1.0, 3)] {
            let room = ShoeboxRoom::seeded(rt60, 16_000.0, seed).unwrap();
            let taps = (rt60 * 16_000.0 * 1.2) as usize;
            let h = room.impulse_response(taps).unwrap();
            // The direct sound: the first tap above 1 % of the peak is within a tap of the
            // distance's arrival time, and its amplitude is 1/(4π d) within the sinc's error.
            let arrival = room.direct_distance() * 16_000.0 / SPEED_OF_SOUND;
            let peak = h.iter().fold(0f32, |m, v| m.max(v.abs()));
            let first = h.iter().position(|v| v.abs() > 0.3 * peak).unwrap();
            assert!(
                (first as f64 - arrival).abs() <= 1.0,
                "rt60 {rt60}: first arrival at tap {first}, expected {arrival:.2}"
            );
            let direct = 1.0 / (4.0 * std::f64::consts::PI * room.direct_distance());
            let near = h[arrival.round() as usize] as f64;
            assert!(
                near > 0.5 * direct,
                "rt60 {rt60}: tap {} = {near}, direct path {direct}",
                arrival.round()
            );
            let t = schroeder_rt60(&h, 16_000.0).unwrap();
            assert!(
                (t / rt60 - 1.0).abs() < 0.1,
                "rt60 {rt60}: Schroeder T20 says {t:.3} s (room {room:?})"
            );
        }
    }

    #[test]
    fn rooms_are_seeded_and_checked() {
        let a = ShoeboxRoom::seeded(0.4, 16_000.0, 9).unwrap();
        assert_eq!(a, ShoeboxRoom::seeded(0.4, 16_000.0, 9).unwrap());
        assert_ne!(a, ShoeboxRoom::seeded(0.4, 16_000.0, 10).unwrap());
        assert!(a.direct_distance() >= 1.0);
        let mut outside = a.clone();
        outside.mic[1] = a.size[1] + 0.1;
        let e = outside.impulse_response(100).unwrap_err().to_string();
        assert!(e.contains("microphone[1]") && e.contains("outside"), "{e}");
        let e = ShoeboxRoom::with_rt60(a.size, a.source, a.mic, -1.0, 16_000.0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("-1 s"), "{e}");
        assert!(a.impulse_response(0).is_err());
        let e = a.impulse_response(usize::MAX / 4).unwrap_err().to_string();
        assert!(e.contains("image sources"), "{e}");
    }
}
