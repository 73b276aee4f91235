//! What follows a convolution: the elementwise activation its output goes through, so that the
//! learner can fit the tables for the error **after** it (issue 13).
//!
//! Under ReLU an output whose exact and approximate values are both ≤ 0 costs nothing, and
//! under SiLU a very negative one almost nothing; a learner that spends its 16 buckets per
//! codebook on those outputs wastes them. With an [`Activation`] set in
//! [`TrainConfig::activation`](super::TrainConfig::activation), the learner
//!
//! * grows its trees on the activation's output `f(z)` instead of `z` (the conv's output with
//!   its bias), and
//! * refits the tables by majorize–minimize: each step replaces the exact `z` by the target
//!   [`Activation::target`] of the current prediction, a least-squares problem whose solution
//!   lowers `Σ (f(ẑ) − f(z))²` (exactly so for ReLU; for smooth activations through a bound on
//!   the slope), and keeps the best step.
//!
//! The tables still compute the conv's output `z`: the activation itself is not part of the
//! table file, and the model (or the user) applies it as before.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{Error, Result};

/// An elementwise activation `f` applied to the conv's output (bias included), as ONNX defines
/// it.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum Activation {
    /// No activation (`f(z) = z`): the plain output error.
    #[default]
    Identity,
    /// `max(z, 0)`.
    Relu,
    /// `z` for `z ≥ 0`, `α·z` below (ONNX `LeakyRelu`, `0 ≤ α ≤ 1`).
    LeakyRelu(f32),
    /// `min(max(z, lo), hi)` (ONNX `Clip`; ReLU6 is `clip:0,6`).
    Clip(f32, f32),
    /// `1 / (1 + e^−z)`.
    Sigmoid,
    /// `z · sigmoid(z)` (SiLU / swish; ONNX `Sigmoid` then `Mul`).
    Silu,
    /// `max(0, min(1, α·z + β))` (ONNX `HardSigmoid`, default α = 0.2, β = 0.5).
    HardSigmoid(f32, f32),
    /// `z · max(0, min(1, z/6 + 1/2))` (ONNX `HardSwish`).
    HardSwish,
}

fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

