//! The three PNG plots of a benchmark run: latency CDFs, throughput per scenario, memory per
//! connection (plotters; without a TrueType font they carry no text).

use std::path::Path;

use plotters::prelude::*;

use crate::error::{BenchError, Result};
use crate::report::{fmt_num, med, rows, SYSTEM_ORDER};
use crate::result::{Cdf, RunResult};

const FONT_CANDIDATES: [&str; 4] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
];

pub(crate) fn register_font() -> bool {
    let env_font = std::env::var("BENCH_FONT").ok();
    let candidates = env_font
        .iter()
        .map(String::as_str)
        .chain(FONT_CANDIDATES.iter().copied());
    for path in candidates {
        if let Ok(bytes) = std::fs::read(path) {
            // The font must live for the whole process: plotters keeps a &'static reference.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                return true;
            }
        }
    }
    false
}

/// A fixed colour per system name, so plots of different runs compare at a glance.
pub(crate) fn color_of(system: &str) -> usize {
    SYSTEM_ORDER
        .iter()
        .position(|s| *s == system)
        .unwrap_or(SYSTEM_ORDER.len())
}

fn color(i: usize) -> RGBColor {
    [
        RGBColor(214, 39, 40),
        RGBColor(31, 119, 180),
        RGBColor(44, 160, 44),
        RGBColor(148, 103, 189),
    ][i % 4]
}

pub(crate) fn color_name(i: usize) -> &'static str {
    ["red", "blue", "green", "purple"][i % 4]
}

fn perr<E: std::fmt::Display>(e: E) -> BenchError {
    BenchError::Plot(e.to_string())
}

/// The CDF of the first round that has one with this name prefix, per system.
fn cdf_for<'a>(results: &'a [RunResult], system: &str, prefix: &str) -> Option<&'a Cdf> {
    results
        .iter()
        .filter(|r| r.system == system)
        .flat_map(|r| r.cdfs.iter())
        .find(|c| c.name.starts_with(prefix) && !c.points.is_empty())
}

pub(crate) fn plot_cdfs(
    path: &Path,
    results: &[RunResult],
    systems: &[String],
    text: bool,
) -> Result<()> {
    let root = BitMapBackend::new(path, (1200, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(perr)?;
    let panels = root.split_evenly((1, 2));
    for (panel, (prefix, title)) in panels.iter().zip([
        ("cross-node", "M4 cross-node publish-to-deliver"),
        ("fan-out", "M3 one-room fan-out at fixed rate"),
    ]) {
        let curves: Vec<(usize, usize, &Cdf)> = systems
            .iter()
            .enumerate()
            .filter_map(|(i, s)| cdf_for(results, s, prefix).map(|c| (i, c)))
            .map(|(i, c)| (i, color_of(&systems[i]), c))
            .collect();
        let max = curves
            .iter()
            .flat_map(|(_, _, c)| c.points.iter().map(|p| p.0))
            .fold(1.0f64, f64::max);
        let min = curves
            .iter()
            .flat_map(|(_, _, c)| c.points.iter().map(|p| p.0))
            .fold(max, f64::min)
            .max(0.01);
        let mut b = ChartBuilder::on(panel);
        b.margin(15);
        if text {
            b.caption(title, ("sans-serif", 20))
                .x_label_area_size(40)
                .y_label_area_size(50);
        }
        let mut chart = b
            .build_cartesian_2d((min / 2.0..max * 1.2).log_scale(), 0f64..1.0)
            .map_err(perr)?;
        let mut mesh = chart.configure_mesh();
        if text {
            mesh.x_desc("latency (ms, log)")
                .y_desc("fraction delivered");
        } else {
            mesh.x_labels(0).y_labels(0);
        }
        mesh.draw().map_err(perr)?;
        for (i, ci, c) in curves {
            let s = chart
                .draw_series(LineSeries::new(
                    c.points.iter().map(|p| (p.0.max(0.01), p.1)),
                    color(ci).stroke_width(2),
                ))
                .map_err(perr)?;
            if text {
                s.label(systems[i].clone()).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color(ci).stroke_width(2))
                });
            }
        }
        if text {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .position(SeriesLabelPosition::LowerRight)
                .draw()
                .map_err(perr)?;
        }
    }
    root.present().map_err(perr)?;
    Ok(())
}

