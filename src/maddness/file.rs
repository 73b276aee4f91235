//! The table file: one `.safetensors` file holding a layer's [`Tables`].
//!
//! # Tensors (little-endian, C order; `G` groups, `C` codebooks, `Mg = O/G`)
//!
//! | name          | dtype | shape            | present          |
//! |---------------|-------|------------------|------------------|
//! | `split_dims`  | U32   | `[G, C, 4]`      | always           |
//! | `thresholds`  | F32   | `[G, C, 4, 16]`  | always           |
//! | `luts`        | U8    | `[G, C, 16, Mg]` | always           |
//! | `lut_offsets` | F32   | `[G, C, Mg]`     | always           |
//! | `scales`      | F32   | `[O]`            | always           |
//! | `bias`        | F32   | `[O]`            | iff the spec has a bias |
//! | `luts_f32`    | F32   | `[G, C, 16, Mg]` | if the float tables were kept |
//!
//! # Header metadata (`__metadata__`, string values)
//!
//! * `format`: `"maddconv-tables"`;
//! * `format_version`: [`FORMAT_VERSION`] as a decimal string;
//! * `maddconv`: a JSON object with `spec` (the [`ConvSpec`], so later commands need no spec
//!   flags), `codebooks`, and the fields of [`TableMeta`] (λ, windows trained and available,
//!   seed, max_windows, source file names, train seconds, held-out error, trainer version).
//!
//! Loading ([`Tables::from_bytes`], [`Tables::load`]) checks everything — format and version,
//! header offsets, the set of tensors, dtypes, shapes against the spec and `C`, split dimensions
//! in range, finite values, positive scales — and returns [`Error::TableFile`] on any problem; it
//! never panics on corrupt or truncated bytes (a cargo-fuzz target in `fuzz/` exercises it).

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

use serde::{Deserialize, Serialize};

use super::{TableMeta, Tables, BUCKETS, LEVEL_SLOTS, TREE_DEPTH};
use crate::error::{Error, Result};
use crate::spec::ConvSpec;

/// Value of the `format` metadata key.
pub const FORMAT_NAME: &str = "maddconv-tables";
/// The table-file format version this library writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// The `maddconv` metadata entry.
#[derive(Serialize, Deserialize)]
struct Header {
    spec: ConvSpec,
    codebooks: usize,
    #[serde(flatten)]
    meta: TableMeta,
}

fn le_bytes<T: Copy, const N: usize>(v: &[T], f: impl Fn(T) -> [u8; N]) -> Vec<u8> {
    v.iter().flat_map(|&x| f(x)).collect()
}

impl Tables {
    /// Serialises the tables to the bytes of a table file (see the [module docs](self)).
    /// Fails when the tables are invalid ([`Tables::validate`]) or a metadata number is not
    /// finite.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        self.validate()?;
        check_meta_numbers(&self.meta).map_err(Error::Argument)?;
        let (g, c, mg, o) = (
            self.groups(),
            self.codebooks,
            self.out_per_group(),
            self.spec.out_channels,
        );
        let mut tensors: Vec<(&str, Dtype, Vec<usize>, Vec<u8>)> = vec![
            (
                "split_dims",
                Dtype::U32,
                vec![g, c, TREE_DEPTH],
                le_bytes(&self.split_dims, u32::to_le_bytes),
            ),
            (
                "thresholds",
                Dtype::F32,
                vec![g, c, TREE_DEPTH, LEVEL_SLOTS],
                le_bytes(&self.thresholds, f32::to_le_bytes),
            ),
            (
                "luts",
                Dtype::U8,
                vec![g, c, BUCKETS, mg],
                self.luts.clone(),
            ),
            (
                "lut_offsets",
                Dtype::F32,
                vec![g, c, mg],
                le_bytes(&self.lut_offsets, f32::to_le_bytes),
            ),
            (
                "scales",
                Dtype::F32,
                vec![o],
                le_bytes(&self.scales, f32::to_le_bytes),
            ),
        ];
        if let Some(b) = &self.bias {
            tensors.push(("bias", Dtype::F32, vec![o], le_bytes(b, f32::to_le_bytes)));
        }
        if let Some(t) = &self.luts_f32 {
            tensors.push((
                "luts_f32",
                Dtype::F32,
                vec![g, c, BUCKETS, mg],
                le_bytes(t, f32::to_le_bytes),
            ));
        }
        let header = Header {
            spec: self.spec.clone(),
            codebooks: self.codebooks,
            meta: self.meta.clone(),
        };
        let json = serde_json::to_string(&header)
            .map_err(|e| Error::Argument(format!("table metadata: {e}")))?;
        let views = tensors
            .iter()
            .map(|(name, dtype, shape, data)| {
                TensorView::new(*dtype, shape.clone(), data).map(|v| (*name, v))
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::Argument(format!("building the table file: {e}")))?;
        let metadata = [
            ("format".to_string(), FORMAT_NAME.to_string()),
            ("format_version".to_string(), FORMAT_VERSION.to_string()),
            ("maddconv".to_string(), json),
        ];
        safetensors::serialize(views, Some(metadata.into_iter().collect()))
            .map_err(|e| Error::Argument(format!("writing the table file: {e}")))
    }

