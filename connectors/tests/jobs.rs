//! The connectors run through whole jobs on the engine's local runtime.

use std::fs;

use eddy_connectors::datagen::{generate_at, DataGen, SplitMix64};
use eddy_connectors::file::{FileSink, FileSource};
use eddy_connectors::nexmark::{Event, NexmarkConfig, NexmarkGenerator, NexmarkSource};
use eddy_connectors::DiscardSink;
use eddy_engine::config::EnvConfig;
use eddy_engine::dsl::Env;
use eddy_engine::sink::CollectSink;
use serde::{Deserialize, Serialize};

type TestResult = Result<(), Box<dyn std::error::Error>>;

#[derive(Clone, Debug, PartialEq, PartialOrd, Serialize, Deserialize)]
struct Reading {
    sensor: u64,
    value: f64,
}

fn reading(index: u64, rng: &mut SplitMix64) -> Reading {
    Reading {
        sensor: index % 10,
        value: rng.next_f64(),
    }
}

fn env(parallelism: usize) -> Result<Env, Box<dyn std::error::Error>> {
    Ok(Env::with_config(
        EnvConfig::default().with_parallelism(parallelism),
    )?)
}

fn sorted(mut v: Vec<Reading>) -> Vec<Reading> {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    v
}

fn datagen_values(
    parallelism: usize,
    splits: Option<usize>,
) -> Result<Vec<Reading>, Box<dyn std::error::Error>> {
    let env = env(parallelism)?;
    let (sink, out) = CollectSink::new();
    let mut source = DataGen::new(reading).with_count(5_000).with_seed(3);
    if let Some(n) = splits {
        source = source.with_splits(n);
    }
    env.source(source).sink(sink);
    env.execute("datagen")?;
    Ok(sorted(out.values()))
}

#[test]
fn datagen_emits_the_same_records_at_any_parallelism_and_split_count() -> TestResult {
    let expected = sorted((0..5_000).map(|i| generate_at(3, i, reading)).collect());
    assert_eq!(datagen_values(1, None)?, expected);
    assert_eq!(datagen_values(4, None)?, expected);
    assert_eq!(datagen_values(3, Some(7))?, expected);
    Ok(())
}

#[test]
fn nexmark_emits_the_generators_events_with_their_event_time() -> TestResult {
    let env = env(3)?;
    let (sink, out) = CollectSink::new();
    let source = NexmarkSource::new(NexmarkConfig::default())?.with_events(3_000);
    let generator = NexmarkGenerator::clone(source.generator());
    env.source(source).sink(sink);
    env.execute("nexmark")?;
    let records = out.records();
    assert_eq!(records.len(), 3_000);
    assert!(records.iter().all(|r| r.ts == r.value.date_time()));
    let mut got: Vec<String> = records.iter().map(|r| format!("{:?}", r.value)).collect();
    let mut expected: Vec<String> = (0..3_000)
        .map(|n| format!("{:?}", generator.event(n)))
        .collect();
    got.sort();
    expected.sort();
    assert_eq!(got, expected);
    Ok(())
}

#[test]
fn nexmark_bids_flow_into_a_discard_sink() -> TestResult {
    let env = env(2)?;
    env.source(NexmarkSource::new(NexmarkConfig::default())?.with_events(1_000))
        .flat_map(Event::into_bid)
        .sink(DiscardSink::new())
        .uid("results");
    let stats = env.execute("discard")?;
    let results = stats.operator("results").map(|o| o.records_in);
    assert_eq!(results, Some(1_000 / 50 * 46));
    Ok(())
}

#[test]
fn a_json_lines_directory_is_read_and_bad_lines_become_dead_letters() -> TestResult {
    let dir = tempfile::tempdir()?;
    fs::write(
        dir.path().join("a.jsonl"),
        "{\"sensor\":1,\"value\":0.5}\n\n{\"sensor\":\"two\"}\n",
    )?;
    fs::write(
        dir.path().join("b.jsonl"),
        "{\"sensor\":3,\"value\":1.5}\nnot json\n",
    )?;
    let env = env(2)?;
    let (values, good) = CollectSink::new();
    let (dead, bad) = CollectSink::new();
    let readings = env.source(FileSource::<Reading>::json_lines(dir.path()));
    readings.dead_letters().sink(dead);
    readings.sink(values);
    let stats = env.execute("files")?;

    let expected = vec![
        Reading {
            sensor: 1,
            value: 0.5,
        },
        Reading {
            sensor: 3,
            value: 1.5,
        },
    ];
    assert_eq!(sorted(good.values()), expected);
    let mut letters: Vec<(String, String, String)> = bad
        .values()
        .into_iter()
        .map(|d| {
            let file = d.split.rsplit('/').next().unwrap_or_default().to_owned();
            (file, d.position, d.raw)
        })
        .collect();
    letters.sort();
    assert_eq!(
        letters,
        [
            (
                "a.jsonl".into(),
                "line 3".into(),
                "{\"sensor\":\"two\"}".into()
            ),
            ("b.jsonl".into(), "line 2".into(), "not json".into()),
        ]
    );
    let counted: u64 = stats.operators.iter().map(|o| o.dead_letters).sum();
    assert_eq!(counted, 2);
    Ok(())
}

