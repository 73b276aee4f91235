//! A minimal dense f32 tensor (shape + C-order data), `.npy` reading and writing, and atomic
//! file output.
//!
//! Layouts follow PyTorch/ONNX: conv2d activations are `N×C×H×W`, conv1d activations `N×C×L`,
//! weights `O×(C/groups)×KH×KW` or `O×(C/groups)×K`, bias `O`.

use std::io::{Read, Write};
use std::path::Path;

use crate::error::{Error, Result};

/// Atomic, kill-safe file output (see [`crate::io`]); kept here too, where it has always been.
pub use crate::io::write_atomic;

/// A dense, C-order f32 tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    shape: Vec<usize>,
    data: Vec<f32>,
}

impl Tensor {
    /// Makes a tensor from a shape and its C-order data.
    ///
    /// Fails when `data.len()` is not the product of `shape`.
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Result<Self> {
        let count = element_count(&shape)?;
        if count != data.len() {
            return Err(Error::Shape(format!(
                "shape {shape:?} holds {count} elements but {} values were given",
                data.len()
            )));
        }
        Ok(Tensor { shape, data })
    }

    /// A tensor of zeros.
    pub fn zeros(shape: Vec<usize>) -> Result<Self> {
        let count = element_count(&shape)?;
        Ok(Tensor {
            shape,
            data: vec![0.0; count],
        })
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The C-order data.
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// The C-order data, mutable.
    pub fn data_mut(&mut self) -> &mut [f32] {
        &mut self.data
    }

    /// Takes the data out.
    pub fn into_data(self) -> Vec<f32> {
        self.data
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True when the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Fails with [`Error::NonFinite`] naming `what` if any element is NaN or infinite.
    pub fn check_finite(&self, what: &str) -> Result<()> {
        check_finite(what, &self.data)
    }

    /// The samples `start..end` along axis 0, as a new tensor.
    pub fn slice_batch(&self, start: usize, end: usize) -> Result<Tensor> {
        let n = *self
            .shape
            .first()
            .ok_or_else(|| Error::Shape("cannot slice a rank-0 tensor along axis 0".into()))?;
        if start > end || end > n {
            return Err(Error::Shape(format!(
                "batch slice {start}..{end} is outside 0..{n}"
            )));
        }
        let per = self.data.len() / n.max(1);
        let mut shape = self.shape.clone();
        shape[0] = end - start;
        Tensor::new(shape, self.data[start * per..end * per].to_vec())
    }

    /// Stacks tensors of equal trailing shape along axis 0.
    pub fn concat_batch(parts: &[Tensor]) -> Result<Tensor> {
        let first = parts
            .first()
            .ok_or_else(|| Error::Shape("nothing to concatenate".into()))?;
        let tail = &first.shape[1..];
        let mut n = 0;
        let mut data = Vec::new();
        for (i, p) in parts.iter().enumerate() {
            if p.shape.len() != first.shape.len() || &p.shape[1..] != tail {
                return Err(Error::Shape(format!(
                    "part {i} has shape {:?}, expected [_, {}]",
                    p.shape,
                    join(tail)
                )));
            }
            n += p.shape[0];
            data.extend_from_slice(&p.data);
        }
        let mut shape = first.shape.clone();
        shape[0] = n;
        Tensor::new(shape, data)
    }

    /// Reads a `.npy` file (float32 or float64, either byte order, C order).
    /// float64 data is rounded to float32.
    pub fn read_npy(path: impl AsRef<Path>) -> Result<Tensor> {
        let path = path.as_ref();
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let meta = file.metadata().map_err(|e| Error::io(path, e))?;
        // The size of a regular file bounds what is read; other files (pipes) are read as a
        // stream, still element by element, so a lying header cannot make a huge allocation.
        let len = meta.is_file().then_some(meta.len());
        Self::read_npy_from(std::io::BufReader::new(file), path, len)
    }

    /// Parses `.npy` bytes held in memory (`name` is used in error messages).
    pub fn from_npy_bytes(bytes: &[u8], name: &str) -> Result<Tensor> {
        Self::read_npy_from(bytes, Path::new(name), Some(bytes.len() as u64))
    }

    /// `file_len`: the whole file's size where it is known, to refuse a truncated file before
    /// reading its data.
    fn read_npy_from(reader: impl Read, path: &Path, file_len: Option<u64>) -> Result<Tensor> {
        let npy_err = |message: String| Error::Npy {
            path: path.to_path_buf(),
            message,
        };
        let mut reader = CountingReader {
            inner: reader,
            count: 0,
        };
        // The header is read and checked here before npyz parses it: npyz allocates the length
        // the file states, and its Python-literal parser backtracks exponentially on deeply
        // nested brackets (a 100-byte header could take hours).
        let unreadable = |m: String| npy_err(format!("not a readable .npy file: {m}"));
        let header_bytes = read_npy_header(&mut reader)
            .map_err(|e| unreadable(describe_header_error(&e, reader.count, file_len)))?;
        let header_len = reader.count;
        let header = npyz::NpyHeader::from_reader(&header_bytes[..])
            .map_err(|e| unreadable(describe_header_error(&e, header_len, file_len)))?;
        let npy = npyz::NpyFile::with_header(header, &mut reader);
        if npy.order() != npyz::Order::C {
            return Err(npy_err(
                "array is stored in Fortran order; save it in C order (np.ascontiguousarray)"
                    .into(),
            ));
        }
        let shape: Vec<usize> = npy
            .shape()
            .iter()
            .map(|&d| usize::try_from(d).map_err(|_| npy_err(format!("dimension {d} too large"))))
            .collect::<Result<_>>()?;
        let count = element_count(&shape).map_err(|e| npy_err(e.to_string()))?;
        let dtype = npy.dtype();
        let descr = match &dtype {
            npyz::DType::Plain(ts) => ts.to_string(),
            other => format!("{other:?}"),
        };
        let (item, name) = match descr.as_str() {
            "<f4" | ">f4" => (4u64, "float32"),
            "<f8" | ">f8" => (8u64, "float64"),
            other => {
                return Err(npy_err(format!(
                    "dtype {other} is not supported; save float32 (x.astype(np.float32))"
                )))
            }
        };
        let need = (count as u64).checked_mul(item).ok_or_else(|| {
            npy_err(format!(
                "header shape {shape:?} of {name} needs more bytes than a file can hold"
            ))
        })?;
        let truncated = |held: u64| {
            npy_err(format!(
                "truncated file: header shape {shape:?} of {name} needs {need} data bytes after \
                 the {header_len}-byte header, but the file holds only {held}"
            ))
        };
        if let Some(len) = file_len {
            let held = len.saturating_sub(header_len);
            if held < need {
                return Err(truncated(held));
            }
        }
        // The data are read element by element, so a header that claims more elements than a
        // stream holds ends in an error at its end, not in a huge allocation.
        let data: std::io::Result<Vec<f32>> = if item == 4 {
            npy.into_vec::<f32>()
        } else {
            npy.into_vec::<f64>()
                .map(|v| v.into_iter().map(|v| v as f32).collect())
        };
        let data = data.map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                truncated(reader.count - header_len)
            } else {
                npy_err(format!("reading {name} data: {e}"))
            }
        })?;
        if data.len() != count {
            return Err(npy_err(format!(
                "header shape {shape:?} needs {count} values but the file holds {}",
                data.len()
            )));
        }
        Ok(Tensor { shape, data })
    }

    /// Serialises to `.npy` bytes (little-endian float32, C order).
    pub fn to_npy_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128 + self.data.len() * 4);
        // Writing into a Vec cannot fail.
        let _ = self.write_npy_to(&mut out);
        out
    }

    fn write_npy_to<W: Write>(&self, w: W) -> std::io::Result<()> {
        use npyz::WriterBuilder;
        let shape: Vec<u64> = self.shape.iter().map(|&d| d as u64).collect();
        let mut writer = npyz::WriteOptions::<f32>::new()
            .dtype(npyz::DType::Plain(
                "<f4".parse().expect("valid type string"),
            ))
            .shape(&shape)
            .writer(w)
            .begin_nd()?;
        writer.extend(self.data.iter().copied())?;
        writer.finish()
    }

    /// Writes a `.npy` file atomically: a temporary file next to `path`, renamed over it once
    /// complete, so a failure never leaves a half-written file.
    pub fn write_npy(&self, path: impl AsRef<Path>) -> Result<()> {
        write_atomic(path.as_ref(), |w| self.write_npy_to(w))
    }
}