    /// Writes the table file atomically (a temporary file renamed over `path` once complete).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let bytes = self.to_bytes()?;
        crate::tensor::write_atomic(path.as_ref(), |w| std::io::Write::write_all(w, &bytes))
    }

    /// Reads and checks a table file.
    pub fn load(path: impl AsRef<Path>) -> Result<Tables> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Tables::from_bytes(&bytes, &path.display().to_string())
    }

    /// Parses and checks the bytes of a table file; `name` (e.g. the file name) appears in error
    /// messages. Never panics, whatever the bytes.
    pub fn from_bytes(bytes: &[u8], name: &str) -> Result<Tables> {
        let fail = |message: String| Error::TableFile {
            path: name.into(),
            message,
        };
        precheck_header(bytes).map_err(&fail)?;
        let (header_len, metadata) = SafeTensors::read_metadata(bytes)
            .map_err(|e| fail(format!("not a valid safetensors file: {e}")))?;
        let data = bytes.get(8 + header_len..).unwrap_or_default();
        let meta_map = metadata.metadata().as_ref().ok_or_else(|| {
            fail("no __metadata__ in the header: not a maddconv table file".into())
        })?;
        let get = |key: &str| -> Result<&String> {
            meta_map
                .get(key)
                .ok_or_else(|| fail(format!("metadata key {key:?} is missing")))
        };
        let format = get("format")?;
        if format != FORMAT_NAME {
            return Err(fail(format!(
                "format is {format:?}, expected {FORMAT_NAME:?}"
            )));
        }
        let version = get("format_version")?;
        match version.parse::<u32>() {
            Ok(FORMAT_VERSION) => {}
            Ok(v) => {
                return Err(fail(format!(
                    "format version {v} is not supported (this maddconv reads version \
                     {FORMAT_VERSION}); re-create the file with this version's `maddconv train`"
                )))
            }
            Err(_) => return Err(fail(format!("format_version {version:?} is not a number"))),
        }
        let header: Header = serde_json::from_str(get("maddconv")?)
            .map_err(|e| fail(format!("metadata \"maddconv\" is not valid: {e}")))?;
        check_meta_numbers(&header.meta).map_err(&fail)?;
        let spec = header.spec;
        super::check_spec_sizes(&spec)
            .and_then(|()| spec.validate())
            .map_err(|e| fail(e.to_string()))?;
        let c = header.codebooks;
        let d = (spec.in_channels / spec.groups) * spec.kernel.iter().product::<usize>();
        if c == 0 || c > d {
            return Err(fail(format!(
                "codebooks = {c}; it must be between 1 and the window length D = {d}"
            )));
        }
        let (g, o) = (spec.groups, spec.out_channels);
        let mg = o / g;

        let mut known: HashMap<String, bool> =
            metadata.tensors().into_keys().map(|k| (k, false)).collect();
        let mut take =
            |tname: &'static str, dtype: Dtype, shape: &[usize]| -> Result<Option<&[u8]>> {
                let (Some(seen), Some(info)) = (known.get_mut(tname), metadata.info(tname)) else {
                    return Ok(None);
                };
                *seen = true;
                if info.dtype != dtype {
                    return Err(fail(format!(
                        "tensor {tname} has dtype {}, expected {dtype}",
                        info.dtype
                    )));
                }
                if info.shape != shape {
                    return Err(fail(format!(
                        "tensor {tname} has shape {:?}, expected {shape:?} (groups {g}, codebooks \
                     {c}, outputs {o})",
                        info.shape
                    )));
                }
                let (start, end) = info.data_offsets;
                data.get(start..end).map(Some).ok_or_else(|| {
                    fail(format!(
                        "tensor {tname}: data offsets {start}..{end} are outside the file"
                    ))
                })
            };
        let required = |v: Option<&[u8]>, tname: &str| -> Result<Vec<u8>> {
            v.map(<[u8]>::to_vec)
                .ok_or_else(|| fail(format!("tensor {tname} is missing")))
        };
        let lut_shape = [g, c, BUCKETS, mg];
        let split_dims = u32s(&required(
            take("split_dims", Dtype::U32, &[g, c, TREE_DEPTH])?,
            "split_dims",
        )?);
        let thresholds = f32s(&required(
            take("thresholds", Dtype::F32, &[g, c, TREE_DEPTH, LEVEL_SLOTS])?,
            "thresholds",
        )?);
        let luts = required(take("luts", Dtype::U8, &lut_shape)?, "luts")?;
        let lut_offsets = f32s(&required(
            take("lut_offsets", Dtype::F32, &[g, c, mg])?,
            "lut_offsets",
        )?);
        let scales = f32s(&required(take("scales", Dtype::F32, &[o])?, "scales")?);
        let bias = take("bias", Dtype::F32, &[o])?.map(f32s);
        let luts_f32 = take("luts_f32", Dtype::F32, &lut_shape)?.map(f32s);
        if let Some((extra, _)) = known.iter().find(|(_, &seen)| !seen) {
            return Err(fail(format!("unexpected tensor {extra:?}")));
        }
        let tables = Tables {
            spec,
            codebooks: c,
            split_dims,
            thresholds,
            luts,
            lut_offsets,
            scales,
            bias,
            luts_f32,
            meta: header.meta,
        };
        tables.validate().map_err(|e| fail(e.to_string()))?;
        Ok(tables)
    }
}

