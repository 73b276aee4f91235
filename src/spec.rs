//! Convolution parameters (PyTorch / ONNX conventions) and the one place where shapes are
//! computed and checked.
//!
//! * conv2d: input `N×C×H×W`, weight `O×(C/groups)×KH×KW`, bias `O`, output `N×O×OH×OW`.
//! * conv1d: input `N×C×L`, weight `O×(C/groups)×K`, bias `O`, output `N×O×OL`.
//!
//! Padding is per side with zeros, in ONNX `pads` order: 2-D `[top, left, bottom, right]`,
//! 1-D `[left, right]`. Output size per axis:
//!
//! `out = floor((in + pad_begin + pad_end - dilation·(k - 1) - 1) / stride) + 1`, which must be ≥ 1.
//!
//! Internally a conv1d is a conv2d with `H = KH = 1`; [`Geometry`] is that 2-D form, with every
//! size checked to fit the 32-bit index arithmetic of the shaders.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Largest element count or index a shader may compute (`i32::MAX`): the shaders do their index
/// arithmetic in 32 bits, partly signed (positions inside the padding are negative).
pub const MAX_SHADER_INDEX: u64 = i32::MAX as u64;

/// One- or two-dimensional convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConvKind {
    /// Input `N×C×L`, weight `O×(C/groups)×K`.
    Conv1d,
    /// Input `N×C×H×W`, weight `O×(C/groups)×KH×KW`.
    Conv2d,
}

impl ConvKind {
    /// Number of spatial axes (1 or 2).
    pub fn spatial_dims(self) -> usize {
        match self {
            ConvKind::Conv1d => 1,
            ConvKind::Conv2d => 2,
        }
    }
}

impl std::fmt::Display for ConvKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ConvKind::Conv1d => "conv1d",
            ConvKind::Conv2d => "conv2d",
        })
    }
}

/// A convolution layer's parameters, as in `torch.nn.Conv1d` / `Conv2d` with ONNX-style per-side
/// padding. The field names match the `layer.json` files of the data folders, so a spec
/// (de)serialises to the same JSON.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ConvSpec {
    /// conv1d or conv2d.
    pub kind: ConvKind,
    /// Input channels `C` (all groups together).
    pub in_channels: usize,
    /// Output channels `O` (all groups together).
    pub out_channels: usize,
    /// Kernel size per spatial axis: `[KH, KW]` or `[K]`.
    pub kernel: Vec<usize>,
    /// Stride per spatial axis (≥ 1).
    pub stride: Vec<usize>,
    /// Zero padding per side, ONNX order: `[top, left, bottom, right]` or `[left, right]`.
    pub padding: Vec<usize>,
    /// Dilation per spatial axis (≥ 1).
    pub dilation: Vec<usize>,
    /// Groups: input and output channels are split into this many independent convolutions.
    /// `groups == in_channels == out_channels` is a depthwise convolution.
    pub groups: usize,
    /// Whether the layer adds a bias of shape `O`.
    pub bias: bool,
}

impl ConvSpec {
    /// A conv2d with stride 1, no padding, dilation 1, one group and no bias.
    pub fn conv2d(
        in_channels: usize,
        out_channels: usize,
        kernel_h: usize,
        kernel_w: usize,
    ) -> Self {
        ConvSpec {
            kind: ConvKind::Conv2d,
            in_channels,
            out_channels,
            kernel: vec![kernel_h, kernel_w],
            stride: vec![1, 1],
            padding: vec![0, 0, 0, 0],
            dilation: vec![1, 1],
            groups: 1,
            bias: false,
        }
    }

    /// A conv1d with stride 1, no padding, dilation 1, one group and no bias.
    pub fn conv1d(in_channels: usize, out_channels: usize, kernel: usize) -> Self {
        ConvSpec {
            kind: ConvKind::Conv1d,
            in_channels,
            out_channels,
            kernel: vec![kernel],
            stride: vec![1],
            padding: vec![0, 0],
            dilation: vec![1],
            groups: 1,
            bias: false,
        }
    }