#[test]
fn fail_on_error_fails_the_job_naming_the_file_and_line() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("in.csv");
    fs::write(&path, "sensor,value\n1,0.5\n2,warm\n")?;
    let env = env(1)?;
    env.source(FileSource::<Reading>::csv(&path).fail_on_error())
        .sink(DiscardSink::new());
    let err = env
        .execute("strict")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("in.csv', line 3: cannot decode CSV record"),
        "{err}"
    );
    Ok(())
}

#[test]
fn a_missing_input_path_fails_the_job_naming_it() -> TestResult {
    let env = env(1)?;
    env.source(FileSource::<Reading>::json_lines("/no/such/input"))
        .sink(DiscardSink::new());
    let err = env
        .execute("missing")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("/no/such/input"), "{err}");
    Ok(())
}

#[test]
fn json_lines_written_by_the_sink_read_back_to_the_same_records() -> TestResult {
    let dir = tempfile::tempdir()?;
    let out_dir = dir.path().join("out");
    let writer = env(2)?;
    writer
        .source(DataGen::new(reading).with_count(1_000))
        .sink(FileSink::json_lines(&out_dir));
    writer.execute("write")?;
    assert!(out_dir.join("part-0.jsonl").is_file() && out_dir.join("part-1.jsonl").is_file());

    let reader = env(3)?;
    let (sink, out) = CollectSink::new();
    reader
        .source(FileSource::<Reading>::json_lines(&out_dir))
        .sink(sink);
    reader.execute("read")?;
    let expected = sorted((0..1_000).map(|i| generate_at(0, i, reading)).collect());
    assert_eq!(sorted(out.values()), expected);
    Ok(())
}

#[test]
fn a_rate_limited_source_still_emits_every_record() -> TestResult {
    let env = env(2)?;
    let (sink, out) = CollectSink::new();
    env.source(DataGen::new(reading).with_count(2_000).with_rate(200_000.0))
        .sink(sink);
    env.execute("paced")?;
    let expected = sorted((0..2_000).map(|i| generate_at(0, i, reading)).collect());
    assert_eq!(sorted(out.values()), expected);
    Ok(())
}

#[test]
fn the_source_harness_reads_a_generator_the_same_at_any_parallelism() {
    use eddy_connectors::datagen::{DataGen, SplitMix64};
    use eddy_engine::testing::read_source;
    let source = DataGen::new(|i, rng: &mut SplitMix64| (i, rng.below(1_000))).with_count(500);
    let sorted = |p: usize| {
        let read = read_source(&source, p, None).unwrap();
        assert!(read.dead_letters.is_empty());
        let mut v: Vec<(u64, u64)> = read.records.into_iter().map(|r| r.value).collect();
        v.sort();
        v
    };
    assert_eq!(sorted(1).len(), 500);
    assert_eq!(sorted(1), sorted(3));
}

/// With `--max-dead-letter-ratio`, a source whose records are mostly
/// undecodable fails the job naming the source and what to check; under
/// the ratio the job runs.
#[test]
fn a_source_over_the_dead_letter_ratio_fails_the_job() -> TestResult {
    let dir = tempfile::tempdir()?;
    let mut lines = String::new();
    for i in 0..1_000 {
        if i % 4 == 0 {
            lines.push_str(&format!("{{\"sensor\":{i},\"value\":0.5}}\n"));
        } else {
            lines.push_str("sensor;value\n");
        }
    }
    fs::write(dir.path().join("a.jsonl"), lines)?;
    let run = |ratio: f64| -> Result<(), String> {
        let env = Env::with_config(
            EnvConfig::default()
                .with_parallelism(1)
                .with_max_dead_letter_ratio(ratio),
        )
        .map_err(|e| e.to_string())?;
        env.source(FileSource::<Reading>::json_lines(dir.path()))
            .sink(DiscardSink::new());
        env.execute("ratio").map(|_| ()).map_err(|e| e.to_string())
    };
    let err = run(0.5).unwrap_err();
    assert!(
        err.contains("--max-dead-letter-ratio")
            && err.contains("FileSource")
            && err.contains("undecodable"),
        "{err}"
    );
    run(0.8)?;
    Ok(())
}
