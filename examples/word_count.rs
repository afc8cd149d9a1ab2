//! Word count: the classic, as a bounded stream. Counts words per key with
//! keyed state and emits each word's final count when the input ends (the
//! final watermark fires one timer per word).
//!
//! ```text
//! cargo run --release --example word_count
//! cargo run --release --example word_count -- --input some.txt --parallelism 2
//! ```

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use eddy::connectors::print::PrintSink;
use eddy::prelude::*;

const COUNT: ValueStateDesc<u64> = ValueStateDesc::new("count");

/// Counts per word; emits `(word, count)` once, at the end of the input.
#[derive(Clone)]
struct CountWords;

impl KeyedProcessFunction<String, String, (String, u64)> for CountWords {
    fn process(
        &mut self,
        _word: String,
        ctx: &mut KeyedContext<'_, String>,
        _out: &mut Collector<'_, (String, u64)>,
    ) -> UserResult {
        let n = ctx.state(&COUNT).get()?.unwrap_or(0);
        ctx.state(&COUNT).set(n + 1)?;
        ctx.timers().register_event_time(Timestamp::MAX);
        Ok(())
    }

    fn on_timer(
        &mut self,
        _at: Timestamp,
        ctx: &mut KeyedContext<'_, String>,
        out: &mut Collector<'_, (String, u64)>,
    ) -> UserResult {
        let n = ctx.state(&COUNT).take()?.unwrap_or(0);
        out.emit((ctx.key().clone(), n));
        Ok(())
    }
}

const TEXT: &str = "To be, or not to be, that is the question:
Whether 'tis nobler in the mind to suffer
The slings and arrows of outrageous fortune,
Or to take arms against a sea of troubles
And by opposing end them.";

#[derive(Parser)]
#[command(about = "Counts words")]
struct Cli {
    /// A text file to count (default: a built-in verse).
    #[arg(long, global = true)]
    input: Option<PathBuf>,
    #[command(flatten)]
    env: EnvArgs,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let text = match &cli.input {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read --input {}", path.display()))?,
        None => TEXT.to_owned(),
    };
    let env = Env::with_config(cli.env.to_config()?)?;
    env.from_collection(text.lines().map(str::to_owned).collect())
        .flat_map(|line: String| {
            line.split(|c: char| !c.is_alphanumeric() && c != '\'')
                .filter(|w| !w.is_empty())
                .map(str::to_lowercase)
                .collect::<Vec<_>>()
        })
        .key_by(|word: &String| word.clone())
        .process(CountWords)
        .uid("count")
        .sink(PrintSink::new())
        .uid("print");
    let stats = env.execute("word-count")?;
    if let Some(savepoint) = &stats.stopped_with_savepoint {
        println!("savepoint in {}", savepoint.display());
        return Ok(());
    }
    println!("{stats}");
    Ok(())
}