impl Activation {
    /// Every kind, with ONNX's default parameters, for the help text and tests.
    pub const KINDS: &'static [&'static str] = &[
        "none",
        "relu",
        "leaky:ALPHA",
        "clip:LO,HI",
        "sigmoid",
        "silu",
        "hardsigmoid[:ALPHA,BETA]",
        "hardswish",
    ];

    /// Whether this is [`Activation::Identity`].
    pub fn is_identity(self) -> bool {
        self == Activation::Identity
    }

    /// `f(z)`.
    pub fn apply(self, z: f64) -> f64 {
        match self {
            Activation::Identity => z,
            Activation::Relu => z.max(0.0),
            Activation::LeakyRelu(a) => {
                if z >= 0.0 {
                    z
                } else {
                    a as f64 * z
                }
            }
            Activation::Clip(lo, hi) => z.max(lo as f64).min(hi as f64),
            Activation::Sigmoid => sigmoid(z),
            Activation::Silu => z * sigmoid(z),
            Activation::HardSigmoid(a, b) => (a as f64 * z + b as f64).clamp(0.0, 1.0),
            Activation::HardSwish => z * (z / 6.0 + 0.5).clamp(0.0, 1.0),
        }
    }

    /// `f'(z)` (at a kink, the slope on the right).
    pub fn derivative(self, z: f64) -> f64 {
        match self {
            Activation::Identity => 1.0,
            Activation::Relu => (z >= 0.0) as u8 as f64,
            Activation::LeakyRelu(a) => {
                if z >= 0.0 {
                    1.0
                } else {
                    a as f64
                }
            }
            Activation::Clip(lo, hi) => (lo as f64..hi as f64).contains(&z) as u8 as f64,
            Activation::Sigmoid => {
                let s = sigmoid(z);
                s * (1.0 - s)
            }
            Activation::Silu => {
                let s = sigmoid(z);
                s * (1.0 + z * (1.0 - s))
            }
            Activation::HardSigmoid(a, b) => {
                let u = a as f64 * z + b as f64;
                if (0.0..1.0).contains(&u) {
                    a as f64
                } else {
                    0.0
                }
            }
            Activation::HardSwish => {
                if z < -3.0 {
                    0.0
                } else if z < 3.0 {
                    (2.0 * z + 3.0) / 6.0
                } else {
                    1.0
                }
            }
        }
    }

    /// `L = sup f'²`: the curvature bound of the majorize–minimize step.
    fn slope_bound_sq(self) -> f64 {
        match self {
            Activation::Identity | Activation::Relu | Activation::Clip(..) => 1.0,
            Activation::LeakyRelu(a) => (a as f64).abs().max(1.0).powi(2),
            Activation::Sigmoid => 1.0 / 16.0,
            // max of σ(z)(1 + z(1 − σ(z))) is 1.09984, at z ≈ 2.3994.
            Activation::Silu => 1.1_f64.powi(2),
            Activation::HardSigmoid(a, _) => (a as f64).powi(2).max(f64::MIN_POSITIVE),
            Activation::HardSwish => 1.5 * 1.5,
        }
    }

    /// The least-squares target of one majorize–minimize step for an output whose exact
    /// pre-activation value is `z` and whose current prediction is `zhat`: minimising
    /// `(ẑ − target)²` lowers a bound of `(f(ẑ) − f(z))²` that touches it at `zhat`.
    ///
    /// * Where `f(zhat) = f(z)` (e.g. both ≤ 0 under ReLU) the target is `zhat`: no cost.
    /// * Where `f` is flat at `zhat` but not between `zhat` and `z` (ReLU with `zhat ≤ 0 < z`,
    ///   a saturated clip), the slope says nothing and the target is `z`.
    /// * Otherwise one gradient step of length `1/L`: `zhat − (f(zhat) − f(z))·f'(zhat)/L`
    ///   (for ReLU's linear part, and for the identity, exactly `z`).
    pub fn target(self, z: f64, zhat: f64) -> f64 {
        let diff = self.apply(zhat) - self.apply(z);
        if diff == 0.0 || zhat == z {
            return zhat;
        }
        let l = self.slope_bound_sq();
        let d = self.derivative(zhat);
        let secant = diff / (zhat - z);
        if d * d < 1e-6 * l && secant * secant >= 1e-6 * l {
            return z;
        }
        zhat - diff * d / l
    }

    /// The squared error after the activation, `(f(ẑ) − f(z))²`.
    pub fn loss(self, z: f64, zhat: f64) -> f64 {
        (self.apply(zhat) - self.apply(z)).powi(2)
    }

    /// The activation an ONNX node applies, if it is one of these: `op` is the node's
    /// `op_type`, `attr(name)` its float attributes. `Clip`'s bounds (inputs since opset 11)
    /// are passed as `clip` when known. SiLU (`Sigmoid` then `Mul`) is found by the caller.
    pub fn from_onnx(
        op: &str,
        attr: &dyn Fn(&str) -> Option<f32>,
        clip: Option<(f32, f32)>,
    ) -> Option<Activation> {
        Some(match op {
            "Relu" => Activation::Relu,
            "LeakyRelu" => Activation::LeakyRelu(attr("alpha").unwrap_or(0.01)),
            "Sigmoid" => Activation::Sigmoid,
            "HardSigmoid" => {
                Activation::HardSigmoid(attr("alpha").unwrap_or(0.2), attr("beta").unwrap_or(0.5))
            }
            "HardSwish" => Activation::HardSwish,
            "Clip" => {
                let (lo, hi) = clip.or_else(|| Some((attr("min")?, attr("max")?)))?;
                Activation::Clip(lo, hi)
            }
            _ => return None,
        })
    }

    fn check(self) -> Result<Activation> {
        let bad = |m: String| Err(Error::Argument(m));
        match self {
            Activation::LeakyRelu(a) if !(a.is_finite() && (0.0..=1.0).contains(&a)) => {
                bad(format!("leaky ReLU slope α = {a}; it must be in [0, 1]"))
            }
            Activation::Clip(lo, hi) if !(lo.is_finite() && hi.is_finite() && lo < hi) => bad(
                format!("clip bounds {lo}, {hi}; they must be finite with lo < hi"),
            ),
            Activation::HardSigmoid(a, b) if !(a.is_finite() && b.is_finite() && a > 0.0) => bad(
                format!("hard sigmoid α = {a}, β = {b}; α must be finite and > 0, β finite"),
            ),
            a => Ok(a),
        }
    }
}

impl fmt::Display for Activation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Activation::Identity => f.write_str("none"),
            Activation::Relu => f.write_str("relu"),
            Activation::LeakyRelu(a) => write!(f, "leaky:{a}"),
            Activation::Clip(lo, hi) => write!(f, "clip:{lo},{hi}"),
            Activation::Sigmoid => f.write_str("sigmoid"),
            Activation::Silu => f.write_str("silu"),
            Activation::HardSigmoid(a, b) => write!(f, "hardsigmoid:{a},{b}"),
            Activation::HardSwish => f.write_str("hardswish"),
        }
    }
}