    /// The spec that fits a weight tensor's shape: rank 3 gives a conv1d, rank 4 a conv2d, with
    /// `in_channels = groups · weight.shape[1]`, default stride/padding/dilation and `bias`
    /// as given.
    pub fn for_weight(weight_shape: &[usize], groups: usize, bias: bool) -> Result<Self> {
        let mut spec = match weight_shape {
            [o, c, k] => ConvSpec::conv1d(c.saturating_mul(groups), *o, *k),
            [o, c, kh, kw] => ConvSpec::conv2d(c.saturating_mul(groups), *o, *kh, *kw),
            other => {
                return Err(Error::Shape(format!(
                    "weight has shape {other:?}; expected O×(C/groups)×K (conv1d) or \
                     O×(C/groups)×KH×KW (conv2d)"
                )))
            }
        };
        spec.groups = groups;
        spec.bias = bias;
        Ok(spec)
    }

    /// Checks the spec on its own: positive sizes, list lengths, channels divisible by groups.
    pub fn validate(&self) -> Result<()> {
        let dims = self.kind.spatial_dims();
        let list = |name: &str, v: &[usize], len: usize| -> Result<()> {
            if v.len() != len {
                return Err(Error::Spec(format!(
                    "{} {name} needs {len} value(s), got {v:?}",
                    self.kind
                )));
            }
            Ok(())
        };
        list("kernel", &self.kernel, dims)?;
        list("stride", &self.stride, dims)?;
        list("dilation", &self.dilation, dims)?;
        list("padding", &self.padding, 2 * dims)?;
        let positive = |name: &str, v: usize| -> Result<()> {
            if v == 0 {
                Err(Error::Spec(format!("{name} is 0; it must be at least 1")))
            } else {
                Ok(())
            }
        };
        positive("groups", self.groups)?;
        positive("in_channels", self.in_channels)?;
        positive("out_channels", self.out_channels)?;
        for (i, &k) in self.kernel.iter().enumerate() {
            positive(&format!("kernel[{i}]"), k)?;
        }
        for (i, &s) in self.stride.iter().enumerate() {
            positive(&format!("stride[{i}]"), s)?;
        }
        for (i, &d) in self.dilation.iter().enumerate() {
            positive(&format!("dilation[{i}]"), d)?;
        }
        if !self.in_channels.is_multiple_of(self.groups) {
            return Err(Error::Spec(format!(
                "in_channels {} is not divisible by groups {}",
                self.in_channels, self.groups
            )));
        }
        if !self.out_channels.is_multiple_of(self.groups) {
            return Err(Error::Spec(format!(
                "out_channels {} is not divisible by groups {}",
                self.out_channels, self.groups
            )));
        }
        // Saturating: absurd sizes (e.g. from a crafted layer.json) must give an error, not an
        // overflow.
        let window = self
            .kernel
            .iter()
            .fold((self.in_channels / self.groups) as u64, |acc, &k| {
                acc.saturating_mul(k as u64)
            });
        check_index("window length (in_channels/groups × kernel)", window)?;
        check_index("output channels", self.out_channels as u64)?;
        Ok(())
    }

    /// Expected weight shape: `[O, C/groups, KH, KW]` or `[O, C/groups, K]`.
    pub fn weight_shape(&self) -> Vec<usize> {
        let mut s = vec![self.out_channels, self.in_channels / self.groups.max(1)];
        s.extend_from_slice(&self.kernel);
        s
    }

    /// Checks a weight tensor's shape against the spec.
    pub fn check_weight(&self, weight_shape: &[usize]) -> Result<()> {
        self.validate()?;
        let expected = self.weight_shape();
        if weight_shape != expected.as_slice() {
            return Err(Error::Shape(format!(
                "weight has shape {weight_shape:?}, expected {expected:?} for {}",
                self.describe()
            )));
        }
        Ok(())
    }

    /// Checks the bias against the spec: present iff `self.bias`, of shape `[O]`.
    pub fn check_bias(&self, bias_shape: Option<&[usize]>) -> Result<()> {
        match (self.bias, bias_shape) {
            (true, None) => Err(Error::Shape(
                "the spec says the layer has a bias, but none was given".into(),
            )),
            (false, Some(s)) => Err(Error::Shape(format!(
                "a bias of shape {s:?} was given but the spec says the layer has none"
            ))),
            (true, Some(s)) if s != [self.out_channels] => Err(Error::Shape(format!(
                "bias has shape {s:?}, expected [{}]",
                self.out_channels
            ))),
            _ => Ok(()),
        }
    }

