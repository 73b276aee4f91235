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
        if !(self.sample_rate.is_finite() && self.sample_rate > 0.0) {
            return bad(format!(
                "sample rate {} Hz is not positive",
                self.sample_rate
            ));
        }
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
}