/// Counts the bytes read through it (to name sizes in error messages).
struct CountingReader<R> {
    inner: R,
    count: u64,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

/// The longest `.npy` header dictionary read, in bytes: numpy's own limit in `np.load`
/// (`max_header_size`). A header of a supported array is under 200 bytes.
pub const NPY_MAX_HEADER_LEN: usize = 10_000;

/// The deepest bracket nesting read in a `.npy` header dictionary. A plain array's header
/// nests 2 deep (`{... 'shape': (2, 3), }`); npyz's parser takes time exponential in the depth.
pub const NPY_MAX_HEADER_NESTING: usize = 4;

/// What a `.npy` header looks like, for error messages.
const NPY_HEADER_EXAMPLE: &str = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";

/// Reads a `.npy` file's magic, version, header length and header dictionary (everything
/// before the data), and checks the dictionary cheaply: its length, that it is UTF-8 without
/// control characters or backslashes, and how deep its brackets nest outside strings.
/// Returns the bytes read, for npyz to parse.
fn read_npy_header(r: &mut impl Read) -> std::io::Result<Vec<u8>> {
    use std::io::{Error as IoError, ErrorKind};
    let invalid = |m: String| IoError::new(ErrorKind::InvalidData, m);
    let mut bytes = vec![0u8; 8];
    r.read_exact(&mut bytes).map_err(|e| match e.kind() {
        ErrorKind::UnexpectedEof => invalid("magic not found for NPY file".into()),
        _ => e,
    })?;
    if &bytes[..6] != b"\x93NUMPY" {
        return Err(invalid("magic not found for NPY file".into()));
    }
    let len_bytes = match (bytes[6], bytes[7]) {
        (1, 0) => 2,
        (2, 0) | (3, 0) => 4,
        (major, minor) => {
            return Err(invalid(format!(
                "unsupported .npy format version {major}.{minor} (1.0, 2.0 and 3.0 are read)"
            )))
        }
    };
    let mut len = [0u8; 4];
    r.read_exact(&mut len[..len_bytes])?;
    bytes.extend_from_slice(&len[..len_bytes]);
    let len = u32::from_le_bytes(len) as usize;
    if len > NPY_MAX_HEADER_LEN {
        return Err(invalid(format!(
            "the header states a length of {len} bytes, more than the {NPY_MAX_HEADER_LEN} \
             bytes read (numpy's own limit); a .npy header is a short dictionary such as \
             {NPY_HEADER_EXAMPLE}"
        )));
    }
    let start = bytes.len();
    bytes.resize(start + len, 0);
    r.read_exact(&mut bytes[start..])?;
    check_npy_header_text(&bytes[start..]).map_err(invalid)?;
    Ok(bytes)
}

/// Checks a header dictionary's text (see [`read_npy_header`]); the error names the problem
/// and its offset in the dictionary.
fn check_npy_header_text(text: &[u8]) -> std::result::Result<(), String> {
    let text = std::str::from_utf8(text).map_err(|e| {
        format!(
            "the header dictionary is not UTF-8 text (offset {})",
            e.valid_up_to()
        )
    })?;
    // One newline ends the dictionary (npyz drops it); before it, the Python literal grammar
    // allows only spaces, tabs and form feeds as white space.
    let body = text.strip_suffix('\n').unwrap_or(text);
    let mut depth = 0usize;
    let mut quote = None;
    for (at, c) in body.char_indices() {
        if c == '\\' || (c.is_control() && c != '\t' && c != '\x0c') {
            return Err(format!(
                "the header dictionary holds {c:?} at offset {at}, which a .npy header \
                 such as {NPY_HEADER_EXAMPLE} does not contain"
            ));
        }
        // Without backslashes, a string ends at its next quote of the same kind, as in the
        // grammar npyz parses (which has no triple-quoted strings in effect).
        match (quote, c) {
            (Some(q), _) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '(' | '[' | '{') => {
                depth += 1;
                if depth > NPY_MAX_HEADER_NESTING {
                    return Err(format!(
                        "the header dictionary nests brackets more than \
                         {NPY_MAX_HEADER_NESTING} deep (offset {at}); a .npy header is a \
                         short dictionary such as {NPY_HEADER_EXAMPLE}"
                    ));
                }
            }
            (None, ')' | ']' | '}') => depth = depth.saturating_sub(1),
            (None, _) => {}
        }
    }
    check_npy_shape(body)
}