/// The metadata's numbers must be finite (JSON cannot hold NaN or infinity).
fn check_meta_numbers(m: &TableMeta) -> std::result::Result<(), String> {
    let numbers = [
        ("lambda", m.lambda as f64),
        ("train_seconds", m.train_seconds),
        ("heldout nmse", m.heldout.as_ref().map_or(0.0, |h| h.nmse)),
        (
            "heldout nmse_f32_tables",
            m.heldout
                .as_ref()
                .and_then(|h| h.nmse_f32_tables)
                .unwrap_or(0.0),
        ),
    ];
    match numbers.iter().find(|(_, v)| !v.is_finite()) {
        Some((name, v)) => Err(format!("table metadata {name} is {v}, not a finite number")),
        None => Ok(()),
    }
}

fn u32s(b: &[u8]) -> Vec<u32> {
    b.chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Checks the header length and every tensor's data offsets against the buffer before the
/// safetensors crate sees it: its own check adds the offsets unchecked, which overflows on
/// crafted offsets near `u64::MAX`.
fn precheck_header(bytes: &[u8]) -> std::result::Result<(), String> {
    let len8: [u8; 8] = match bytes.get(..8) {
        Some(&[a, b, c, d, e, f, g, h]) => [a, b, c, d, e, f, g, h],
        _ => {
            return Err(format!(
                "{} bytes: too short for a safetensors header",
                bytes.len()
            ))
        }
    };
    let n = u64::from_le_bytes(len8);
    let rest = (bytes.len() - 8) as u64;
    if n > rest {
        return Err(format!(
            "the header claims {n} bytes but only {rest} follow (truncated file?)"
        ));
    }
    let data_len = rest - n;
    let header = &bytes[8..8 + n as usize];
    let value: serde_json::Value =
        serde_json::from_slice(header).map_err(|e| format!("the header is not valid JSON: {e}"))?;
    let obj = value
        .as_object()
        .ok_or_else(|| "the header is not a JSON object".to_string())?;
    for (name, info) in obj {
        if name == "__metadata__" {
            continue;
        }
        let offsets = info
            .get("data_offsets")
            .and_then(|v| v.as_array())
            .ok_or_else(|| format!("tensor {name:?} has no data_offsets"))?;
        for v in offsets {
            match v.as_u64() {
                Some(x) if x <= data_len => {}
                _ => {
                    return Err(format!(
                        "tensor {name:?}: data offset {v} is outside the {data_len} data bytes \
                         (truncated or corrupt file)"
                    ))
                }
            }
        }
    }
    Ok(())
}
