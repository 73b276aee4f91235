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
        let header = npyz::NpyHeader::from_reader(&mut reader).map_err(|e| {
            npy_err(format!(
                "not a readable .npy file: {}",
                describe_header_error(&e, reader.count, file_len)
            ))
        })?;
        let header_len = reader.count;
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
