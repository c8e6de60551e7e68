//! Interactive flame graph (SVG with embedded JavaScript), drawn by inferno
//! from the folded lines.

use std::io::{self, Write};

use inferno::flamegraph::{
    self,
    color::{self, BasicPalette, MultiPalette, Palette},
};

use super::folded::folded_lines;
use crate::profile::{FrameKind, Profile, ProfileKind, ThreadState};

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

/// The default title: `Flame graph: <meta.target>` (`Off-CPU time: ...`,
/// `Wall-clock time: ...` for those kinds).
pub fn default_title(profile: &Profile) -> String {
    let what = match profile.meta.kind {
        ProfileKind::Cpu => "Flame graph",
        ProfileKind::OffCpu => "Off-CPU time",
        ProfileKind::Wall => "Wall-clock time",
    };
    if profile.meta.target.is_empty() {
        what.to_string()
    } else {
        format!("{what}: {}", profile.meta.target)
    }
}

/// Seconds with one decimal, or milliseconds below a tenth of a second.
pub fn format_nanos(nanos: u64) -> String {
    if nanos >= 100_000_000 {
        format!("{:.1} s", nanos as f64 / 1e9)
    } else {
        format!("{:.1} ms", nanos as f64 / 1e6)
    }
}

/// The default subtitle, e.g. `12.0 s at 99 Hz, 1188 samples`, or for
/// off-CPU time `12.0 s, 8.1 s off CPU in 812 blocks (of it 0.2 s waiting
/// for a CPU)`.
pub fn default_subtitle(profile: &Profile) -> String {
    let meta = &profile.meta;
    let seconds = meta.duration_nanos as f64 / 1e9;
    let total = profile.total_samples();
    let unit = if total == 1 { "sample" } else { "samples" };
    let nanos_in = |state: ThreadState| -> u64 {
        profile
            .samples
            .iter()
            .filter(|s| s.state == state)
            .map(|s| s.nanos)
            .sum()
    };
    let off_cpu = || {
        let blocks: u64 = profile
            .samples
            .iter()
            .filter(|s| s.state != ThreadState::OnCpu)
            .map(|s| s.count)
            .sum();
        let runnable = nanos_in(ThreadState::Runnable);
        format!(
            "{} off CPU in {blocks} blocks (of it {} waiting for a CPU)",
            format_nanos(nanos_in(ThreadState::Blocked) + runnable),
            format_nanos(runnable)
        )
    };
    match meta.kind {
        ProfileKind::Cpu => format!("{seconds:.1} s at {} Hz, {total} {unit}", meta.frequency_hz),
        ProfileKind::OffCpu => format!("{seconds:.1} s, {}", off_cpu()),
        ProfileKind::Wall => format!(
            "{seconds:.1} s; {} on CPU ({} {unit} at {} Hz), {}",
            format_nanos(nanos_in(ThreadState::OnCpu)),
            profile
                .samples
                .iter()
                .filter(|s| s.state == ThreadState::OnCpu)
                .map(|s| s.count)
                .sum::<u64>(),
            meta.frequency_hz,
            off_cpu()
        ),
    }
}

/// Draws the flame graph of `profile` into `writer`.
///
/// The output depends only on the profile and the options: the same input
/// gives a byte-identical SVG. A profile without samples is an error
/// (`InvalidData`), as it is for inferno.
pub fn write_svg<W: Write>(profile: &Profile, options: &SvgOptions, writer: W) -> io::Result<()> {
    write_svg_lines(profile, &folded_lines(profile), options, writer)
}

/// As [`write_svg`], from the profile's folded lines made already.
pub fn write_svg_lines<W: Write>(
    profile: &Profile,
    lines: &[String],
    options: &SvgOptions,
    writer: W,
) -> io::Result<()> {
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
    if profile.meta.kind == ProfileKind::OffCpu {
        // Blue for waiting, as flame graphs of off-CPU time are drawn
        // (FlameGraph's and inferno's `io` palette).
        opt.colors = Palette::Basic(BasicPalette::Io);
    }
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
    if profile.meta.kind.is_time() {
        // The folded values are nanoseconds; tooltips show milliseconds.
        opt.count_name = "ms".to_string();
        opt.factor = 1e-6;
    }
    opt.image_width = options.width;
    // Python frames in shades of blue, apart from native code (and from
    // JIT code, which the Java palette makes green like names with dots).
    let mut python_colors = python_palette(profile);
    if python_colors.iter().next().is_some() {
        opt.palette_map = Some(&mut python_colors);
    }
    let mut writer = writer;
    flamegraph::from_lines(&mut opt, lines.iter().map(String::as_str), &mut writer)?;
    writer.flush()
}

