//! Results: the table with ratios and goals, a CSV and a JSON file, and the throughput chart.

use std::fmt::Write as _;

use plotters::prelude::*;

use crate::Opts;

/// One throughput measurement.
#[derive(Clone, Debug)]
pub struct Throughput {
    pub name: String,
    pub size: usize,
    pub frames: u64,
    pub secs: f64,
    /// CPU seconds of both processes.
    pub cpu: f64,
}

impl Throughput {
    pub fn fps(&self) -> f64 {
        self.frames as f64 / self.secs
    }
    pub fn gbps(&self) -> f64 {
        self.fps() * self.size as f64 * 8.0 / 1e9
    }
    pub fn cpu_per_gb(&self) -> f64 {
        self.cpu / (self.frames as f64 * self.size as f64 / 1e9)
    }
}

/// One round-trip measurement.
#[derive(Clone, Debug)]
pub struct Latency {
    pub name: String,
    pub busy: bool,
    pub size: usize,
    pub p50_ns: u128,
    pub p99_ns: u128,
}

/// System calls of both processes over a busy stream.
#[derive(Clone, Debug)]
pub struct Syscalls {
    pub what: String,
    pub frames: u64,
    pub calls: u64,
    pub top: String,
}

#[derive(Debug, Default)]
pub struct Results {
    pub throughput: Vec<Throughput>,
    pub latency: Vec<Latency>,
    /// Bytes per second of a single-core memcpy, per size.
    pub memcpy: Vec<(usize, f64)>,
    pub syscalls: Vec<Syscalls>,
}

impl Results {
    fn tp(&self, name: &str, size: usize) -> Option<&Throughput> {
        self.throughput
            .iter()
            .find(|t| t.name == name && t.size == size)
    }
    fn lat(&self, name: &str, size: usize, busy: bool) -> Option<&Latency> {
        self.latency
            .iter()
            .find(|l| l.name == name && l.size == size && l.busy == busy)
    }
    fn memcpy_gbps(&self, size: usize) -> Option<f64> {
        self.memcpy
            .iter()
            .find(|(s, _)| *s == size)
            .map(|(_, b)| b * 8.0 / 1e9)
    }
}

fn goal(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

pub fn print_and_write(opts: &Opts, r: &Results) {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "\n{:<20} {:>6} {:>9} {:>8} {:>9} {:>8} {:>9} {:>9}",
        "throughput", "size", "Mpps", "Gbit/s", "CPU s/GB", "x AF_UNIX", "x AF_UNIX", "x memcpy"
    );
    let _ = writeln!(
        t,
        "{:<20} {:>6} {:>9} {:>8} {:>9} {:>8} {:>9} {:>9}",
        "", "B", "", "", "", "frames/s", "Gbit/s", "Gbit/s"
    );
    for tp in &r.throughput {
        let unix = r.tp("AF_UNIX seqpacket", tp.size);
        let mc = r.memcpy_gbps(tp.size);
        let _ = writeln!(
            t,
            "{:<20} {:>6} {:>9.3} {:>8.2} {:>9.3} {:>8} {:>9} {:>9}",
            tp.name,
            tp.size,
            tp.fps() / 1e6,
            tp.gbps(),
            tp.cpu_per_gb(),
            unix.map_or("-".into(), |u| format!("{:.2}x", tp.fps() / u.fps())),
            unix.map_or("-".into(), |u| format!("{:.2}x", tp.gbps() / u.gbps())),
            mc.map_or("-".into(), |m| format!("{:.2}x", tp.gbps() / m)),
        );
    }
    for (size, bps) in &r.memcpy {
        let _ = writeln!(
            t,
            "{:<20} {:>6} {:>9.3} {:>8.2}",
            "memcpy (1 core)",
            size,
            bps / *size as f64 / 1e6,
            bps * 8.0 / 1e9
        );
    }
    let _ = writeln!(
        t,
        "\n{:<30} {:>6} {:>13} {:>10} {:>10} {:>10}",
        "round trip", "size", "mode", "p50 us", "p99 us", "x bound"
    );
    let bound = |busy: bool| {
        r.latency
            .iter()
            .find(|l| l.size == 0 && l.busy == busy)
            .map(|l| l.p50_ns as f64)
    };
    for l in &r.latency {
        let x = if l.size == 0 {
            "-".into()
        } else {
            bound(l.busy).map_or("-".into(), |b| format!("{:.2}x", l.p50_ns as f64 / b))
        };
        let _ = writeln!(
            t,
            "{:<30} {:>6} {:>13} {:>10.2} {:>10.2} {:>10}",
            l.name,
            l.size,
            if l.busy { "busy-poll" } else { "event-driven" },
            l.p50_ns as f64 / 1e3,
            l.p99_ns as f64 / 1e3,
            x
        );
    }
    for s in &r.syscalls {
        let _ = writeln!(
            t,
            "\nsyscalls, {}: {} more calls for {} more frames = {:.1} per million frames ({})",
            s.what,
            s.calls,
            s.frames,
            s.calls as f64 * 1e6 / s.frames as f64,
            s.top
        );
    }
    t.push_str(&goals(r));
    print!("{t}");
    let _ = std::fs::write(opts.out.join("summary.txt"), &t);
    write_csv(opts, r);
    write_json(opts, r);
    match chart(opts, r) {
        Ok(p) => println!("chart: {}", p.display()),
        Err(e) => println!("chart: failed: {e}"),
    }
}

