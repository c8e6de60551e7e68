//! Interactive flame graph (SVG with embedded JavaScript), drawn by inferno
//! from the folded lines.

use std::io::{self, Write};

use inferno::flamegraph::{
    self,
    color::{MultiPalette, Palette},
};

use super::folded::folded_lines;
use crate::profile::Profile;

/// What can be set on the flame graph; everything has a default.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SvgOptions {
    /// Defaults to `Flame graph: <target>`.
    pub title: Option<String>,
    /// Defaults to the duration, frequency and number of samples, e.g.
    /// `12.0 s at 99 Hz, 1188 samples`.
    pub subtitle: Option<String>,
    /// Width in pixels; inferno's default (1200) when `None`.
    pub width: Option<usize>,
}

/// The default title: `Flame graph: <meta.target>`.
pub fn default_title(profile: &Profile) -> String {
    if profile.meta.target.is_empty() {
        "Flame graph".to_string()
    } else {
        format!("Flame graph: {}", profile.meta.target)
    }
}

/// The default subtitle, e.g. `12.0 s at 99 Hz, 1188 samples`.
pub fn default_subtitle(profile: &Profile) -> String {
    let meta = &profile.meta;
    let seconds = meta.duration_nanos as f64 / 1e9;
    let total = profile.total_samples();
    let unit = if total == 1 { "sample" } else { "samples" };
    format!("{seconds:.1} s at {} Hz, {total} {unit}", meta.frequency_hz)
}

/// Draws the flame graph of `profile` into `writer`.
///
/// The output depends only on the profile and the options: the same input
/// gives a byte-identical SVG. A profile without samples is an error
/// (`InvalidData`), as it is for inferno.
pub fn write_svg<W: Write>(profile: &Profile, options: &SvgOptions, writer: W) -> io::Result<()> {
    let lines = folded_lines(profile);
    let mut opt = flamegraph::Options::default();
    // The Java palette reads the suffixes `Profile::frame_names` adds
    // (inferno 0.12.8, src/flamegraph/color/palettes.rs, `java::resolve`):
    // a name ending in `_[k]` (kernel) is orange, `_[i]` (inlined) aqua,
    // `_[j]` (JIT) green; without a suffix, names with `::` (C++, Rust) are
    // yellow, names that look like Java (`/`, `.`, or a leading capital, e.g.
    // `libc.so.6+0x1234`) green, and the rest (C) red. So kernel frames never
    // share a colour with user frames. The suffixes are removed from the
    // labels (`deannotate`), so they are not shown.
    opt.colors = Palette::Multi(MultiPalette::Java);
    // Without this inferno picks shades with a thread-local PRNG whose state
    // carries over between calls, so two renders would differ. `deterministic`
    // derives them from an FNV hash of the frame name instead (stable across
    // machines, unlike `hash`'s weighting scheme it needs nothing else).
    opt.deterministic = true;
    opt.title = options
        .title
        .clone()
        .unwrap_or_else(|| default_title(profile));
    opt.subtitle = Some(
        options
            .subtitle
            .clone()
            .unwrap_or_else(|| default_subtitle(profile)),
    );
    opt.count_name = "samples".to_string();
    opt.image_width = options.width;
    let mut writer = writer;
    flamegraph::from_lines(&mut opt, lines.iter().map(String::as_str), &mut writer)?;
    writer.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::test_profile::{check_golden, demo_profile};

    fn render(profile: &Profile, options: &SvgOptions) -> String {
        let mut out = Vec::new();
        write_svg(profile, options, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    /// The `fill` of the rectangle of the first frame whose tooltip starts
    /// with `name (`.
    fn fill_of(svg: &str, name: &str) -> String {
        let start = svg
            .find(&format!("<title>{name} ("))
            .unwrap_or_else(|| panic!("no frame {name}"));
        let rest = &svg[start..];
        let fill = rest.find("fill=\"").unwrap() + 6;
        rest[fill..fill + rest[fill..].find('"').unwrap()].to_string()
    }

    #[test]
    fn demo_profile_matches_golden_file() {
        let svg = render(&demo_profile(), &SvgOptions::default());
        check_golden("flame.svg", svg.as_bytes());
    }

    #[test]
    fn rendering_is_deterministic() {
        let profile = demo_profile();
        // Rendered twice on the same thread: inferno's PRNG would have moved on.
        assert_eq!(
            render(&profile, &SvgOptions::default()),
            render(&profile, &SvgOptions::default())
        );
    }

    #[test]
    fn default_title_and_subtitle() {
        let svg = render(&demo_profile(), &SvgOptions::default());
        assert!(svg.contains(">Flame graph: pid 100 (demo)<"), "{svg}");
        assert!(svg.contains(">12.0 s at 99 Hz, 125 samples<"), "{svg}");
    }

    #[test]
    fn subtitle_rounds_duration_and_counts_samples() {
        let mut profile = demo_profile();
        profile.meta.duration_nanos = 1_260_000_000;
        profile.meta.frequency_hz = 1000;
        profile.samples.truncate(1);
        profile.samples[0].count = 1;
        assert_eq!(default_subtitle(&profile), "1.3 s at 1000 Hz, 1 sample");
    }

    #[test]
    fn given_title_is_used_and_escaped() {
        let options = SvgOptions {
            title: Some("a <b> & c".into()),
            subtitle: Some("sub".into()),
            width: Some(800),
        };
        let svg = render(&demo_profile(), &options);
        assert!(svg.contains(">a &lt;b&gt; &amp; c<"), "{svg}");
        assert!(svg.contains(">sub<"));
        assert!(svg.contains("width=\"800\""));
        assert!(!svg.contains("Flame graph: pid"));
    }

    #[test]
    fn kernel_frames_are_coloured_apart_from_user_frames() {
        let svg = render(&demo_profile(), &SvgOptions::default());
        // The suffix is not shown, but picks the colour.
        assert!(!svg.contains("vfs_write_[k]"));
        let kernel =
            ["vfs_write", "ksys_write", "do_syscall_64", "worker_thread"].map(|n| fill_of(&svg, n));
        let user = [
            "main",
            "_start",
            "demo::compute",
            "demo::fib",
            "__libc_start_call_main",
        ]
        .map(|n| fill_of(&svg, n));
        for k in &kernel {
            assert!(
                !user.contains(k),
                "kernel colour {k} also used for a user frame: {user:?}"
            );
            // inferno's orange: red 190..=255, green 90..=155, blue 0.
            let rgb: Vec<u32> = k
                .trim_start_matches("rgb(")
                .trim_end_matches(')')
                .split(',')
                .map(|c| c.parse().unwrap())
                .collect();
            assert!(
                rgb[0] >= 190 && (90..=155).contains(&rgb[1]) && rgb[2] == 0,
                "{k} is not orange"
            );
        }
        let inlined = fill_of(&svg, "demo::hash::mix");
        assert!(!user.contains(&inlined) && !kernel.contains(&inlined));
    }

    #[test]
    fn empty_profile_is_an_error() {
        let err = write_svg(&Profile::default(), &SvgOptions::default(), io::sink()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
