//! Wire encodings of finished spans for export: OTLP protobuf and JSON lines, in batches, touching no Python.
pub mod json;
pub mod otlp;

use crate::trace::span::SpanRecord;

/// Asks for the memory of the span `ahead` of the one being encoded, and for the attributes of the next one.
///
/// A batch's records were written by the request threads, on other cores: encoding waited on a cache miss at the
/// first touch of each record (a quarter of the JSON encoder's time, perf). Prefetching overlaps those misses.
#[inline(always)]
pub(crate) fn prefetch(next: Option<&SpanRecord>, ahead: Option<&SpanRecord>) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        fn lines(p: *const u8, bytes: usize) {
            let mut off = 0;
            while off < bytes {
                // SAFETY: a prefetch is a hint that never faults, whatever the address.
                unsafe { _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(off).cast()) };
                off += 64;
            }
        }
        if let Some(r) = ahead {
            lines((r as *const SpanRecord).cast(), std::mem::size_of::<SpanRecord>());
        }
        if let Some(r) = next {
            // Asked for one span earlier (as `ahead`): its attribute pointer is likely in cache by now.
            lines(
                r.attributes.as_ptr().cast(),
                std::mem::size_of_val(r.attributes.as_slice()).min(512),
            );
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (next, ahead);
}