/// A colour for each Python frame name: blue, its shade from an FNV hash
/// of the name (stable, as `deterministic` is for the palette's colours).
fn python_palette(profile: &Profile) -> color::PaletteMap {
    let mut map = color::PaletteMap::default();
    let names = profile.location_frame_names();
    for (location, names) in profile.locations.iter().zip(names) {
        if location.kind != FrameKind::Python {
            continue;
        }
        for name in names {
            let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
            });
            let shade = |bits: u32, range: u64| (hash >> bits) % range;
            map.insert(
                name,
                color::Color {
                    r: 60 + shade(0, 50) as u8,
                    g: 130 + shade(8, 60) as u8,
                    b: 205 + shade(16, 50) as u8,
                },
            );
        }
    }
    map
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

    /// The channels of a `rgb(r,g,b)` fill.
    fn rgb(fill: &str) -> Vec<u32> {
        fill.trim_start_matches("rgb(")
            .trim_end_matches(')')
            .split(',')
            .map(|c| c.parse().unwrap())
            .collect()
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
            let orange = rgb(k);
            assert!(
                orange[0] >= 190 && (90..=155).contains(&orange[1]) && orange[2] == 0,
                "{k} is not orange"
            );
        }
        let inlined = fill_of(&svg, "demo::hash::mix");
        assert!(!user.contains(&inlined) && !kernel.contains(&inlined));
    }

    #[test]
    fn python_frames_are_blue() {
        let mut profile = demo_profile();
        profile.locations.push(crate::profile::Location {
            kind: FrameKind::Python,
            address: 0x7f00_0000_1000,
            mapping: None,
            lines: vec![crate::profile::Line {
                function: "handler".into(),
                file: Some("/app/x.py".into()),
                line: Some(7),
            }],
        });
        let python = profile.locations.len() - 1;
        profile.samples[0].locations.push(python);
        let svg = render(&profile, &SvgOptions::default());
        let blue = rgb(&fill_of(&svg, "handler (/app/x.py:7)"));
        assert!(
            blue[2] >= 205 && blue[0] < 110 && blue[1] < 190,
            "{blue:?} is not one of the Python blues"
        );
        // Native frames keep the palette's colours.
        let main = rgb(&fill_of(&svg, "main"));
        assert!(main[2] < 205, "{main:?}");
    }

    #[test]
    fn empty_profile_is_an_error() {
        let err = write_svg(&Profile::default(), &SvgOptions::default(), io::sink()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn off_cpu_graph_is_blue_with_times_in_milliseconds() {
        let svg = render(
            &crate::output::test_profile::off_cpu_profile(),
            &SvgOptions::default(),
        );
        assert!(svg.contains(">Off-CPU time: pid 100 (demo)<"), "{svg}");
        assert!(
            svg.contains(">12.0 s, 3.5 s off CPU in 6 blocks (of it 0.5 s waiting for a CPU)<"),
            "{svg}"
        );
        assert!(
            svg.contains("<title>[blocked] (3,000 ms, 85.71%)</title>"),
            "{svg}"
        );
        // inferno's io palette: blue channel high, red and green lower.
        let fill = fill_of(&svg, "main");
        let rgb: Vec<u32> = fill
            .trim_start_matches("rgb(")
            .trim_end_matches(')')
            .split(',')
            .map(|c| c.trim().parse().unwrap())
            .collect();
        assert!(rgb[2] > rgb[0] && rgb[2] > rgb[1], "{fill}");
    }

    #[test]
    fn wall_graph_says_what_was_on_and_off_cpu() {
        let svg = render(
            &crate::output::test_profile::wall_profile(),
            &SvgOptions::default(),
        );
        assert!(svg.contains(">Wall-clock time: pid 100 (demo)<"), "{svg}");
        assert!(
            svg.contains(
                ">12.0 s; 1.2 s on CPU (125 samples at 99 Hz), 3.5 s off CPU in 6 blocks (of it 0.5 s waiting for a CPU)<"
            ),
            "{svg}"
        );
        // The Java palette still tells kernel frames apart.
        assert_ne!(fill_of(&svg, "vfs_write"), fill_of(&svg, "main"));
    }
}