fn goals(r: &Results) -> String {
    let mut g = String::from("\ngoals (ratios in this run)\n");
    let ratio = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| a / b);
    let unix = |size| r.tp("AF_UNIX seqpacket", size);
    for mode in ["pvnet tx copy", "pvnet rx copy"] {
        if let Some(x) = ratio(
            r.tp(mode, 64).map(Throughput::fps),
            unix(64).map(Throughput::fps),
        ) {
            let _ = writeln!(
                g,
                "  64 B {mode}: {x:.2}x AF_UNIX frames/s (goal >= 10x: {})",
                goal(x >= 10.0)
            );
        }
        if let Some(x) = ratio(
            r.tp(mode, 1500).map(Throughput::gbps),
            unix(1500).map(Throughput::gbps),
        ) {
            let _ = writeln!(
                g,
                "  1500 B {mode}: {x:.2}x AF_UNIX Gbit/s (goal >= 3x: {})",
                goal(x >= 3.0)
            );
        }
        if let Some(x) = ratio(
            r.tp(mode, 65535).map(Throughput::gbps),
            unix(65535).map(Throughput::gbps),
        ) {
            let _ = writeln!(
                g,
                "  65535 B {mode}: {x:.2}x AF_UNIX Gbit/s (goal >= 1.5x: {})",
                goal(x >= 1.5)
            );
        }
        if let Some(x) = ratio(
            r.tp(mode, 65535).map(Throughput::gbps),
            r.memcpy_gbps(65535),
        ) {
            let _ = writeln!(
                g,
                "  65535 B {mode}: {x:.2}x the memcpy bound (goal >= 0.5x: {})",
                goal(x >= 0.5)
            );
        }
    }
    // Against DPDK (issue 13): one round each, so a ratio with no verdict yet.
    for (peer, sizes) in [
        ("DPDK memif", &[64, 1500][..]),
        ("DPDK vhost-user", &[64][..]),
    ] {
        for &size in sizes {
            for mode in ["pvnet tx copy", "pvnet rx copy"] {
                if let Some(x) = ratio(
                    r.tp(mode, size).map(Throughput::fps),
                    r.tp(peer, size).map(Throughput::fps),
                ) {
                    let _ = writeln!(
                        g,
                        "  {size} B {mode}: {x:.2}x {peer} frames/s (one round: no verdict)"
                    );
                }
            }
        }
    }
    let bound = |busy: bool| {
        r.latency
            .iter()
            .find(|l| l.size == 0 && l.busy == busy)
            .map(|l| l.p50_ns as f64)
    };
    let smallest = r
        .latency
        .iter()
        .filter(|l| l.size > 0)
        .map(|l| l.size)
        .min();
    if let Some(size) = smallest {
        for (busy, limit, what) in [
            (false, 1.5, "eventfd ping-pong"),
            (true, 3.0, "spin ping-pong"),
        ] {
            if let Some(x) = ratio(
                r.lat("pvnet copy", size, busy).map(|l| l.p50_ns as f64),
                bound(busy),
            ) {
                let _ = writeln!(
                    g,
                    "  {size} B round trip {}: {x:.2}x the {what} (goal <= {limit}x: {})",
                    if busy { "busy-poll" } else { "event-driven" },
                    goal(x <= limit)
                );
            }
        }
    }
    for flip in ["pvnet rx flip", "pvnet rx flip+remap"] {
        let sizes: Vec<usize> = r
            .throughput
            .iter()
            .filter(|t| t.name == flip)
            .map(|t| t.size)
            .collect();
        let cross = sizes.iter().copied().find(|&s| {
            ratio(
                r.tp(flip, s).map(Throughput::gbps),
                r.tp("pvnet rx copy", s).map(Throughput::gbps),
            )
            .is_some_and(|x| x >= 1.0)
        });
        let _ = writeln!(
            g,
            "  copy vs {}: {}",
            flip.trim_start_matches("pvnet rx "),
            cross.map_or("copy is faster at every size measured".into(), |s| format!(
                "flip at least as fast from {s} B on"
            ))
        );
    }
    g
}

