//! Train and score a model on Parquet files, for `bench/gbdt.py`: prints one JSON line with train
//! and predict seconds, the test metric and peak memory.
//!
//! cargo run --release -p sluice-train --example gbdt_bench -- TRAIN.parquet TEST.parquet LABEL LOSS ROUNDS [THREADS]
//!
//! LOSS: `binary` or `l2` (GBDT), `logistic` (L2-regularized logistic regression by the automatic
//! solver, Newton here; ROUNDS ignored), `logistic-lbfgs` (the same objective by L-BFGS, to
//! scikit-learn's default tolerance), `ftrl` (online logistic regression, one pass in 1,000-row
//! batches).

use std::fs::File;
use std::ops::ControlFlow;
use std::time::Instant;

use arrow_array::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use sluice_model::Predictor;
use sluice_train::gbdt::{GbdtOptions, Loss, Metric};
use sluice_train::{FeatureOptions, GbdtRequest, LinearOptions, Objective, TrainRequest, train_gbdt, train_linear};

fn read(path: &str) -> RecordBatch {
    let file = File::open(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .expect("parquet")
        .with_batch_size(1 << 16)
        .build()
        .expect("reader");
    let batches: Vec<RecordBatch> = reader.collect::<Result<_, _>>().expect("batches");
    arrow_select::concat::concat_batches(&batches[0].schema(), &batches).expect("concat")
}

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 6 {
        eprintln!("usage: gbdt_bench TRAIN.parquet TEST.parquet LABEL binary|l2 ROUNDS [THREADS]");
        std::process::exit(2);
    }
    let (train, test) = (read(&args[1]), read(&args[2]));
    let label = &args[3];
    let linear = args[4].starts_with("logistic");
    let online = args[4] == "ftrl";
    let loss = match args[4].as_str() {
        "binary" | "logistic" | "logistic-lbfgs" | "ftrl" => Loss::Binary,
        _ => Loss::L2,
    };
    let rounds: u32 = args[5].parse().expect("rounds");
    let threads: usize = args.get(6).map_or(0, |t| t.parse().expect("threads"));
    let features: Vec<String> =
        train.schema().fields().iter().map(|f| f.name().clone()).filter(|n| n != label).collect();
    let request = GbdtRequest {
        label,
        features: &features,
        options: GbdtOptions {
            loss,
            num_rounds: rounds,
            threads,
            metric: Metric::default_for(loss),
            ..Default::default()
        },
        max_categories: 255,
        class_weight: None,
        monotone: vec![],
    };
    let start = Instant::now();
    let model = if online {
        let request = TrainRequest {
            label,
            features: &features,
            objective: Objective::Logistic,
            linear: LinearOptions::default(),
            preprocessing: FeatureOptions::default(),
        };
        let options = sluice_train::ftrl::FtrlOptions::default();
        let mut model = None;
        for start in (0..train.num_rows()).step_by(1000) {
            let part = train.slice(start, 1000.min(train.num_rows() - start));
            model = Some(sluice_train::train_ftrl(&part, &request, &options, model.as_ref()).expect("train"));
        }
        model.expect("rows")
    } else if linear {
        // scikit-learn's LogisticRegression() default C = 1 is l2 = 1 / n here.
        let request = TrainRequest {
            label,
            features: &features,
            objective: Objective::Logistic,
            linear: if args[4] == "logistic-lbfgs" {
                // scikit-learn's lbfgs stops at a largest gradient component of 1e-4.
                LinearOptions {
                    l2: 1.0 / train.num_rows() as f64,
                    solver: sluice_train::Solver::Lbfgs,
                    tol: 1e-4,
                    ..Default::default()
                }
            } else {
                LinearOptions { l2: 1.0 / train.num_rows() as f64, ..Default::default() }
            },
            preprocessing: FeatureOptions::default(),
        };
        if threads > 0 {
            rayon::ThreadPoolBuilder::new().num_threads(threads).build_global().expect("threads");
        }
        train_linear(&train, &request).expect("train")
    } else {
        train_gbdt(&train, None, &request, None, &mut |_| ControlFlow::Continue(())).expect("train")
    };
    let train_s = start.elapsed().as_secs_f64();
    let predictor = Predictor::new(model).expect("model");
    let start = Instant::now();
    let scores = predictor.predict(&test).expect("predict").scores;
    let predict_s = start.elapsed().as_secs_f64();
    let y = sluice_train::label_values(&test, label, predictor.artifact().task).expect("label");
    let metric = match loss {
        Loss::Binary => ("auc", sluice_metrics::roc_auc(&y, &scores).expect("auc")),
        _ => ("rmse", sluice_metrics::regression(&y, &scores).expect("rmse").rmse),
    };
    println!(
        "{{\"train_s\": {train_s:.4}, \"predict_s\": {predict_s:.4}, \"{}\": {:.6}, \"peak_mb\": {:.0}}}",
        metric.0,
        metric.1,
        peak_rss_mb()
    );
}