impl FromStr for Activation {
    type Err = Error;
    /// `none`, `relu`, `leaky:α`, `clip:lo,hi`, `sigmoid`, `silu`, `hardsigmoid[:α,β]`,
    /// `hardswish` (what [`Display`](fmt::Display) writes).
    fn from_str(s: &str) -> Result<Activation> {
        let s = s.trim();
        let (kind, args) = match s.split_once(':') {
            Some((k, a)) => (k, Some(a)),
            None => (s, None),
        };
        let nums = |a: &str, n: usize| -> Result<Vec<f32>> {
            let v: Vec<f32> = a
                .split(',')
                .map(|x| x.trim().parse::<f32>())
                .collect::<std::result::Result<_, _>>()
                .map_err(|e| Error::Argument(format!("activation {s:?}: {e}")))?;
            if v.len() != n {
                return Err(Error::Argument(format!(
                    "activation {s:?} takes {n} number(s), got {}",
                    v.len()
                )));
            }
            Ok(v)
        };
        let plain = |a: Activation| match args {
            None => Ok(a),
            Some(_) => Err(Error::Argument(format!(
                "activation {s:?}: {kind} takes no parameters"
            ))),
        };
        let a = match kind {
            "none" | "identity" => plain(Activation::Identity)?,
            "relu" => plain(Activation::Relu)?,
            "sigmoid" => plain(Activation::Sigmoid)?,
            "silu" | "swish" => plain(Activation::Silu)?,
            "hardswish" => plain(Activation::HardSwish)?,
            "leaky" | "leakyrelu" => {
                let v = nums(args.unwrap_or("0.01"), 1)?;
                Activation::LeakyRelu(v[0])
            }
            "clip" => {
                let a = args.ok_or_else(|| {
                    Error::Argument(format!("activation {s:?}: clip needs bounds, clip:LO,HI"))
                })?;
                let v = nums(a, 2)?;
                Activation::Clip(v[0], v[1])
            }
            "hardsigmoid" => {
                let v = nums(args.unwrap_or("0.2,0.5"), 2)?;
                Activation::HardSigmoid(v[0], v[1])
            }
            _ => {
                return Err(Error::Argument(format!(
                    "activation {s:?}; expected one of {}",
                    Activation::KINDS.join(", ")
                )))
            }
        };
        a.check()
            .map_err(|e| Error::Argument(format!("activation {s:?}: {e}")))
    }
}

impl Serialize for Activation {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Activation {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: &[Activation] = &[
        Activation::Identity,
        Activation::Relu,
        Activation::LeakyRelu(0.1),
        Activation::Clip(0.0, 6.0),
        Activation::Sigmoid,
        Activation::Silu,
        Activation::HardSigmoid(0.2, 0.5),
        Activation::HardSwish,
    ];

    #[test]
    fn names_round_trip() {
        for &a in ALL {
            let s = a.to_string();
            assert_eq!(s.parse::<Activation>().unwrap(), a, "{s}");
            let j = serde_json::to_string(&a).unwrap();
            assert_eq!(serde_json::from_str::<Activation>(&j).unwrap(), a);
        }
        assert_eq!(
            "hardsigmoid".parse::<Activation>().unwrap(),
            Activation::HardSigmoid(0.2, 0.5)
        );
        for bad in ["tanh", "clip", "clip:6,0", "leaky:2", "relu:1", "leaky:x"] {
            let e = bad.parse::<Activation>().unwrap_err().to_string();
            assert!(e.contains(bad), "{bad}: {e}");
        }
    }

    /// The derivative agrees with a central difference away from kinks.
    #[test]
    fn derivatives_match_finite_differences() {
        for &a in ALL {
            for i in -80..=80 {
                let z = i as f64 * 0.1 + 0.013;
                let h = 1e-6;
                let fd = (a.apply(z + h) - a.apply(z - h)) / (2.0 * h);
                assert!(
                    (fd - a.derivative(z)).abs() < 1e-5,
                    "{a} at {z}: f' = {}, finite difference {fd}",
                    a.derivative(z)
                );
                assert!(a.derivative(z).powi(2) <= a.slope_bound_sq() * (1.0 + 1e-6));
            }
        }
    }

    /// One step towards the target never raises the loss after the activation (the
    /// majorize–minimize property, checked pointwise), and for ReLU is exact.
    #[test]
    fn targets_do_not_raise_the_loss() {
        for &a in ALL {
            for i in -40..=40 {
                for j in -40..=40 {
                    let (z, zhat) = (i as f64 * 0.25, j as f64 * 0.25 + 0.01);
                    let t = a.target(z, zhat);
                    assert!(
                        a.loss(z, t) <= a.loss(z, zhat) + 1e-12,
                        "{a}: z {z}, ẑ {zhat}, target {t}: loss {} > {}",
                        a.loss(z, t),
                        a.loss(z, zhat)
                    );
                }
            }
        }
        let r = Activation::Relu;
        assert_eq!(r.target(-1.0, -2.0), -2.0, "both ≤ 0 cost nothing");
        assert_eq!(r.target(-1.0, 2.0), 0.0);
        assert_eq!(r.target(3.0, -2.0), 3.0, "flat at ẑ: back to z");
        assert_eq!(r.target(3.0, 1.0), 3.0);
        assert_eq!(Activation::Identity.target(3.0, -7.0), 3.0);
    }
}