/// npyz multiplies a header's dimensions without checking for overflow (a panic in a debug
/// build, a wrong element count in a release build), so a shape whose product a `u64` cannot
/// hold is refused first. Other problems are left to npyz's messages.
fn check_npy_shape(body: &str) -> std::result::Result<(), String> {
    let Ok(py_literal::Value::Dict(items)) = body.parse::<py_literal::Value>() else {
        return Ok(());
    };
    let shape = items.iter().find_map(|(k, v)| match (k, v) {
        (
            py_literal::Value::String(k),
            py_literal::Value::Tuple(d) | py_literal::Value::List(d),
        ) if k == "shape" => Some(d),
        _ => None,
    });
    let Some(shape) = shape else { return Ok(()) };
    let dims: Option<Vec<u64>> = shape
        .iter()
        .map(|d| match d {
            py_literal::Value::Integer(i) => u64::try_from(i).ok(),
            _ => None,
        })
        .collect();
    let Some(dims) = dims else { return Ok(()) };
    if dims
        .iter()
        .try_fold(1u64, |n, &d| n.checked_mul(d))
        .is_none()
    {
        return Err(format!(
            "the header shape {dims:?} has more elements than a 64-bit count holds"
        ));
    }
    Ok(())
}

/// npyz's message for a header it cannot read, with the sizes where the file ended early.
fn describe_header_error(e: &std::io::Error, read: u64, file_len: Option<u64>) -> String {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        match file_len {
            Some(len) => format!("the file ends inside the .npy header ({len} bytes in all)"),
            None => format!("the file ends inside the .npy header (after {read} bytes)"),
        }
    } else {
        e.to_string()
    }
}

