//! rust_chain [SECONDS]: `main -> a -> b -> hot` in a Rust binary built with
//! the default release settings (`rustc -C opt-level=3`: no frame pointers),
//! for the DWARF unwinding tests. Each caller uses its callee's result after
//! the call (no tail calls); `#[inline(never)]` keeps every frame. It first
//! sleeps 250 ms so that the profiler has loaded the process's unwind
//! tables (how soon it does is what the short-children test measures).
use std::hint::black_box;
use std::time::{Duration, Instant};

#[inline(never)]
fn hot(n: u64) -> u64 {
    let mut x = black_box(n);
    for _ in 0..n * 40 {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        x = black_box(x);
    }
    x
}

#[inline(never)]
fn b(n: u64, sink: &mut u64) -> u64 {
    let r = hot(black_box(n));
    *sink = black_box(sink.wrapping_add(r));
    r ^ 2
}

#[inline(never)]
fn a(n: u64, sink: &mut u64) -> u64 {
    let r = b(black_box(n), sink);
    *sink = black_box(sink.wrapping_add(r));
    r ^ 1
}

fn main() {
    let seconds: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    std::thread::sleep(Duration::from_millis(250));
    let end = Instant::now() + Duration::from_secs_f64(seconds);
    let mut sink = 0u64;
    while Instant::now() < end {
        let r = a(black_box(20_000), &mut sink);
        sink = black_box(sink.wrapping_add(r));
    }
    println!("{sink}");
}