    /// The output shape for an input shape (`[N, C, H, W]` or `[N, C, L]`), after checking both.
    pub fn output_shape(&self, input_shape: &[usize]) -> Result<Vec<usize>> {
        Ok(self.geometry(input_shape)?.output_shape(self.kind))
    }

    /// Checks an input shape against the spec and returns the 2-D geometry of the convolution.
    pub fn geometry(&self, input_shape: &[usize]) -> Result<Geometry> {
        self.validate()?;
        let (n, c, h, w) = match (self.kind, input_shape) {
            (ConvKind::Conv1d, &[n, c, l]) => (n, c, 1, l),
            (ConvKind::Conv2d, &[n, c, h, w]) => (n, c, h, w),
            (kind, other) => {
                let want = match kind {
                    ConvKind::Conv1d => "N×C×L",
                    ConvKind::Conv2d => "N×C×H×W",
                };
                return Err(Error::Shape(format!(
                    "input has shape {other:?}; a {kind} needs {want}"
                )));
            }
        };
        if n == 0 {
            return Err(Error::Shape(format!(
                "input batch size is 0 (shape {input_shape:?})"
            )));
        }
        if c != self.in_channels {
            return Err(Error::Shape(format!(
                "input has {c} channels (shape {input_shape:?}) but the layer expects {}",
                self.in_channels
            )));
        }
        let (kh, kw, sh, sw, dh, dw, pt, pl, pb, pr) = match self.kind {
            ConvKind::Conv1d => (
                1,
                self.kernel[0],
                1,
                self.stride[0],
                1,
                self.dilation[0],
                0,
                self.padding[0],
                0,
                self.padding[1],
            ),
            ConvKind::Conv2d => (
                self.kernel[0],
                self.kernel[1],
                self.stride[0],
                self.stride[1],
                self.dilation[0],
                self.dilation[1],
                self.padding[0],
                self.padding[1],
                self.padding[2],
                self.padding[3],
            ),
        };
        let axis = |name: &str| -> String {
            match (self.kind, name) {
                (ConvKind::Conv1d, _) => "length".to_string(),
                (_, n) => n.to_string(),
            }
        };
        let oh = output_size(h, kh, sh, dh, pt, pb)
            .map_err(|m| Error::Spec(format!("{} axis: {m}", axis("height"))))?;
        let ow = output_size(w, kw, sw, dw, pl, pr)
            .map_err(|m| Error::Spec(format!("{} axis: {m}", axis("width"))))?;
        let g = Geometry {
            batch: n,
            in_channels: c,
            in_h: h,
            in_w: w,
            out_channels: self.out_channels,
            out_h: oh,
            out_w: ow,
            kernel_h: kh,
            kernel_w: kw,
            stride_h: sh,
            stride_w: sw,
            dilation_h: dh,
            dilation_w: dw,
            pad_top: pt,
            pad_left: pl,
            pad_bottom: pb,
            pad_right: pr,
            groups: self.groups,
        };
        g.check_index_range()?;
        Ok(g)
    }

    /// One-line description, e.g. `conv2d 96→192 k[3, 3] s[2, 2] p[1, 1, 1, 1] d[1, 1] g1 bias`.
    pub fn describe(&self) -> String {
        format!(
            "{} {}→{} k{:?} s{:?} p{:?} d{:?} g{}{}",
            self.kind,
            self.in_channels,
            self.out_channels,
            self.kernel,
            self.stride,
            self.padding,
            self.dilation,
            self.groups,
            if self.bias { " bias" } else { "" }
        )
    }
}

/// Output size along one axis: `floor((in + pad_begin + pad_end - dilation·(k-1) - 1) / stride) + 1`.
///
/// Fails (with a message naming the numbers) when the dilated kernel is larger than the padded
/// input, i.e. when the formula would give less than 1.
pub fn output_size(
    input: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
    pad_begin: usize,
    pad_end: usize,
) -> std::result::Result<usize, String> {
    if input == 0 {
        return Err("input size is 0".into());
    }
    let padded = input as u128 + pad_begin as u128 + pad_end as u128;
    let span = dilation as u128 * (kernel as u128 - 1) + 1;
    if span > padded {
        return Err(format!(
            "the dilated kernel spans {span} but the padded input is only {padded} \
             ({input} + padding {pad_begin} + {pad_end})"
        ));
    }
    let out = (padded - span) / stride as u128 + 1;
    usize::try_from(out).map_err(|_| format!("output size {out} overflows"))
}