/// Product of a shape's dimensions, failing on overflow.
pub(crate) fn element_count(shape: &[usize]) -> Result<usize> {
    shape.iter().try_fold(1usize, |acc, &d| {
        acc.checked_mul(d)
            .ok_or_else(|| Error::Shape(format!("shape {shape:?} overflows the address space")))
    })
}

/// Fails with [`Error::NonFinite`] if any value is NaN or infinite.
pub(crate) fn check_finite(what: &str, data: &[f32]) -> Result<()> {
    match data.iter().position(|v| !v.is_finite()) {
        Some(index) => Err(Error::NonFinite {
            what: what.to_string(),
            index,
            value: data[index],
        }),
        None => Ok(()),
    }
}

fn join(dims: &[usize]) -> String {
    dims.iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A version 1.0 `.npy` file whose header dictionary is `dict` (padded to 64 bytes, as numpy
    /// writes it), followed by `data`.
    fn npy_with_header(dict: &str, data: &[u8]) -> Vec<u8> {
        let mut text = dict.as_bytes().to_vec();
        while !(10 + text.len() + 1).is_multiple_of(64) {
            text.push(b' ');
        }
        text.push(b'\n');
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend_from_slice(&(text.len() as u16).to_le_bytes());
        bytes.extend_from_slice(&text);
        bytes.extend_from_slice(data);
        bytes
    }

    /// Reads `bytes` in a thread and fails the test if that takes longer than `limit` (the
    /// thread is left behind; the test process ends without it).
    fn read_within(bytes: Vec<u8>, limit: Duration) -> Result<Tensor> {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(Tensor::from_npy_bytes(&bytes, "slow.npy"));
        });
        rx.recv_timeout(limit)
            .unwrap_or_else(|_| panic!("reading the .npy file took more than {limit:?}"))
    }

    fn npy_message(r: Result<Tensor>) -> String {
        match r {
            Err(e @ Error::Npy { .. }) => e.to_string(),
            other => panic!("expected an Error::Npy, got {other:?}"),
        }
    }

    #[test]
    fn deeply_nested_header_is_refused_quickly() {
        // npyz's parser tries each '[' twice and each '{' three times: 40 unclosed brackets
        // took 2^40 steps (a hang) before the header was checked first.
        for open in ["[", "{", "(", "[{("] {
            let dict = format!(
                "{{'descr': '<f4', 'fortran_order': False, 'shape': {}",
                open.repeat(40)
            );
            let msg = npy_message(read_within(
                npy_with_header(&dict, &[]),
                Duration::from_secs(10),
            ));
            assert!(
                msg.contains("slow.npy")
                    && msg.contains(&format!(
                        "nests brackets more than {NPY_MAX_HEADER_NESTING} deep"
                    )),
                "{msg}"
            );
        }
        // The deepest nesting allowed is parsed quickly, whatever follows it.
        let deepest = format!("{{'descr': [{}", "[".repeat(NPY_MAX_HEADER_NESTING - 2));
        let msg = npy_message(read_within(
            npy_with_header(&deepest, &[]),
            Duration::from_secs(10),
        ));
        assert!(msg.contains("could not parse"), "{msg}");
        // Brackets inside strings are text, not nesting.
        let quoted = format!(
            "{{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': ['{}', \"{}\"]}}",
            "[".repeat(50),
            "{".repeat(50)
        );
        let t = read_within(
            npy_with_header(&quoted, &[0, 0, 128, 63]),
            Duration::from_secs(10),
        );
        assert_eq!(t.unwrap().data(), &[1.0]);
    }

    #[test]
    fn header_length_beyond_numpy_limit_is_refused_without_allocating() {
        // A version 2.0 file of 12 bytes stating a 4 GiB header.
        let bytes = b"\x93NUMPY\x02\x00\xff\xff\xff\xff".to_vec();
        let msg = npy_message(read_within(bytes, Duration::from_secs(10)));
        assert!(
            msg.contains("length of 4294967295 bytes")
                && msg.contains(&NPY_MAX_HEADER_LEN.to_string()),
            "{msg}"
        );
        // The longest allowed header is read.
        let long = format!(
            "{{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'pad': '{}'}}",
            "x".repeat(NPY_MAX_HEADER_LEN - 200)
        );
        let bytes = npy_with_header(&long, &1.5f32.to_le_bytes());
        assert!(bytes.len() - 4 - 10 <= NPY_MAX_HEADER_LEN);
        assert_eq!(
            Tensor::from_npy_bytes(&bytes, "long.npy").unwrap().data(),
            &[1.5]
        );
    }

    #[test]
    fn shape_overflowing_u64_is_refused() {
        // npyz's unchecked product of the dimensions panicked here in a debug build.
        let dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967297), }";
        let msg = npy_message(Tensor::from_npy_bytes(
            &npy_with_header(dict, &[]),
            "big.npy",
        ));
        assert!(
            msg.contains("[4294967296, 4294967297] has more elements than"),
            "{msg}"
        );
    }

    #[test]
    fn odd_header_characters_are_named() {
        for (dict, what) in [
            ("{'descr': '<f4',\n 'shape': (1,)}", "'\\n' at offset 16"),
            ("{'descr': '<f\\x34', 'shape': (1,)}", "'\\\\' at offset 13"),
            ("{'descr': '<f4', 'shape': (1,)}\0", "'\\0' at offset 31"),
        ] {
            let msg = npy_message(Tensor::from_npy_bytes(
                &npy_with_header(dict, &[]),
                "odd.npy",
            ));
            assert!(msg.contains(what), "{what}: {msg}");
        }
        let mut bytes = npy_with_header("{'descr': '<f4', 'shape': (1,)}", &[0; 4]);
        bytes[12] = 0xff;
        let msg = npy_message(Tensor::from_npy_bytes(&bytes, "latin1.npy"));
        assert!(msg.contains("not UTF-8 text (offset 2)"), "{msg}");
        let mut bytes = npy_with_header("{}", &[]);
        bytes[6] = 4;
        let msg = npy_message(Tensor::from_npy_bytes(&bytes, "v4.npy"));
        assert!(msg.contains("unsupported .npy format version 4.0"), "{msg}");
    }
}
