//! Sweeps: one fan-out run per viewer count, CSV rows, SVG plots and a markdown table.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;
use plotters::prelude::*;

use crate::fanout::{self, FanoutConfig, FanoutReport};

/// Columns of the sweep CSV, in order.
pub const CSV_HEADER: &str = "label,viewers,viewers_connected,frame_bytes,fps,frames_published,\
delivered_fraction,delivered_mb_s,p50_ms,p90_ms,p99_ms,max_ms,gaps,disconnected,relay_cpu_s,\
relay_cpu_cores,rss_connected_mib,rss_peak_mib,bench_cpu_s";

/// One CSV row for a run.
pub fn csv_row(label: &str, r: &FanoutReport) -> String {
    let opt = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.3}"));
    let mib = |v: Option<u64>| v.map_or(String::new(), |k| format!("{:.1}", k as f64 / 1024.0));
    format!(
        "{label},{},{},{},{},{},{:.5},{:.1},{:.2},{:.2},{:.2},{:.2},{},{},{},{},{},{},{:.3}",
        r.viewers_requested,
        r.viewers_connected,
        r.frame_bytes,
        r.fps,
        r.frames_published,
        r.delivered_fraction,
        r.delivered_bytes_per_s / 1e6,
        r.latency_p50_ms,
        r.latency_p90_ms,
        r.latency_p99_ms,
        r.latency_max_ms,
        r.sequence_gaps,
        r.viewers_disconnected,
        opt(r.relay_cpu_s),
        opt(r.relay_cpu_cores),
        mib(r.relay_rss_connected_kib),
        mib(r.relay_rss_peak_kib),
        r.bench_cpu_s,
    )
}

/// Runs `cfg` once per viewer count, stopping after the first run whose delivered
/// fraction is under 50%. Writes `{out}/{label}.csv` and the plots as it goes.
///
/// With `append`, rows are added to an existing CSV (so a caller can interleave relays,
/// one viewer count at a time, and still get one file and one plot per relay).
pub async fn run(
    base: &FanoutConfig,
    counts: &[usize],
    label: &str,
    out: &Path,
    append: bool,
) -> anyhow::Result<Vec<FanoutReport>> {
    std::fs::create_dir_all(out).with_context(|| format!("create {}", out.display()))?;
    let csv_path = out.join(format!("{label}.csv"));
    let mut csv = match std::fs::read_to_string(&csv_path) {
        Ok(old) if append && old.starts_with("label,") => old,
        _ => format!("{CSV_HEADER}\n"),
    };
    let mut reports = Vec::new();
    for (i, &n) in counts.iter().enumerate() {
        eprint!("[{}/{}] {label}: {n} viewers ... ", i + 1, counts.len());
        let cfg = FanoutConfig {
            viewers: n,
            ..base.clone()
        };
        let r = fanout::run(&cfg).await?;
        eprintln!(
            "delivered {:.2}%  p50 {:.1} ms  p99 {:.1} ms  relay cpu {}",
            r.delivered_fraction * 100.0,
            r.latency_p50_ms,
            r.latency_p99_ms,
            r.relay_cpu_cores
                .map_or("-".into(), |c| format!("{c:.2} cores")),
        );
        csv.push_str(&csv_row(label, &r));
        csv.push('\n');
        std::fs::write(&csv_path, &csv).with_context(|| format!("write {}", csv_path.display()))?;
        let collapsed = r.delivered_fraction < 0.5;
        reports.push(r);
        if collapsed {
            eprintln!("{label}: delivery under 50%; stopping the sweep");
            break;
        }
        if i + 1 < counts.len() {
            // Let the relay close the previous run's sockets.
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    }
    let rows = read_csv(&csv)?;
    plot(
        &rows,
        out,
        &format!("{label}-"),
        &format!("{label}, {} B frames", base.frame_bytes),
    )?;
    Ok(reports)
}

/// One parsed CSV row (the columns the plots and tables use).
#[derive(Debug, Clone)]
pub struct Row {
    /// Series name.
    pub label: String,
    /// Viewers requested.
    pub viewers: f64,
    /// Frame payload bytes.
    pub frame_bytes: f64,
    /// Delivered fraction.
    pub delivered: f64,
    /// Delivered MB/s.
    pub mb_s: f64,
    /// p50 latency in ms.
    pub p50: f64,
    /// p99 latency in ms.
    pub p99: f64,
    /// Relay CPU in cores, if measured.
    pub cpu: Option<f64>,
    /// Relay RSS once connected, MiB.
    pub rss_connected: Option<f64>,
    /// Relay peak RSS, MiB.
    pub rss_peak: Option<f64>,
}

/// Parses sweep CSV text (header line included; more headers are skipped).
pub fn read_csv(text: &str) -> anyhow::Result<Vec<Row>> {
    let names: Vec<&str> = CSV_HEADER.split(',').collect();
    let col = |n: &str| names.iter().position(|c| *c == n).expect("known column");
    let mut rows = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with("label,"))
    {
        let f: Vec<&str> = line.split(',').collect();
        if f.len() != names.len() {
            anyhow::bail!(
                "CSV line has {} fields, expected {}: {line}",
                f.len(),
                names.len()
            );
        }
        let num = |n: &str| f[col(n)].parse::<f64>().ok();
        let req = |n: &str| num(n).with_context(|| format!("bad {n} in {line}"));
        rows.push(Row {
            label: f[0].to_string(),
            viewers: req("viewers")?,
            frame_bytes: req("frame_bytes")?,
            delivered: req("delivered_fraction")?,
            mb_s: req("delivered_mb_s")?,
            p50: req("p50_ms")?,
            p99: req("p99_ms")?,
            cpu: num("relay_cpu_cores"),
            rss_connected: num("rss_connected_mib"),
            rss_peak: num("rss_peak_mib"),
        });
    }
    Ok(rows)
}

