//! In-process scoring benchmarks (criterion), on the bundled WBC autoencoder and real holdout rows:
//!
//! * `scorer/errors/{1,64}`  — `Scorer::score`: one ONNX Runtime `run` plus the error arithmetic,
//!   on the calling thread (the floor for any server).
//! * `request/parse_validate/{1,64}` — `serde_json::from_slice::<PredictRequest>` + `request::to_matrix`
//!   on the exact bytes a client sends.
//! * `engine/score/{1,64}`  — `Engine::score` awaited from a tokio multi-thread runtime (as the
//!   handler does): admission is held, the job crosses the channel to the ONNX worker thread and the
//!   reply comes back on a oneshot. The difference to `scorer/errors` is the thread hop.
//!
//! Run: `source scripts/env.sh && cargo bench -p inference-image --bench scoring -- --warm-up-time 1 --measurement-time 3`
//! ONNX Runtime is loaded from `ORT_DYLIB_PATH` (scripts/env.sh sets it).

use std::hint::black_box;
use std::path::{Path, PathBuf};

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};

use inference::card::ModelCard;
use inference::engine::{Engine, EngineConfig};
use inference::request::{to_matrix, PredictRequest, Schema};
use inference::scorer::{init_runtime, Scorer};

const BATCHES: [usize; 2] = [1, 64];
const MAX_ROWS: usize = 1024;

fn model_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("model/wbc-autoencoder")
}

fn ort_library() -> PathBuf {
    match std::env::var_os("ORT_DYLIB_PATH") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => {
            eprintln!(
                "benches/scoring: ORT_DYLIB_PATH is not set. Point it at libonnxruntime.so.1.31.1 \
                 (`source scripts/env.sh` sets it from the project venv's onnxruntime wheel)."
            );
            std::process::exit(2);
        }
    }
}

struct Fixture {
    env: ort::environment::Environment,
    card: ModelCard,
    /// Holdout rows as the CSV spells them (feature columns only, card order).
    rows: Vec<Vec<String>>,
}

fn fixture() -> Fixture {
    let library = ort_library();
    let env = init_runtime(&library).unwrap_or_else(|e| {
        eprintln!("benches/scoring: {e}");
        std::process::exit(2);
    });
    let card = ModelCard::load(&model_dir()).expect("the bundled model card loads");
    let mut reader =
        csv::Reader::from_path(model_dir().join("holdout.csv")).expect("holdout.csv is readable");
    let header: Vec<String> = reader
        .headers()
        .expect("holdout.csv has a header")
        .iter()
        .map(str::to_string)
        .collect();
    let columns: Vec<usize> = card
        .feature_names()
        .map(|name| {
            header
                .iter()
                .position(|h| h == name)
                .unwrap_or_else(|| panic!("holdout.csv has no column {name:?}"))
        })
        .collect();
    let rows: Vec<Vec<String>> = reader
        .records()
        .take(*BATCHES.iter().max().unwrap())
        .map(|r| {
            let r = r.expect("a holdout record");
            columns.iter().map(|&c| r[c].to_string()).collect()
        })
        .collect();
    assert!(rows.len() >= 64, "holdout.csv has fewer than 64 rows");
    Fixture { env, card, rows }
}

/// The request body a client sends: `{"rows":[[...30 numbers...], ...]}`, numbers as in the CSV.
fn body(rows: &[Vec<String>]) -> Vec<u8> {
    let rows: Vec<String> = rows.iter().map(|r| format!("[{}]", r.join(","))).collect();
    format!("{{\"rows\":[{}]}}", rows.join(",")).into_bytes()
}

fn matrix(rows: &[Vec<String>]) -> Vec<f64> {
    rows.iter()
        .flatten()
        .map(|v| v.parse::<f64>().expect("a number"))
        .collect()
}

fn benches(c: &mut Criterion) {
    let fx = fixture();
    let model_path = model_dir().join(&fx.card.model_file);

    // (a) the model and the error arithmetic, on this thread.
    let mut scorer = Scorer::open(&fx.env, &model_path, &fx.card).expect("the model opens");
    let mut group = c.benchmark_group("scorer/errors");
    for n in BATCHES {
        let m = matrix(&fx.rows[..n]);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &m, |b, m| {
            b.iter(|| scorer.score(black_box(m)).expect("scores"))
        });
    }
    group.finish();

    // (b) JSON parse + validation into the row-major matrix.
    let schema = Schema::new(&fx.card);
    let mut group = c.benchmark_group("request/parse_validate");
    for n in BATCHES {
        let bytes = body(&fx.rows[..n]);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &bytes, |b, bytes| {
            b.iter(|| {
                let req: PredictRequest = serde_json::from_slice(black_box(bytes)).expect("parses");
                to_matrix(&req, &fx.card, &schema, MAX_ROWS).expect("valid")
            })
        });
    }
    group.finish();

    // (c) the engine as the handler uses it: a tokio multi-thread runtime (like the service's),
    // one ONNX worker thread (the service's default), the future awaited by `block_on`.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let engine = Engine::start(
        &fx.env,
        &model_path,
        &fx.card,
        &EngineConfig {
            workers: 1,
            max_batch_rows: MAX_ROWS,
            max_concurrent: 256,
        },
    )
    .expect("the engine starts");
    let permit = engine.admit().expect("a permit");
    let mut group = c.benchmark_group("engine/score");
    for n in BATCHES {
        let m = matrix(&fx.rows[..n]);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &m, |b, m| {
            b.iter_batched(
                || m.clone(),
                |rows| {
                    runtime
                        .block_on(engine.score(&permit, rows))
                        .expect("scores")
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
    drop(permit);
}

criterion_group!(scoring, benches);
criterion_main!(scoring);
