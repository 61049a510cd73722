//! What monitoring costs. Reading: the 24-hour summary (merge 1,440 minute buckets and compute every
//! layer, drift included) and a 24-hour series, on a history full of traffic. Recording: what the
//! recorder spends on one scored request of 1 and of 64 rows (its data, model and system events).
//!
//! cargo bench -p inference-image --bench monitoring

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use inference::card::ModelCard;
use inference::card_builder::{read_csv, Table};
use inference::monitor::bucket::Labelled;
use inference::monitor::{now_secs, summary, Event, Monitor};

/// The bundled model's card and its calibration rows.
fn bundled() -> (Arc<ModelCard>, Table) {
    let dir = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/model/wbc-autoencoder"
    ));
    let card = Arc::new(ModelCard::load(dir).expect("bundled card"));
    let rows = read_csv(&dir.join("calibration.csv")).expect("calibration rows");
    (card, rows)
}

fn full_day() -> Arc<Monitor> {
    let (card, rows) = bundled();
    let monitor = Monitor::new(Arc::clone(&card), None);
    let now = now_secs();
    let mut events = Vec::new();
    for minute in 0..1440 {
        let at = now - minute * 60;
        // 64 rows and 10 requests a minute, a little feedback: every bucket has every kind of data.
        let flat: Vec<f64> = rows
            .rows
            .iter()
            .cycle()
            .skip(minute as usize % 50)
            .take(64)
            .flatten()
            .copied()
            .collect();
        let errors: Vec<f64> = (0..64).map(|i| 0.05 + 0.01 * f64::from(i % 20)).collect();
        events.push(Event::Scored {
            at,
            rows: flat,
            scores: errors,
            classes: Vec::new(),
            quality: None,
        });
        for i in 0..10 {
            events.push(Event::Request {
                at,
                route: "/v1/predict",
                status: 200,
                seconds: 0.0002 * f64::from(i + 1),
                in_flight: 1,
            });
        }
        events.push(Event::Labels {
            at,
            items: (0..8)
                .map(|i| Labelled {
                    error: 0.05 * f64::from(i),
                    label: i % 3 == 0,
                    ..Labelled::default()
                })
                .collect(),
        });
    }
    monitor.apply(events.into_iter());
    monitor
}

/// The events one scored request of `n` rows sends the recorder.
fn request_events(rows: &[Vec<f64>], n: usize, at: i64) -> [Event; 2] {
    let flat: Vec<f64> = rows.iter().cycle().take(n).flatten().copied().collect();
    [
        Event::Scored {
            at,
            rows: flat,
            // Scores scattered over two decades, as a real batch's are (not sorted).
            scores: (0..n)
                .map(|i| 10f64.powf(-2.0 + ((i * 37) % 64) as f64 / 32.0))
                .collect(),
            classes: Vec::new(),
            quality: None,
        },
        Event::Request {
            at,
            route: "/v1/predict",
            status: 200,
            seconds: 0.000_2,
            in_flight: 4,
        },
    ]
}

fn bench_recording(c: &mut Criterion) {
    let (card, rows) = bundled();
    let monitor = Monitor::new(card, None);
    let at = now_secs();
    for n in [1usize, 64] {
        c.bench_function(&format!("record/request/{n}"), |b| {
            b.iter_batched(
                || request_events(&rows.rows, n, at),
                |events| monitor.apply(events.into_iter()),
                criterion::BatchSize::SmallInput,
            )
        });
    }
}

fn bench(c: &mut Criterion) {
    bench_recording(c);
    let monitor = full_day();
    let to = now_secs();
    let last = to / 60;
    c.bench_function("summary/24h", |b| {
        b.iter(|| {
            let (merged, minutes) = monitor.merged(last - 1439, last);
            black_box(summary::summarize(
                &monitor.view(),
                &merged,
                minutes,
                86_400,
                to,
            ))
        })
    });
    c.bench_function("series/24h_latency_p99", |b| {
        b.iter(|| black_box(monitor.series("latency_p99", to - 86_400, to, 60).unwrap()))
    });
    c.bench_function("series/24h_psi_feature", |b| {
        b.iter(|| {
            black_box(
                monitor
                    .series("psi:mean_radius", to - 86_400, to, 60)
                    .unwrap(),
            )
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
