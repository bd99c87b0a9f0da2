//! `--plot FILE.svg`: two small charts, latency percentiles and throughput over
//! time. Plain SVG written directly (a chart library would need system fonts to
//! label its axes).

use crate::report::{Figures, Report};
use std::fmt::Write;

const WIDTH: f64 = 900.0;
const HEIGHT: f64 = 320.0;
const MARGIN: f64 = 60.0;

pub fn write_svg<F: Figures>(report: &Report<F>, path: &std::path::Path) -> std::io::Result<()> {
    let mut svg = String::new();
    let total_height = HEIGHT * 2.0 + 40.0;
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{total_height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    percentiles(&mut svg, report, 0.0);
    throughput(&mut svg, report, HEIGHT + 20.0);
    svg.push_str("</svg>\n");
    std::fs::write(path, svg)
}

fn frame(svg: &mut String, top: f64, title: &str, y_max: f64, y_unit: &str) {
    let (left, bottom) = (MARGIN, top + HEIGHT - MARGIN);
    let _ = write!(
        svg,
        r#"<text x="{left}" y="{}" font-size="14">{title}</text>"#,
        top + 20.0
    );
    let _ = write!(
        svg,
        r#"<line x1="{left}" y1="{bottom}" x2="{}" y2="{bottom}" stroke="black"/><line x1="{left}" y1="{}" x2="{left}" y2="{bottom}" stroke="black"/>"#,
        WIDTH - 20.0,
        top + 30.0
    );
    for i in 0..=4 {
        let value = y_max * i as f64 / 4.0;
        let y = bottom - (bottom - top - 30.0) * i as f64 / 4.0;
        let _ = write!(
            svg,
            r##"<text x="5" y="{y}">{value:.1}{y_unit}</text><line x1="{left}" y1="{y}" x2="{}" y2="{y}" stroke="#ddd"/>"##,
            WIDTH - 20.0
        );
    }
}

fn percentiles<F: Figures>(svg: &mut String, report: &Report<F>, top: f64) {
    let l = &report.latency_ms;
    let bars = [
        ("p50", l.p50),
        ("p90", l.p90),
        ("p99", l.p99),
        ("p99.9", l.p999),
        ("max", l.max),
    ];
    let y_max = l.max.max(0.001);
    frame(svg, top, "End-to-end latency (ms)", y_max, "");
    let bottom = top + HEIGHT - MARGIN;
    let span = bottom - top - 30.0;
    let slot = (WIDTH - MARGIN - 20.0) / bars.len() as f64;
    for (i, (name, value)) in bars.iter().enumerate() {
        let height = span * value / y_max;
        let x = MARGIN + slot * i as f64 + slot * 0.2;
        let _ = write!(
            svg,
            r##"<rect x="{x}" y="{}" width="{}" height="{height}" fill="#4a7bd0"/><text x="{x}" y="{}">{name} {value:.2}</text>"##,
            bottom - height,
            slot * 0.6,
            bottom + 16.0
        );
    }
}

fn throughput<F: Figures>(svg: &mut String, report: &Report<F>, top: f64) {
    let y_max = report.timeline.iter().map(|(_, v)| *v).fold(1.0, f64::max);
    let x_max = report.timeline.last().map_or(1.0, |(t, _)| *t).max(1.0);
    frame(
        svg,
        top,
        &format!("Throughput ({}/s)", report.scenario),
        y_max,
        "",
    );
    let bottom = top + HEIGHT - MARGIN;
    let (span_x, span_y) = (WIDTH - MARGIN - 20.0, bottom - top - 30.0);
    let points: Vec<String> = report
        .timeline
        .iter()
        .map(|(t, v)| {
            format!(
                "{:.1},{:.1}",
                MARGIN + span_x * t / x_max,
                bottom - span_y * v / y_max
            )
        })
        .collect();
    let _ = write!(
        svg,
        r##"<polyline fill="none" stroke="#d0504a" stroke-width="2" points="{}"/><text x="{}" y="{}">{x_max:.0} s</text>"##,
        points.join(" "),
        WIDTH - 60.0,
        bottom + 16.0
    );
}