const COLORS: [RGBColor; 6] = [
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
];

/// Draws delivered fraction, p99 latency (log scale) and relay CPU against viewers, one
/// line per label, as `{out}/{prefix}delivered.svg`, `p99.svg` and `cpu.svg`.
pub fn plot(rows: &[Row], out: &Path, prefix: &str, title: &str) -> anyhow::Result<()> {
    let mut labels: Vec<&str> = Vec::new();
    for r in rows {
        if !labels.contains(&r.label.as_str()) {
            labels.push(&r.label);
        }
    }
    let max_x = rows.iter().map(|r| r.viewers).fold(1.0, f64::max) * 1.05;
    type Metric = fn(&Row) -> Option<f64>;
    let charts: [(&str, &str, Metric, bool); 3] = [
        (
            "delivered",
            "delivered fraction",
            |r| Some(r.delivered),
            false,
        ),
        (
            "p99",
            "p99 latency (ms, log)",
            |r| Some(r.p99.max(0.1)),
            true,
        ),
        ("cpu", "relay CPU (cores)", |r| r.cpu, false),
    ];
    for (file, y_name, metric, log) in charts {
        let path = out.join(format!("{prefix}{file}.svg"));
        let root = SVGBackend::new(&path, (720, 440)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
        let ys: Vec<f64> = rows.iter().filter_map(metric).collect();
        let max_y = ys.iter().copied().fold(0.0, f64::max);
        let draw = |root: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>| -> Result<(), Box<dyn std::error::Error + '_>> {
            let caption = format!("{y_name} vs viewers: {title}");
            let mut builder = ChartBuilder::on(root);
            builder
                .caption(caption, ("sans-serif", 18))
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(60);
            macro_rules! body {
                ($chart:expr) => {{
                    let mut chart = $chart;
                    chart
                        .configure_mesh()
                        .light_line_style(RGBColor(0xee, 0xee, 0xee))
                        .x_desc("viewers")
                        .y_desc(y_name)
                        .draw()?;
                    for (i, label) in labels.iter().enumerate() {
                        let color = COLORS[i % COLORS.len()];
                        let pts: Vec<(f64, f64)> = rows
                            .iter()
                            .filter(|r| r.label == *label)
                            .filter_map(|r| metric(r).map(|y| (r.viewers, y)))
                            .collect();
                        chart
                            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))?
                            .label(label.to_string())
                            .legend(move |(x, y)| {
                                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                            });
                        chart.draw_series(pts.into_iter().map(|p| Circle::new(p, 3, color.filled())))?;
                    }
                    chart
                        .configure_series_labels()
                        .background_style(WHITE.mix(0.8))
                        .border_style(BLACK)
                        .draw()?;
                }};
            }
            if log {
                body!(builder.build_cartesian_2d(0f64..max_x, (0.1f64..(max_y * 2.0).max(10.0)).log_scale())?);
            } else if file == "delivered" {
                body!(builder.build_cartesian_2d(0f64..max_x, 0f64..1.05f64)?);
            } else {
                body!(builder.build_cartesian_2d(0f64..max_x, 0f64..(max_y * 1.15).max(0.1))?);
            }
            root.present()?;
            Ok(())
        };
        draw(&root).map_err(|e| anyhow::anyhow!("plot {}: {e}", path.display()))?;
    }
    Ok(())
}

