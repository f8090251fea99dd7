//! Our HDR recorder beside the `hdrhistogram` crate doing the same work: record cost on one thread and on two
//! threads sharing one histogram (the crate needs `&mut self`, so a Mutex), memory, and p99 accuracy.

use _core::metrics::hdr::HdrRecorder;
use hdrhistogram::Histogram;
use std::hint::black_box;
use std::sync::{Arc, Mutex};
use std::time::Instant;

const N: usize = 2_000_000;

/// Deterministic log-normal-ish latencies in milliseconds (xorshift + Box-Muller), 0.1 ms .. 10 s.
fn latencies(n: usize) -> Vec<f64> {
    let mut s: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 11) as f64 / (1u64 << 53) as f64
    };
    (0..n)
        .map(|_| {
            let (u1, u2) = (next().max(1e-12), next());
            let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
            (4.0 + z).exp().clamp(0.1, 10_000.0)
        })
        .collect()
}

fn crate_histogram() -> Histogram<u64> {
    // Microseconds, 1 us .. 1 h, 3 significant digits: what a latency histogram in the crate would use.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).unwrap()
}

fn ns_per(start: Instant, n: usize) -> f64 {
    start.elapsed().as_nanos() as f64 / n as f64
}

fn main() {
    let values = latencies(N);
    let mut sorted = values.clone();
    sorted.sort_by(f64::total_cmp);
    let exact_p99 = sorted[(0.99 * N as f64).ceil() as usize - 1];

    let ours = HdrRecorder::default();
    let t = Instant::now();
    for &v in &values {
        ours.record(black_box(v));
    }
    let ours_1 = ns_per(t, N);

    let mut theirs = crate_histogram();
    let t = Instant::now();
    for &v in &values {
        theirs.record(black_box((v * 1000.0) as u64)).unwrap();
    }
    let theirs_1 = ns_per(t, N);

    let shared_ours = Arc::new(HdrRecorder::default());
    let shared_theirs = Arc::new(Mutex::new(crate_histogram()));
    let values = Arc::new(values);
    let run2 = |f: Arc<dyn Fn(f64) + Send + Sync>| {
        let t = Instant::now();
        let hs: Vec<_> = (0..2)
            .map(|_| {
                let (f, values) = (f.clone(), values.clone());
                std::thread::spawn(move || values.iter().for_each(|&v| f(black_box(v))))
            })
            .collect();
        hs.into_iter().for_each(|h| h.join().unwrap());
        ns_per(t, 2 * N)
    };
    let so = shared_ours.clone();
    let ours_2 = run2(Arc::new(move |v| so.record(v)));
    let st = shared_theirs.clone();
    let theirs_2 = run2(Arc::new(move |v| {
        st.lock().unwrap().record((v * 1000.0) as u64).unwrap()
    }));

    let ours_p99 = ours.quantile(0.99).unwrap();
    let theirs_p99 = theirs.value_at_quantile(0.99) as f64 / 1000.0;
    println!("record, one thread:            ours {ours_1:6.1} ns   hdrhistogram {theirs_1:6.1} ns");
    println!("record, two threads, shared:   ours {ours_2:6.1} ns   hdrhistogram behind a Mutex {theirs_2:6.1} ns");
    println!(
        "p99 relative error vs exact:   ours {:.4}%   hdrhistogram (3 significant digits) {:.4}%",
        (ours_p99 - exact_p99).abs() / exact_p99 * 100.0,
        (theirs_p99 - exact_p99).abs() / exact_p99 * 100.0
    );
    // The crate allocates its whole counts array (one u64 per distinct value) at construction.
    println!(
        "memory:                        ours {} KiB (allocated per binary exponent in use)   hdrhistogram {} KiB",
        ours.allocated_bytes() / 1024,
        theirs.distinct_values() * std::mem::size_of::<u64>() / 1024
    );
}
