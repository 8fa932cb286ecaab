//! The timeline plot (PNG): emits per second by answer, delivery latency per second, and
//! the faults as shaded bands, over the run's time.

use std::path::Path;

use plotters::prelude::*;
use plotters::style::FontStyle;

use super::check::Bucket;
use super::error::ChaosError;
use super::record::FaultRecord;

const FONT_CANDIDATES: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
];

/// Registers a TrueType font for the labels (`RAFTCAST_CHAOS_FONT` or a usual system path);
/// false when none is found (the plot then has no text).
fn register_font() -> bool {
    static DONE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *DONE.get_or_init(|| {
        let env_font = std::env::var("RAFTCAST_CHAOS_FONT").ok();
        let candidates = env_font
            .iter()
            .map(String::as_str)
            .chain(FONT_CANDIDATES.iter().copied());
        for path in candidates {
            if let Ok(bytes) = std::fs::read(path) {
                // plotters keeps a &'static reference: the font lives for the whole process.
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                    return true;
                }
            }
        }
        false
    })
}

/// A line of a panel: its name, colour and value per bucket.
type Series = (&'static str, RGBColor, Box<dyn Fn(&Bucket) -> f64>);

fn fault_color(i: usize) -> RGBAColor {
    const C: [RGBColor; 4] = [RED, BLUE, MAGENTA, CYAN];
    C[i % C.len()].mix(0.15)
}

/// Draws the timeline to `path`.
pub fn draw(
    path: &Path,
    timeline: &[Bucket],
    faults: &[FaultRecord],
    title: &str,
) -> Result<(), ChaosError> {
    let e = |e: &dyn std::fmt::Display| ChaosError::Plot(e.to_string());
    let text = register_font();
    let root = BitMapBackend::new(path, (1400, 900)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let root = if text {
        root.titled(title, ("sans-serif", 22)).map_err(|x| e(&x))?
    } else {
        root
    };
    let areas = root.split_evenly((2, 1));
    let t_max = timeline.last().map_or(1.0, |b| b.t_s as f64 + 1.0);
    let rate_max = timeline
        .iter()
        .map(|b| (b.ok + b.refused + b.failed) as f64)
        .fold(1.0, f64::max)
        * 1.1;
    let lat_max = timeline
        .iter()
        .map(|b| b.delivery_max_ms)
        .fold(1.0, f64::max)
        * 1.1;

    let panels: [(&str, f64); 2] = [
        ("emits per second", rate_max),
        ("delivery latency (ms)", lat_max),
    ];
    for (k, (area, (label, y_max))) in areas.iter().zip(panels).enumerate() {
        let mut b = ChartBuilder::on(area);
        b.margin(12).x_label_area_size(35).y_label_area_size(60);
        let mut chart = b
            .build_cartesian_2d(0.0..t_max, 0.0..y_max)
            .map_err(|x| e(&x))?;
        let mut mesh = chart.configure_mesh();
        if text {
            mesh.x_desc("time since load start (s)").y_desc(label);
        } else {
            mesh.x_labels(0).y_labels(0);
        }
        mesh.draw().map_err(|x| e(&x))?;
        for (i, f) in faults.iter().enumerate() {
            let (a, z) = (
                f.start_ms / 1000.0,
                (f.end_ms / 1000.0).max(f.start_ms / 1000.0 + 0.2),
            );
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(a, 0.0), (z, y_max)],
                    fault_color(i).filled(),
                )))
                .map_err(|x| e(&x))?;
            if text && k == 0 {
                chart
                    .draw_series(std::iter::once(Text::new(
                        f.kind.name().to_owned(),
                        (a, y_max * (0.97 - 0.05 * (i % 3) as f64)),
                        ("sans-serif", 13),
                    )))
                    .map_err(|x| e(&x))?;
            }
        }
        let series: Vec<Series> = if k == 0 {
            vec![
                ("200", GREEN, Box::new(|b: &Bucket| b.ok as f64)),
                ("503", RED, Box::new(|b: &Bucket| b.refused as f64)),
                (
                    "no answer/other",
                    BLACK,
                    Box::new(|b: &Bucket| b.failed as f64),
                ),
            ]
        } else {
            vec![
                ("p99", BLUE, Box::new(|b: &Bucket| b.delivery_p99_ms)),
                ("max", RED, Box::new(|b: &Bucket| b.delivery_max_ms)),
            ]
        };
        for (name, color, f) in series {
            let s = chart
                .draw_series(LineSeries::new(
                    timeline.iter().map(|b| (b.t_s as f64 + 0.5, f(b))),
                    color.stroke_width(2),
                ))
                .map_err(|x| e(&x))?;
            if text {
                s.label(name).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
            }
        }
        if text {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .position(SeriesLabelPosition::UpperRight)
                .draw()
                .map_err(|x| e(&x))?;
        }
    }
    root.present().map_err(|x| e(&x))?;
    Ok(())
}