fn check_index(what: &str, value: u64) -> Result<()> {
    if value > MAX_SHADER_INDEX {
        return Err(Error::TooLarge {
            what: what.to_string(),
            value,
            limit: MAX_SHADER_INDEX,
            why: "32-bit signed index arithmetic in the shaders".into(),
        });
    }
    Ok(())
}

/// The 2-D form of a convolution applied to a concrete input (conv1d has `in_h = kernel_h = 1`).
/// Every size here has been checked to fit the shaders' 32-bit index arithmetic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Geometry {
    /// Samples in the batch, N.
    pub batch: usize,
    /// Input channels, C.
    pub in_channels: usize,
    /// Input height, H (1 for conv1d).
    pub in_h: usize,
    /// Input width, W (the length L for conv1d).
    pub in_w: usize,
    /// Output channels, O.
    pub out_channels: usize,
    /// Output height, OH = (H + pad_top + pad_bottom − dilation_h·(KH − 1) − 1) / stride_h + 1
    /// (1 for conv1d).
    pub out_h: usize,
    /// Output width, OW = (W + pad_left + pad_right − dilation_w·(KW − 1) − 1) / stride_w + 1
    /// (the output length for conv1d).
    pub out_w: usize,
    /// Kernel height, KH (1 for conv1d).
    pub kernel_h: usize,
    /// Kernel width, KW (the kernel length K for conv1d).
    pub kernel_w: usize,
    /// Vertical stride (1 for conv1d).
    pub stride_h: usize,
    /// Horizontal stride (the stride for conv1d).
    pub stride_w: usize,
    /// Vertical dilation (1 for conv1d).
    pub dilation_h: usize,
    /// Horizontal dilation (the dilation for conv1d).
    pub dilation_w: usize,
    /// Zero rows above the input (0 for conv1d).
    pub pad_top: usize,
    /// Zero columns left of the input (the left padding for conv1d).
    pub pad_left: usize,
    /// Zero rows below the input (0 for conv1d).
    pub pad_bottom: usize,
    /// Zero columns right of the input (the right padding for conv1d).
    pub pad_right: usize,
    /// Groups: channels split into this many independent convolutions.
    pub groups: usize,
}

impl Geometry {
    /// Input channels per group.
    pub fn in_per_group(&self) -> usize {
        self.in_channels / self.groups
    }
    /// Output channels per group.
    pub fn out_per_group(&self) -> usize {
        self.out_channels / self.groups
    }
    /// Length `D` of one window of one group: `(C/groups)·KH·KW`.
    pub fn window_len(&self) -> usize {
        self.in_per_group() * self.kernel_h * self.kernel_w
    }
    /// Output positions per sample: `OH·OW`.
    pub fn positions(&self) -> usize {
        self.out_h * self.out_w
    }
    /// Elements of the input tensor.
    pub fn input_len(&self) -> usize {
        self.batch * self.in_channels * self.in_h * self.in_w
    }
    /// Elements of the output tensor.
    pub fn output_len(&self) -> usize {
        self.batch * self.out_channels * self.positions()
    }
    /// Multiply-adds of the exact convolution: `N·O·OH·OW·(C/groups)·KH·KW`.
    pub fn macs(&self) -> u64 {
        self.output_len() as u64 * self.window_len() as u64
    }
    /// The output shape in the user's rank.
    pub fn output_shape(&self, kind: ConvKind) -> Vec<usize> {
        match kind {
            ConvKind::Conv1d => vec![self.batch, self.out_channels, self.out_w],
            ConvKind::Conv2d => vec![self.batch, self.out_channels, self.out_h, self.out_w],
        }
    }
    /// The same geometry for a different batch size.
    pub fn with_batch(&self, batch: usize) -> Geometry {
        Geometry { batch, ..*self }
    }

