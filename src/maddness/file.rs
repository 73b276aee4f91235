//! The table file: one `.safetensors` file holding a layer's [`Tables`].
//!
//! # Tensors (little-endian, C order; `G` groups, `C` codebooks, `Mg = O/G`)
//!
//! | name          | dtype | shape            | present          |
//! |---------------|-------|------------------|------------------|
//! | `split_dims`  | U32   | `[G, C, L]`      | always           |
//! | `thresholds`  | F32   | `[G, C, L, K]`   | always           |
//! | `luts`        | U8    | `[G, C, K, Mg]`  | always           |
//! | `lut_offsets` | F32   | `[G, C, Mg]`     | always           |
//! | `scales`      | F32   | `[O]`            | always           |
//! | `bias`        | F32   | `[O]`            | iff the spec has a bias |
//! | `luts_f32`    | F32   | `[G, C, K, Mg]`  | if the float tables were kept |
//!
//! `L` is the trees' depth ([`Tables::depth`]), `K = 2^L`.
//!
//! # Header metadata (`__metadata__`, string values)
//!
//! * `format`: `"maddconv-tables"`;
//! * `format_version`: a decimal string: 1 for trees of depth 4 (what every maddconv reads), 2
//!   ([`FORMAT_VERSION`]) for deeper trees, whose depth the `maddconv` entry holds;
//! * `maddconv`: a JSON object with `spec` (the [`ConvSpec`], so later commands need no spec
//!   flags), `codebooks`, `depth` (version 2 only), and the fields of [`TableMeta`] (λ, windows trained and available,
//!   seed, max_windows, source file names, train seconds, held-out error, trainer version);
//! * `checksum`: `sha256:` and 64 hex digits, over every tensor (name, dtype, shape, bytes) and
//!   every other metadata entry, in a canonical order ([`content_checksum`]). Files written
//!   before checksums existed have none; they load, with a warning.
//!
//! Loading ([`Tables::from_bytes`], [`Tables::load`]) checks everything and never panics on
//! corrupt or truncated bytes (cargo-fuzz targets in `fuzz/` exercise it). In order: that the
//! file is a safetensors file and not, say, a `.npy`; the header's length against the file and
//! [`MAX_HEADER_BYTES`], its offsets against the data; format and version; the data's size
//! against what tables of the spec can hold — all before [`Tables::load`] reads the data, so a
//! huge file or a device is refused unread; then the checksum ([`Error::TableModified`] when the
//! contents were changed after training); then the set of tensors, dtypes, shapes against the
//! spec and `C`, split dimensions in range, finite values, positive scales. Every problem but a
//! checksum mismatch is an [`Error::TableFile`].

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{TableMeta, Tables, DEFAULT_DEPTH};
use crate::error::{Error, Result};
use crate::spec::ConvSpec;

/// Value of the `format` metadata key.
pub const FORMAT_NAME: &str = "maddconv-tables";
/// The newest table-file format version this library writes and reads: 2, tables of any
/// depth. Tables of depth 4 are written as version 1 (no `depth` entry), which every maddconv
/// reads.
pub const FORMAT_VERSION: u32 = 2;
/// The metadata key of the checksum ([`content_checksum`]).
pub const CHECKSUM_KEY: &str = "checksum";
/// Longest JSON header a table file may have (a maddconv header takes a few kilobytes).
pub const MAX_HEADER_BYTES: u64 = 16 << 20;

/// The `maddconv` metadata entry.
#[derive(Serialize, Deserialize)]
struct Header {
    spec: ConvSpec,
    codebooks: usize,
    /// The trees' depth: absent (depth 4) in version 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    depth: Option<usize>,
    #[serde(flatten)]
    meta: TableMeta,
}

fn le_bytes<T: Copy, const N: usize>(v: &[T], f: impl Fn(T) -> [u8; N]) -> Vec<u8> {
    v.iter().flat_map(|&x| f(x)).collect()
}

