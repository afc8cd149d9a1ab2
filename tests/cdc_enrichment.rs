//! The CDC use case end to end: orders enriched with the customer row as it
//! was when each order happened, from a Debezium changelog — both read from
//! JSON-lines files.

use std::io::Write;
use std::time::Duration;

use eddy::connectors::file::FileSource;
use eddy::connectors::format::debezium::Change;
use eddy::operators::join::TemporalJoinExt;
use eddy::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Customer {
    id: u64,
    tier: String,
    updated_at: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Order {
    id: u64,
    customer: u64,
    at: i64,
}

fn write(dir: &std::path::Path, name: &str, lines: &[&str]) -> std::path::PathBuf {
    let path = dir.join(name);
    let mut f = std::fs::File::create(&path).unwrap();
    for l in lines {
        writeln!(f, "{l}").unwrap();
    }
    path
}

#[test]
fn orders_see_the_customer_row_valid_when_they_happened() {
    let dir = tempfile::tempdir().unwrap();
    let changes = write(
        dir.path(),
        "customers.jsonl",
        &[
            r#"{"before":null,"after":{"id":1,"tier":"bronze","updated_at":1000},"op":"c","ts_ms":1000}"#,
            r#"{"before":null,"after":{"id":2,"tier":"silver","updated_at":1500},"op":"c","ts_ms":1500}"#,
            r#"{"before":{"id":1,"tier":"bronze","updated_at":1000},"after":{"id":1,"tier":"gold","updated_at":5000},"op":"u","ts_ms":5000}"#,
            r#"this line is not a change event"#,
            r#"{"before":{"id":2,"tier":"silver","updated_at":1500},"after":null,"op":"d","ts_ms":7000}"#,
        ],
    );
    let orders = write(
        dir.path(),
        "orders.jsonl",
        &[
            r#"{"id":10,"customer":1,"at":900}"#,
            r#"{"id":11,"customer":1,"at":2000}"#,
            r#"{"id":12,"customer":2,"at":3000}"#,
            r#"{"id":13,"customer":1,"at":6000}"#,
            r#"{"id":14,"customer":2,"at":8000}"#,
        ],
    );

    let env = Env::with_config(EnvConfig::default().with_parallelism(2)).unwrap();
    let strategy = |ts: fn(&Change<Customer>) -> i64| {
        WatermarkStrategy::bounded_out_of_orderness(Duration::from_millis(100))
            .with_timestamp(move |c: &Change<Customer>| Timestamp(ts(c)))
    };
    let customer_changes = env
        .source(FileSource::<Change<Customer>>::json_lines(&changes))
        .assign_timestamps(strategy(|c| c.ts_ms.unwrap_or(0)));
    let (dead_sink, dead) = CollectSink::new();
    customer_changes.dead_letters().sink(dead_sink);
    let orders = env
        .source(FileSource::<Order>::json_lines(&orders))
        .assign_timestamps(
            WatermarkStrategy::bounded_out_of_orderness(Duration::from_millis(100))
                .with_timestamp(|o: &Order| Timestamp(o.at)),
        );
    let (sink, out) = CollectSink::new();
    orders
        .key_by(|o| o.customer)
        .temporal_join(
            &customer_changes.key_by(|c| c.keyed_row().map_or(0, |r| r.id)),
            |c: &Change<Customer>| c.row().cloned(),
        )
        .left_outer(|o: &Order, c: Option<&Customer>| (o.id, c.map(|c| c.tier.clone())))
        .sink(sink);
    env.execute("cdc").unwrap();

    let mut got = out.values();
    got.sort();
    assert_eq!(
        got,
        vec![
            (10, None),
            (11, Some("bronze".to_owned())),
            (12, Some("silver".to_owned())),
            (13, Some("gold".to_owned())),
            (14, None),
        ]
    );
    let dead = dead.values();
    assert_eq!(dead.len(), 1, "the malformed line is a dead letter");
    assert!(dead[0].position.contains('4'), "{:?}", dead[0]);
}
