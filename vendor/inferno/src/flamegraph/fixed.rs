//! Fixed-precision float formatting, the same text as `{:.N}`, faster.
//!
//! Added by the profiler's vendored copy (see the workspace's
//! `vendor/README.md`). `{:.N}` on an `f64` goes through the standard
//! library's exact mode (Grisu with a Dragon4 fallback), ~220 ns a number;
//! a flame graph writes four or five per frame, so for a graph of a few
//! thousand frames that was about half of writing the SVG.
//!
//! The fast path scales by 10^N and rounds in floating point. Away from a
//! rounding tie the scaled value's error (at most half an ulp, < 2^-21 below
//! 2^32) cannot move it across a `.5`, so its rounding is the correctly
//! rounded result the standard library prints; near a tie, and for large,
//! infinite or NaN values, the standard library formats it.

use std::fmt;

/// `Fixed(value, places)` displays as `format!("{:.places$}", value)`
/// (width, fill and alignment flags are not applied: inferno uses none).
#[derive(Clone, Copy, Debug)]
pub(super) struct Fixed(pub(super) f64, pub(super) usize);

const POW10: [u64; 7] = [1, 10, 100, 1_000, 10_000, 100_000, 1_000_000];
/// Scaled values below this have an ulp of at most 2^-20.
const FAST_LIMIT: f64 = 4_294_967_296.0;
/// How close to a tie the scaled value may come before the exact path is taken.
const TIE_MARGIN: f64 = 1e-5;

impl fmt::Display for Fixed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Fixed(value, places) = *self;
        if places < POW10.len() {
            let scale = POW10[places];
            let scaled = (value * scale as f64).abs();
            let fraction = scaled - scaled.trunc();
            if scaled < FAST_LIMIT && (fraction - 0.5).abs() > TIE_MARGIN {
                // At most 10 integer digits (below 2^32), a point, 6 places
                // and a sign; written backwards.
                let mut text = [0u8; 20];
                let mut at = text.len();
                let mut push = |byte: u8| {
                    at -= 1;
                    text[at] = byte;
                };
                let n = scaled.round() as u64;
                let (mut int, mut rest) = (n / scale, n % scale);
                for _ in 0..places {
                    push(b'0' + (rest % 10) as u8);
                    rest /= 10;
                }
                if places > 0 {
                    push(b'.');
                }
                loop {
                    push(b'0' + (int % 10) as u8);
                    int /= 10;
                    if int == 0 {
                        break;
                    }
                }
                if value.is_sign_negative() {
                    push(b'-');
                }
                let text = std::str::from_utf8(&text[at..]).map_err(|_| fmt::Error)?;
                return f.write_str(text);
            }
        }
        write!(f, "{value:.places$}")
    }
}

#[cfg(test)]
mod tests {
    use super::Fixed;

    fn check(value: f64, places: usize) {
        assert_eq!(
            Fixed(value, places).to_string(),
            format!("{value:.places$}"),
            "{value:e} to {places} places"
        );
    }

    #[test]
    fn same_text_as_the_standard_library() {
        let specials = [
            0.0, -0.0, 0.5, 1.5, 2.5, 0.125, 0.375, 0.00005, 0.000049999, 99.99995, 100.0,
            -0.00001, -1.23456, 1e-300, 4_294_967_295.5, 4_294_967_296.0, 1e20, f64::MAX,
            f64::INFINITY, f64::NEG_INFINITY, f64::NAN, 33.333333333333336, 66.66666666666667,
        ];
        for places in 0..=7 {
            for v in specials {
                check(v, places);
            }
        }
        // Percentages and pixel offsets as a flame graph makes them, and a
        // spread of magnitudes from a simple generator.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for i in 0..200_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let unit = (x >> 11) as f64 / (1u64 << 53) as f64;
            let pct = (i % 7919) as f64 * 100.0 / 7919.0;
            let px = (i % 4000) as f64 * 1200.0 / 4000.0 + 10.0;
            let wide = unit * 10f64.powi((i % 24) as i32 - 8);
            for v in [pct, px, wide, -wide, unit * 100.0] {
                check(v, 2);
                check(v, 4);
            }
        }
    }
}
