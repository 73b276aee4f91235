//! Buffers on the GPU: [`GpuTensor`] (an f32 tensor in a storage buffer) and the
//! [`Context`] methods that make, fill and read them back (uniforms, read-only storage,
//! upload, readback). Every storage buffer is checked against the binding limit first.

use wgpu::util::DeviceExt;

use crate::error::{Error, Result};
use crate::gpu::Context;
use crate::tensor::Tensor;

impl Context {
    /// A uniform buffer holding `value`.
    pub(crate) fn uniform<T: bytemuck::Pod>(&self, label: &str, value: &T) -> wgpu::Buffer {
        self.device()
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: bytemuck::bytes_of(value),
                usage: wgpu::BufferUsages::UNIFORM,
            })
    }

    /// A read-only storage buffer holding `data` (at least 4 bytes, as WebGPU requires).
    pub(crate) fn storage<T: bytemuck::Pod>(
        &self,
        label: &str,
        data: &[T],
    ) -> Result<wgpu::Buffer> {
        let bytes: &[u8] = bytemuck::cast_slice(data);
        self.check_binding_size(label, bytes.len() as u64)?;
        let padded;
        let contents = if bytes.len() < 4 || !bytes.len().is_multiple_of(4) {
            let mut v = bytes.to_vec();
            v.resize(bytes.len().div_ceil(4).max(1) * 4, 0);
            padded = v;
            &padded[..]
        } else {
            bytes
        };
        Ok(self
            .device()
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
            }))
    }

    /// An uninitialised f32 tensor on the GPU.
    pub fn create_tensor(&self, label: &str, shape: &[usize]) -> Result<GpuTensor> {
        let len = crate::tensor::element_count(shape)?;
        let bytes = (len.max(1) * 4) as u64;
        self.check_binding_size(label, bytes)?;
        let buffer = self.device().create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_DST
                | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        Ok(GpuTensor {
            buffer,
            shape: shape.to_vec(),
        })
    }

    /// Uploads a tensor.
    pub fn upload(&self, label: &str, tensor: &Tensor) -> Result<GpuTensor> {
        let t = self.create_tensor(label, tensor.shape())?;
        if !tensor.is_empty() {
            self.queue()
                .write_buffer(&t.buffer, 0, bytemuck::cast_slice(tensor.data()));
        }
        Ok(t)
    }

    /// Fills a GPU tensor with one value (e.g. NaN, to poison an output before a test).
    pub fn fill(&self, tensor: &GpuTensor, value: f32) {
        let data = vec![value; tensor.len().max(1)];
        self.queue()
            .write_buffer(&tensor.buffer, 0, bytemuck::cast_slice(&data));
    }

    /// Reads a GPU tensor back.
    pub async fn download(&self, tensor: &GpuTensor) -> Result<Tensor> {
        let bytes = self
            .read_buffer(&tensor.buffer, 0, tensor.len() as u64 * 4)
            .await?;
        Tensor::new(tensor.shape.clone(), bytemuck::pod_collect_to_vec(&bytes))
    }

    /// Copies `size` bytes of `buffer` from `offset` to the host (after all submitted work).
    pub async fn read_buffer(
        &self,
        buffer: &wgpu::Buffer,
        offset: u64,
        size: u64,
    ) -> Result<Vec<u8>> {
        if size == 0 {
            return Ok(Vec::new());
        }
        let padded = size.div_ceil(4) * 4;
        let staging = self.device().create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: padded,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder = self
            .device()
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("readback"),
            });
        encoder.copy_buffer_to_buffer(buffer, offset, &staging, 0, padded);
        self.queue().submit([encoder.finish()]);
        let (tx, rx) = futures_channel::oneshot::channel();
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        self.poll_wait()?;
        let mapped = rx
            .await
            .map_err(|_| Error::Gpu("the buffer mapping was dropped".into()))?;
        self.check_errors()?;
        mapped.map_err(|e| Error::Gpu(format!("mapping a buffer for readback failed: {e}")))?;
        let out = {
            let view = staging
                .get_mapped_range(..)
                .map_err(|e| Error::Gpu(format!("reading a mapped buffer failed: {e}")))?;
            view[..size as usize].to_vec()
        };
        staging.unmap();
        Ok(out)
    }
}

/// An f32 tensor in a GPU storage buffer.
#[derive(Debug)]
pub struct GpuTensor {
    /// The buffer (usage STORAGE | COPY_SRC | COPY_DST), at least 4 bytes.
    pub buffer: wgpu::Buffer,
    shape: Vec<usize>,
}

impl GpuTensor {
    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    /// True when the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