/// The sweep label of the kernel floor (`vswa-bench floor`), which [`markdown_table`]
/// divides by.
pub const FLOOR_LABEL: &str = "floor";

/// A markdown table of rows: relay, frame size, viewers, delivered, p50, p99, CPU, RSS.
/// When rows labelled [`FLOOR_LABEL`] are present, two more columns give each row's
/// relay CPU and p99 divided by the floor's at the same frame size and viewer count.
pub fn markdown_table(rows: &[Row]) -> String {
    let has_floor = rows.iter().any(|r| r.label == FLOOR_LABEL);
    let mut s = String::from(
        "| relay | frame bytes | viewers | delivered | delivered MB/s | p50 ms | p99 ms | relay CPU (cores) | RSS connected MiB | RSS peak MiB |",
    );
    s.push_str(if has_floor {
        " CPU ÷ floor | p99 ÷ floor |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    } else {
        "\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    });
    let opt = |v: Option<f64>, p: usize| v.map_or("-".into(), |v| format!("{v:.p$}"));
    for r in rows {
        let _ = write!(
            s,
            "| {} | {} | {} | {:.2}% | {:.0} | {:.1} | {:.1} | {} | {} | {} |",
            r.label,
            r.frame_bytes,
            r.viewers,
            r.delivered * 100.0,
            r.mb_s,
            r.p50,
            r.p99,
            opt(r.cpu, 2),
            opt(r.rss_connected, 1),
            opt(r.rss_peak, 1),
        );
        if has_floor {
            let floor = rows.iter().find(|f| {
                f.label == FLOOR_LABEL && f.frame_bytes == r.frame_bytes && f.viewers == r.viewers
            });
            let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
                (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
                _ => "-".into(),
            };
            let _ = write!(
                s,
                " {} | {} |",
                ratio(r.cpu, floor.and_then(|f| f.cpu)),
                ratio(Some(r.p99), floor.map(|f| f.p99)),
            );
        }
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_round_trip() {
        let line = "vswa,100,100,25000,30,300,0.99900,75.1,1.20,2.00,3.50,9.00,3,0,1.500,0.150,10.0,20.0,2.000";
        let rows = read_csv(&format!("{CSV_HEADER}\n{line}\n")).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].p99, 3.5);
        assert_eq!(rows[0].cpu, Some(0.15));
        assert!(markdown_table(&rows).contains("| vswa | 25000 | 100 | 99.90% |"));
        assert!(!markdown_table(&rows).contains("floor"));
    }

    #[test]
    fn ratios_to_the_floor() {
        let relay =
            "vswa,100,100,25000,30,300,1,75.1,1.20,2.00,4.00,9.00,0,0,1.500,0.150,10.0,20.0,2.000";
        let floor =
            "floor,100,100,25000,30,300,1,75.1,1.00,2.00,2.00,9.00,0,0,0.500,0.050,1.0,2.0,2.000";
        let rows = read_csv(&format!("{CSV_HEADER}\n{relay}\n{floor}\n")).unwrap();
        let t = markdown_table(&rows);
        assert!(t.contains("| CPU ÷ floor | p99 ÷ floor |"), "{t}");
        assert!(t.contains("| 20.0 | 3.00 | 2.00 |"), "{t}");
        assert!(t.contains("| 2.0 | 1.00 | 1.00 |"), "{t}");
    }
}