fn bar_panel(
    area: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    title: &str,
    unit: &str,
    bars: &[(usize, String, f64)],
    text: bool,
) -> Result<()> {
    let max = bars.iter().map(|b| b.2).fold(1e-9f64, f64::max);
    let mut b = ChartBuilder::on(area);
    b.margin(15);
    if text {
        b.caption(title, ("sans-serif", 20))
            .x_label_area_size(20)
            .y_label_area_size(70);
    }
    let mut chart = b
        .build_cartesian_2d(0f64..bars.len().max(1) as f64, 0f64..max * 1.25)
        .map_err(perr)?;
    let mut mesh = chart.configure_mesh();
    mesh.disable_x_mesh().x_labels(0);
    if text {
        mesh.y_desc(unit);
    } else {
        mesh.y_labels(0);
    }
    mesh.draw().map_err(perr)?;
    for (pos, (ci, name, v)) in bars.iter().enumerate() {
        let x = pos as f64;
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(x + 0.15, 0.0), (x + 0.85, *v)],
                color(*ci).filled(),
            )))
            .map_err(perr)?;
        if text {
            chart
                .draw_series(std::iter::once(Text::new(
                    format!("{name}: {}", super_short(*v)),
                    (x + 0.15, *v + max * 0.05),
                    ("sans-serif", 15),
                )))
                .map_err(perr)?;
        }
    }
    Ok(())
}

fn super_short(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e4 {
        format!("{:.1}k", v / 1e3)
    } else {
        fmt_num(v)
    }
}

fn bars_for(
    results: &[RunResult],
    systems: &[String],
    id: &str,
    name: &str,
) -> Vec<(usize, String, f64)> {
    let rows = rows(results);
    let Some(row) = rows.iter().find(|r| r.id == id && r.name == name) else {
        return Vec::new();
    };
    systems
        .iter()
        .filter_map(|s| med(row, s).map(|v| (color_of(s), s.clone(), v)))
        .collect()
}

pub(crate) fn plot_throughput(
    path: &Path,
    results: &[RunResult],
    systems: &[String],
    text: bool,
) -> Result<()> {
    let root = BitMapBackend::new(path, (1200, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(perr)?;
    let panels = root.split_evenly((1, 3));
    let specs = [
        (
            "M2",
            "max_fanout_deliveries_per_s",
            "M2 max fan-out",
            "deliveries/s",
        ),
        (
            "M5",
            "max_cross_node_emits_per_s",
            "M5 max cross-node emits",
            "emits/s",
        ),
        ("M6", "handshakes_per_s", "M6 handshakes", "handshakes/s"),
    ];
    for (panel, (id, name, title, unit)) in panels.iter().zip(specs) {
        bar_panel(
            panel,
            title,
            unit,
            &bars_for(results, systems, id, name),
            text,
        )?;
    }
    root.present().map_err(perr)?;
    Ok(())
}

pub(crate) fn plot_memory(
    path: &Path,
    results: &[RunResult],
    systems: &[String],
    text: bool,
) -> Result<()> {
    let root = BitMapBackend::new(path, (600, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(perr)?;
    let bars: Vec<(usize, String, f64)> = bars_for(results, systems, "M1", "rss_per_conn_bytes")
        .into_iter()
        .map(|(i, s, v)| (i, s, v / 1024.0))
        .collect();
    bar_panel(
        &root,
        "M1 RSS per idle connection",
        "KiB per connection",
        &bars,
        text,
    )?;
    root.present().map_err(perr)?;
    Ok(())
}