/// A tensor entry of f32 values for [`Tables::to_bytes`].
fn f32_entry<'a>(
    name: &'a str,
    shape: Vec<usize>,
    v: &[f32],
) -> (&'a str, Dtype, Vec<usize>, Vec<u8>) {
    (name, Dtype::F32, shape, le_bytes(v, f32::to_le_bytes))
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
        let (depth, k) = (self.depth, self.buckets());
        let mut tensors: Vec<(&str, Dtype, Vec<usize>, Vec<u8>)> = vec![
            (
                "split_dims",
                Dtype::U32,
                vec![g, c, depth],
                le_bytes(&self.split_dims, u32::to_le_bytes),
            ),
            f32_entry("thresholds", vec![g, c, depth, k], &self.thresholds),
            ("luts", Dtype::U8, vec![g, c, k, mg], self.luts.clone()),
            f32_entry("lut_offsets", vec![g, c, mg], &self.lut_offsets),
            f32_entry("scales", vec![o], &self.scales),
        ];
        if let Some(b) = &self.bias {
            tensors.push(f32_entry("bias", vec![o], b));
        }
        if let Some(t) = &self.luts_f32 {
            tensors.push(f32_entry("luts_f32", vec![g, c, k, mg], t));
        }
        let header = Header {
            spec: self.spec.clone(),
            codebooks: self.codebooks,
            depth: (depth != DEFAULT_DEPTH).then_some(depth),
            meta: self.meta.clone(),
        };
        let version = if depth == DEFAULT_DEPTH {
            1
        } else {
            FORMAT_VERSION
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
        let mut metadata = vec![
            ("format".to_string(), FORMAT_NAME.to_string()),
            ("format_version".to_string(), version.to_string()),
            ("maddconv".to_string(), json),
        ];
        let serialize = |metadata: &[(String, String)]| {
            let metadata = metadata.iter().cloned().collect();
            safetensors::serialize(views.iter().map(|(n, v)| (*n, v)), Some(metadata))
                .map_err(|e| Error::Argument(format!("writing the table file: {e}")))
        };
        // The checksum covers the contents, not the layout: computed on the file without it.
        let sum = content_checksum(&serialize(&metadata)?)?;
        metadata.push((CHECKSUM_KEY.to_string(), sum));
        let bytes = serialize(&metadata)?;
        match header_len_field(&bytes) {
            Some(n) if n > MAX_HEADER_BYTES => Err(Error::TooLarge {
                what: "table file header in bytes".into(),
                value: n,
                limit: MAX_HEADER_BYTES,
                why: "the most a table file's header may hold (fewer source names?)".into(),
            }),
            _ => Ok(bytes),
        }
    }

    /// Writes the table file atomically (a temporary file renamed over `path` once complete).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let bytes = self.to_bytes()?;
        crate::tensor::write_atomic(path.as_ref(), |w| std::io::Write::write_all(w, &bytes))
    }

    /// Reads and checks a table file (see [`Tables::from_bytes`]).
    ///
    /// The header is read and checked first; the rest only when the file's size is what the
    /// header describes and what tables of its spec can hold, so a huge file, a device such as
    /// `/dev/zero` or a pipe is refused without reading it.
    pub fn load(path: impl AsRef<Path>) -> Result<Tables> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let fail = |message: String| Error::TableFile {
            path: path.into(),
            message,
        };
        let io = |e| Error::io(path, e);
        let mut file = std::fs::File::open(path).map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        if !meta.is_file() {
            return Err(fail(format!(
                "not a regular file (a {}); give the path of a table file made by `maddconv \
                 train`",
                if meta.is_dir() {
                    "directory"
                } else {
                    "device, pipe or socket"
                }
            )));
        }
        let file_len = meta.len();
        let mut bytes = Vec::new();
        let mut read = |bytes: &mut Vec<u8>, n: u64| -> Result<()> {
            let want = bytes.len() as u64 + n;
            bytes.reserve_exact(usize::try_from(n).unwrap_or(usize::MAX));
            (&mut file).take(n).read_to_end(bytes).map_err(io)?;
            if bytes.len() as u64 != want {
                return Err(fail(format!(
                    "the file changed while it was read (it has {} bytes, not {file_len})",
                    bytes.len()
                )));
            }
            Ok(())
        };
        read(&mut bytes, file_len.min(8))?;
        if let Some(n) = header_len_field(&bytes) {
            if n <= MAX_HEADER_BYTES && n <= file_len - 8 {
                read(&mut bytes, n)?;
            }
        }
        let raw = RawFile::parse(&bytes, file_len).map_err(&fail)?;
        let header = raw.header().map_err(&fail)?;
        let rest = file_len - bytes.len() as u64;
        read(&mut bytes, rest)?;
        Tables::from_parts(&raw, header, &bytes, &name)
    }

    /// Parses and checks the bytes of a table file; `name` (e.g. the file name) appears in error
    /// messages. Never panics, whatever the bytes.
    ///
    /// A file whose contents do not match its checksum is refused with
    /// [`Error::TableModified`]; a file without one (written before checksums were) loads, with
    /// a warning through `log`. Everything else wrong is an [`Error::TableFile`].
    pub fn from_bytes(bytes: &[u8], name: &str) -> Result<Tables> {
        let fail = |message: String| Error::TableFile {
            path: name.into(),
            message,
        };
        let raw = RawFile::parse(bytes, bytes.len() as u64).map_err(&fail)?;
        let header = raw.header().map_err(&fail)?;
        Tables::from_parts(&raw, header, bytes, name)
    }

    /// The checks that need the tensors' data, on the whole file's `bytes`.
    fn from_parts(raw: &RawFile, header: Header, bytes: &[u8], name: &str) -> Result<Tables> {
        let fail = |message: String| Error::TableFile {
            path: name.into(),
            message,
        };
        let data = bytes.get(raw.data_start..).unwrap_or_default();
        let signed = match raw.metadata.get(CHECKSUM_KEY) {
            Some(stored) => {
                let found = raw.digest(data);
                if *stored != found {
                    return Err(Error::TableModified {
                        path: name.into(),
                        expected: stored.clone(),
                        found,
                    });
                }
                true
            }
            None => false,
        };
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
        match (raw.tensor("bias").is_some(), spec.bias) {
            (false, true) => {
                return Err(fail(
                    "the table file has no `bias` tensor, but its spec says the layer has a bias"
                        .into(),
                ))
            }
            (true, false) => {
                return Err(fail(
                    "the table file has a `bias` tensor, but its spec says the layer has no bias"
                        .into(),
                ))
            }
            _ => {}
        }
        if let Some(extra) = raw
            .tensors
            .iter()
            .find(|t| !TENSORS.iter().any(|(n, _)| *n == t.name))
        {
            return Err(fail(format!("unexpected tensor {:?}", extra.name)));
        }
        for (tname, role) in TENSORS {
            if !matches!(tname, "bias" | "luts_f32") && raw.tensor(tname).is_none() {
                return Err(fail(format!("tensor {tname} ({role}) is missing")));
            }
        }
        if raw.data_end < raw.data_len {
            return Err(fail(format!(
                "the file has {} bytes after the {} data bytes its header describes",
                raw.data_len - raw.data_end,
                raw.data_end
            )));
        }
        // What the safetensors format itself requires (dtype sizes, contiguous data), checked by
        // its crate, once the problems a user can act on have been named.
        let (_, metadata) = SafeTensors::read_metadata(bytes)
            .map_err(|e| fail(format!("not a valid safetensors file: {e}")))?;
        let take = |tname: &'static str, dtype: Dtype, shape: &[usize]| -> Result<Option<&[u8]>> {
            let Some(info) = metadata.info(tname) else {
                return Ok(None);
            };
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
        let depth = header.depth.unwrap_or(DEFAULT_DEPTH);
        let k = 1usize << depth;
        let lut_shape = [g, c, k, mg];
        let split_dims = u32s(&required(
            take("split_dims", Dtype::U32, &[g, c, depth])?,
            "split_dims",
        )?);
        let thresholds = f32s(&required(
            take("thresholds", Dtype::F32, &[g, c, depth, k])?,
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
        let tables = Tables {
            spec,
            codebooks: c,
            depth,
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
        if !signed {
            log::warn!(
                "table file {name} has no checksum (it was written by a maddconv before 0.1's \
                 checksums), so changes made to it after training cannot be detected; \
                 re-create it with `maddconv train` to add one"
            );
        }
        Ok(tables)
    }
}

/// The tensors of a table file, with what each is for (in error messages).
const TENSORS: [(&str, &str); 7] = [
    ("split_dims", "the window dimension each tree level tests"),
    ("thresholds", "the hash trees' thresholds"),
    ("luts", "the 8-bit look-up tables"),
    ("lut_offsets", "the look-up tables' offsets"),
    ("scales", "the look-up tables' scales"),
    ("bias", "the layer's bias"),
    ("luts_f32", "the float look-up tables"),
];

/// The checksum of a table file's contents (`sha256:` and 64 hex digits), whether or not the
/// file holds one: what [`Tables::to_bytes`] stores under the `checksum` metadata key and the
/// loaders compare against. It covers every tensor (name, dtype, shape, bytes) and every
/// metadata entry but the checksum itself, in a canonical order, so it does not depend on how
/// the header is laid out. Fails when the bytes are not a readable safetensors file.
pub fn content_checksum(bytes: &[u8]) -> Result<String> {
    let raw = RawFile::parse(bytes, bytes.len() as u64).map_err(|message| Error::TableFile {
        path: Default::default(),
        message,
    })?;
    Ok(raw.digest(&bytes[raw.data_start..]))
}

/// The 8-byte header length at the start of a safetensors file, if there are 8 bytes.
fn header_len_field(bytes: &[u8]) -> Option<u64> {
    let len8: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
    Some(u64::from_le_bytes(len8))
}

/// A tensor's entry in the header.
struct RawTensor {
    name: String,
    dtype: String,
    shape: Vec<u64>,
    start: u64,
    end: u64,
}

/// The header of a safetensors file, parsed and checked against the file's size before the
/// safetensors crate sees it (its own check adds the offsets unchecked, which overflows on
/// crafted offsets near `u64::MAX`) and before the data are read.
struct RawFile {
    /// Where the data start: 8 + the header's length.
    data_start: usize,
    /// Bytes after the header.
    data_len: u64,
    /// Where the last tensor's data end (after the header).
    data_end: u64,
    metadata: BTreeMap<String, String>,
    tensors: Vec<RawTensor>,
}

impl RawFile {
    /// `head`: the file's first `8 + header length` bytes (or all of it, if shorter); `file_len`:
    /// the whole file's size.
    fn parse(head: &[u8], file_len: u64) -> std::result::Result<RawFile, String> {
        if head.starts_with(b"\x93NUMPY") {
            return Err(
                "this is a .npy file, not a table file (table files are made by \
                        `maddconv train`)"
                    .into(),
            );
        }
        let n = header_len_field(head)
            .ok_or_else(|| format!("{file_len} bytes: too short for a safetensors header"))?;
        let rest = file_len - 8;
        if n > rest {
            return Err(format!(
                "the header claims {n} bytes but only {rest} follow (truncated file, or not a \
                 table file?)"
            ));
        }
        if n > MAX_HEADER_BYTES {
            return Err(format!(
                "the header claims {n} bytes, more than the {MAX_HEADER_BYTES} a table file's \
                 header may have (not a table file?)"
            ));
        }
        let data_len = rest - n;
        let header = head
            .get(8..8 + n as usize)
            .ok_or_else(|| "the file ends inside its header".to_string())?;
        let value: serde_json::Value = serde_json::from_slice(header)
            .map_err(|e| format!("the header is not valid JSON: {e}"))?;
        let obj = value
            .as_object()
            .ok_or_else(|| "the header is not a JSON object".to_string())?;
        let mut metadata = BTreeMap::new();
        let mut tensors = Vec::new();
        let mut data_end = 0;
        for (name, info) in obj {
            if name == "__metadata__" {
                let entries = info
                    .as_object()
                    .ok_or_else(|| "__metadata__ is not a JSON object".to_string())?;
                for (k, v) in entries {
                    let v = v
                        .as_str()
                        .ok_or_else(|| format!("metadata entry {k:?} is not a string"))?;
                    metadata.insert(k.clone(), v.to_string());
                }
                continue;
            }
            let dtype = info
                .get("dtype")
                .and_then(|v| v.as_str())
                .ok_or_else(|| format!("tensor {name:?} has no dtype"))?
                .to_string();
            let shape = info
                .get("shape")
                .and_then(|v| v.as_array())
                .and_then(|a| a.iter().map(|d| d.as_u64()).collect::<Option<Vec<_>>>())
                .ok_or_else(|| format!("tensor {name:?} has no shape (a list of sizes)"))?;
            let offsets = info
                .get("data_offsets")
                .and_then(|v| v.as_array())
                .ok_or_else(|| format!("tensor {name:?} has no data_offsets"))?;
            let mut ends = [0u64; 2];
            if offsets.len() != 2 {
                return Err(format!(
                    "tensor {name:?} has {} data_offsets, not 2",
                    offsets.len()
                ));
            }
            for (slot, v) in ends.iter_mut().zip(offsets) {
                *slot = match v.as_u64() {
                    Some(x) if x <= data_len => x,
                    _ => {
                        return Err(format!(
                            "tensor {name:?}: data offset {v} is outside the {data_len} data \
                             bytes (truncated or corrupt file)"
                        ))
                    }
                };
            }
            let [start, end] = ends;
            if start > end {
                return Err(format!(
                    "tensor {name:?}: data offsets {start}..{end} are reversed"
                ));
            }
            data_end = data_end.max(end);
            tensors.push(RawTensor {
                name: name.clone(),
                dtype,
                shape,
                start,
                end,
            });
        }
        Ok(RawFile {
            data_start: 8 + n as usize,
            data_len,
            data_end,
            metadata,
            tensors,
        })
    }

    fn tensor(&self, name: &str) -> Option<&RawTensor> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The metadata a maddconv table file needs before its data are read: format, version, the
    /// spec; and the data's size within what tables of that spec can hold.
    fn header(&self) -> std::result::Result<Header, String> {
        let get = |key: &str| -> std::result::Result<&String, String> {
            if self.metadata.is_empty() {
                return Err("no __metadata__ in the header: not a maddconv table file".into());
            }
            self.metadata
                .get(key)
                .ok_or_else(|| format!("metadata key {key:?} is missing"))
        };
        let format = get("format")?;
        if format != FORMAT_NAME {
            return Err(format!("format is {format:?}, expected {FORMAT_NAME:?}"));
        }
        let version = get("format_version")?;
        let version = match version.parse::<u32>() {
            Ok(v @ 1..=FORMAT_VERSION) => v,
            Ok(v) => {
                return Err(format!(
                    "format version {v} is not supported (this maddconv reads version \
                     {FORMAT_VERSION}); re-create the file with this version's `maddconv train`"
                ))
            }
            Err(_) => return Err(format!("format_version {version:?} is not a number")),
        };
        let header: Header = serde_json::from_str(get("maddconv")?)
            .map_err(|e| format!("metadata \"maddconv\" is not valid: {e}"))?;
        match (version, header.depth) {
            (1, None) => {}
            (1, Some(d)) => {
                return Err(format!(
                    "format version 1 has trees of depth {DEFAULT_DEPTH}, but the header says \
                     depth {d}"
                ))
            }
            (_, None) => return Err(format!("format version {version} needs a tree depth")),
            (_, Some(d)) => super::check_depth(d).map_err(|e| e.to_string())?,
        }
        // With some slack, so that a small unexpected tensor or trailing bytes are named by the
        // later checks.
        let depth = header.depth.unwrap_or(DEFAULT_DEPTH);
        let most = most_data_bytes(&header.spec, header.codebooks, depth).saturating_add(1 << 20);
        if self.data_len > most {
            return Err(format!(
                "the file holds {} data bytes after its header, more than tables of its spec and \
                 {} codebooks can hold ({most})",
                self.data_len, header.codebooks
            ));
        }
        Ok(header)
    }

    /// The checksum of the metadata (but the checksum entry) and the tensors, `data` being
    /// the bytes after the header.
    fn digest(&self, data: &[u8]) -> String {
        fn field(h: &mut Sha256, bytes: &[u8]) {
            h.update((bytes.len() as u64).to_le_bytes());
            h.update(bytes);
        }
        let mut h = Sha256::new();
        field(&mut h, b"maddconv-tables checksum 1");
        for (k, v) in self.metadata.iter().filter(|(k, _)| *k != CHECKSUM_KEY) {
            field(&mut h, k.as_bytes());
            field(&mut h, v.as_bytes());
        }
        let mut order: Vec<&RawTensor> = self.tensors.iter().collect();
        order.sort_by(|a, b| a.name.cmp(&b.name));
        for t in order {
            field(&mut h, t.name.as_bytes());
            field(&mut h, t.dtype.as_bytes());
            h.update((t.shape.len() as u64).to_le_bytes());
            for d in &t.shape {
                h.update(d.to_le_bytes());
            }
            // Offsets were checked against the data's length when parsing.
            field(
                &mut h,
                data.get(t.start as usize..t.end as usize)
                    .unwrap_or_default(),
            );
        }
        let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        format!("sha256:{hex}")
    }
}

/// The most data bytes valid tables of this spec and `C` codebooks hold (every tensor present),
/// saturating; a bound checked before the data are read.
fn most_data_bytes(spec: &ConvSpec, c: usize, depth: usize) -> u64 {
    let (depth, k) = (depth as u64, 1u64 << depth);
    let g = spec.groups.max(1) as u64;
    let o = spec.out_channels as u64;
    let gc = g.saturating_mul(c as u64);
    let mg = o / g;
    let per_codebook = (depth * 4)
        .saturating_add(depth * k * 4)
        .saturating_add(k.saturating_mul(mg).saturating_mul(1 + 4))
        .saturating_add(mg.saturating_mul(4));
    gc.saturating_mul(per_codebook)
        .saturating_add(o.saturating_mul(8))
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