fn write_csv(opts: &Opts, r: &Results) {
    let mut c = String::from(
        "kind,name,size,frames,seconds,cpu_seconds,fps,gbps,cpu_s_per_gb,p50_ns,p99_ns\n",
    );
    for t in &r.throughput {
        let _ = writeln!(
            c,
            "throughput,{},{},{},{},{},{},{},{},,",
            t.name,
            t.size,
            t.frames,
            t.secs,
            t.cpu,
            t.fps(),
            t.gbps(),
            t.cpu_per_gb()
        );
    }
    for (size, bps) in &r.memcpy {
        let _ = writeln!(
            c,
            "throughput,memcpy (1 core),{size},,,,{},{},,,",
            bps / *size as f64,
            bps * 8.0 / 1e9
        );
    }
    for l in &r.latency {
        let _ = writeln!(
            c,
            "latency,{} {},{},,,,,,,{},{}",
            l.name,
            if l.busy { "busy-poll" } else { "event-driven" },
            l.size,
            l.p50_ns,
            l.p99_ns
        );
    }
    let _ = std::fs::write(opts.out.join("results.csv"), c);
}

fn write_json(opts: &Opts, r: &Results) {
    let q = |s: &str| format!("\"{}\"", s.replace('"', "'"));
    let tp: Vec<String> = r
        .throughput
        .iter()
        .map(|t| {
            format!(
                "{{\"name\":{},\"size\":{},\"frames\":{},\"seconds\":{},\"cpu_seconds\":{},\"fps\":{},\"gbps\":{},\"cpu_s_per_gb\":{}}}",
                q(&t.name), t.size, t.frames, t.secs, t.cpu, t.fps(), t.gbps(), t.cpu_per_gb()
            )
        })
        .collect();
    let mc: Vec<String> = r
        .memcpy
        .iter()
        .map(|(s, b)| format!("{{\"size\":{s},\"bytes_per_second\":{b}}}"))
        .collect();
    let lat: Vec<String> = r
        .latency
        .iter()
        .map(|l| {
            format!(
                "{{\"name\":{},\"busy_poll\":{},\"size\":{},\"p50_ns\":{},\"p99_ns\":{}}}",
                q(&l.name),
                l.busy,
                l.size,
                l.p50_ns,
                l.p99_ns
            )
        })
        .collect();
    let sc: Vec<String> = r
        .syscalls
        .iter()
        .map(|s| {
            format!(
                "{{\"what\":{},\"frames\":{},\"calls\":{}}}",
                q(&s.what),
                s.frames,
                s.calls
            )
        })
        .collect();
    let json = format!(
        "{{\"throughput\":[{}],\"memcpy\":[{}],\"latency\":[{}],\"syscalls\":[{}]}}\n",
        tp.join(","),
        mc.join(","),
        lat.join(","),
        sc.join(",")
    );
    let _ = std::fs::write(opts.out.join("results.json"), json);
}

/// Gbit/s against frame size, every mode and baseline, log-log.
fn chart(opts: &Opts, r: &Results) -> Result<std::path::PathBuf, Box<dyn std::error::Error>> {
    let path = opts.out.join("throughput.svg");
    let mut series: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for t in &r.throughput {
        match series.iter_mut().find(|(n, _)| *n == t.name) {
            Some((_, pts)) => pts.push((t.size as f64, t.gbps())),
            None => series.push((t.name.clone(), vec![(t.size as f64, t.gbps())])),
        }
    }
    series.push((
        "memcpy (1 core)".into(),
        r.memcpy
            .iter()
            .map(|(s, b)| (*s as f64, b * 8.0 / 1e9))
            .collect(),
    ));
    let ymax = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|x| x.1))
        .fold(1.0, f64::max)
        * 2.0;
    let ymin = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|x| x.1))
        .fold(ymax, f64::min)
        .max(1e-3)
        / 2.0;
    let xmax = r
        .memcpy
        .iter()
        .map(|(s, _)| *s as f64)
        .fold(128.0, f64::max)
        * 1.5;
    let root = SVGBackend::new(&path, (960, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "pvnet throughput vs frame size (two processes, one run)",
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d((40f64..xmax).log_scale(), (ymin..ymax).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("frame size (bytes)")
        .y_desc("Gbit/s")
        .draw()?;
    for (i, (name, pts)) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let style = if name.starts_with("pvnet") {
            color.stroke_width(2)
        } else {
            color.stroke_width(3)
        };
        chart
            .draw_series(LineSeries::new(pts.clone(), style))?
            .label(name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3))
            });
        chart.draw_series(pts.iter().map(|p| Circle::new(*p, 3, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    drop(chart);
    drop(root);
    Ok(path)
}