    /// Input element offset of window element `d` (channel-first: `d = (ci·KH + ky)·KW + kx`) of
    /// group `g` for output position `(n, oy, ox)`, or `None` where the window reads padding.
    /// This is the index arithmetic every kernel and CPU mirror uses.
    #[inline]
    pub fn input_offset(
        &self,
        n: usize,
        g: usize,
        oy: usize,
        ox: usize,
        d: usize,
    ) -> Option<usize> {
        let kk = self.kernel_h * self.kernel_w;
        let ci = d / kk;
        let r = d % kk;
        let ky = r / self.kernel_w;
        let kx = r % self.kernel_w;
        let iy = (oy * self.stride_h + ky * self.dilation_h) as isize - self.pad_top as isize;
        let ix = (ox * self.stride_w + kx * self.dilation_w) as isize - self.pad_left as isize;
        if iy < 0 || ix < 0 || iy >= self.in_h as isize || ix >= self.in_w as isize {
            return None;
        }
        let c = g * self.in_per_group() + ci;
        Some(((n * self.in_channels + c) * self.in_h + iy as usize) * self.in_w + ix as usize)
    }

    /// Checks every size the shaders compute against [`MAX_SHADER_INDEX`], in u128 so that
    /// absurd shapes give an error rather than an overflow.
    fn check_index_range(&self) -> Result<()> {
        let prod = |v: &[usize]| {
            v.iter()
                .fold(1u128, |acc, &x| acc.saturating_mul(x as u128))
        };
        let checks: [(&str, u128); 11] = [
            (
                "input element count",
                prod(&[self.batch, self.in_channels, self.in_h, self.in_w]),
            ),
            (
                "output element count",
                prod(&[self.batch, self.out_channels, self.out_h, self.out_w]),
            ),
            (
                "padded input height",
                self.in_h as u128 + self.pad_top as u128 + self.pad_bottom as u128,
            ),
            (
                "padded input width",
                self.in_w as u128 + self.pad_left as u128 + self.pad_right as u128,
            ),
            (
                "output positions of the batch",
                prod(&[self.batch, self.out_h, self.out_w]),
            ),
            (
                "dilated kernel height",
                prod(&[self.dilation_h, self.kernel_h]),
            ),
            (
                "dilated kernel width",
                prod(&[self.dilation_w, self.kernel_w]),
            ),
            ("stride along the height", self.stride_h as u128),
            ("stride along the width", self.stride_w as u128),
            (
                "output height × stride along the height",
                prod(&[self.stride_h, self.out_h]),
            ),
            (
                "output width × stride along the width",
                prod(&[self.stride_w, self.out_w]),
            ),
        ];
        for (what, v) in checks {
            check_index(what, u64::try_from(v).unwrap_or(u64::MAX))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_size_formula() {
        // 3x3, pad 1, stride 1 keeps the size.
        assert_eq!(output_size(26, 3, 1, 1, 1, 1), Ok(26));
        // stride 2 halves (rounding up with pad 1).
        assert_eq!(output_size(26, 3, 2, 1, 1, 1), Ok(13));
        assert_eq!(output_size(52, 3, 2, 1, 1, 1), Ok(26));
        // torchcrepe conv1: 1024 samples, k 512, stride 4, pad 254 both sides -> 256.
        assert_eq!(output_size(1024, 512, 4, 1, 254, 254), Ok(256));
        // asymmetric padding: 128 + 31 + 32 - 63 - 1 = 127 -> 128 outputs.
        assert_eq!(output_size(128, 64, 1, 1, 31, 32), Ok(128));
        // dilation 2: span 5 over 5 -> 1.
        assert_eq!(output_size(5, 3, 1, 2, 0, 0), Ok(1));
        assert!(output_size(4, 3, 1, 2, 0, 0).is_err());
        assert!(output_size(0, 1, 1, 1, 0, 0).is_err());
    }

    #[test]
    fn geometry_of_conv1d_is_2d_with_unit_height() {
        let mut s = ConvSpec::conv1d(4, 6, 3);
        s.padding = vec![2, 0];
        s.stride = vec![2];
        let g = s.geometry(&[5, 4, 11]).unwrap();
        assert_eq!((g.in_h, g.kernel_h, g.out_h), (1, 1, 1));
        assert_eq!((g.pad_left, g.pad_right, g.out_w), (2, 0, 6));
        assert_eq!(s.output_shape(&[5, 4, 11]).unwrap(), vec![5, 6, 6]);
    }
}
