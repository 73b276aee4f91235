//! Kernel timing with timestamp queries: each timed compute pass writes a begin and an end
//! timestamp; [`GpuTimer::read`] turns them into milliseconds per pass.
//!
//! Only available when the device has `TIMESTAMP_QUERY`; callers fall back to wall-clock time
//! of submit + wait otherwise (see [`crate::bench`]).

use crate::error::{Error, Result};
use crate::gpu::Context;

/// A set of timestamp queries for up to `capacity` timed passes.
pub struct GpuTimer {
    queries: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    capacity: u32,
    used: u32,
    period_ns: f64,
}

impl GpuTimer {
    /// A timer for `capacity` passes, or `None` when the device has no timestamp queries.
    pub fn new(ctx: &Context, capacity: u32) -> Option<GpuTimer> {
        if !ctx.has_timestamps() || capacity == 0 {
            return None;
        }
        let count = capacity * 2;
        let queries = ctx.device().create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("timer"),
            ty: wgpu::QueryType::Timestamp,
            count,
        });
        let resolve = ctx.device().create_buffer(&wgpu::BufferDescriptor {
            label: Some("timer resolve"),
            size: count as u64 * 8,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        Some(GpuTimer {
            queries,
            resolve,
            capacity,
            used: 0,
            period_ns: ctx.queue().get_timestamp_period() as f64,
        })
    }

    /// Timestamp writes for the next pass (`None` once all `capacity` slots are used).
    pub fn pass(&mut self) -> Option<wgpu::ComputePassTimestampWrites<'_>> {
        if self.used >= self.capacity {
            return None;
        }
        let i = self.used;
        self.used += 1;
        Some(wgpu::ComputePassTimestampWrites {
            query_set: &self.queries,
            beginning_of_pass_write_index: Some(2 * i),
            end_of_pass_write_index: Some(2 * i + 1),
        })
    }

    /// Records the resolution of the used queries; call once after the timed passes.
    pub fn resolve(&self, encoder: &mut wgpu::CommandEncoder) {
        if self.used > 0 {
            encoder.resolve_query_set(&self.queries, 0..self.used * 2, &self.resolve, 0);
        }
    }

    /// Milliseconds of each timed pass, in the order [`Self::pass`] handed them out, and
    /// resets the timer for reuse.
    pub async fn read(&mut self, ctx: &Context) -> Result<Vec<f64>> {
        let n = self.used;
        self.used = 0;
        if n == 0 {
            return Ok(Vec::new());
        }
        let bytes = ctx.read_buffer(&self.resolve, 0, n as u64 * 16).await?;
        let ticks: Vec<u64> = bytemuck::pod_collect_to_vec(&bytes);
        ticks
            .chunks_exact(2)
            .map(|p| {
                if p[1] < p[0] {
                    Err(Error::Gpu(format!(
                        "timestamps went backwards ({} then {})",
                        p[0], p[1]
                    )))
                } else {
                    Ok((p[1] - p[0]) as f64 * self.period_ns / 1e6)
                }
            })
            .collect()
    }
}
