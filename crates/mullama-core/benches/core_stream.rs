//! Throughput of the streaming core: detokenization + stop scanning per token, and the
//! push -> next round trip through the channel (one thread, and producer/consumer threads).

use std::hint::black_box;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use mullama_core::{
    token_stream, FinishReason, IncrementalDecoder, PieceTable, PushOutcome, StopScanner,
    StreamConfig,
};

const TOKEN_BYTES: usize = 4;

/// A few KB of chat-like English with emoji (incl. ZWJ sequences), CJK and accents.
fn sample_text() -> String {
    let paragraph = "The quick brown fox 🦊 jumps over the lazy dog, then explains its reasoning \
        step by step. First, it notes that the dog is asleep 😴; second, that fences are \
        optional 👨\u{200d}👩\u{200d}👧. Café owners in 東京 agree: naïve foxes rarely win. \
        Assistant: here is the answer you asked for, with a list:\n- one\n- two ✅\n\n";
    paragraph.repeat(12)
}

/// Byte-level split into ~4-byte tokens, cutting inside UTF-8 characters too.
fn token_pieces(text: &str) -> Vec<Vec<u8>> {
    text.as_bytes()
        .chunks(TOKEN_BYTES)
        .map(<[u8]>::to_vec)
        .collect()
}

/// Realistic stops that never fully occur in the sample but share prefixes with it, so the
/// scanner keeps entering and leaving partial matches.
fn stops(count: usize) -> Vec<String> {
    let fixed = [
        "<|im_end|>",
        "\n\nUser:",
        "</s>",
        "###",
        "The quick brown cat",
        "Assistant: no",
    ];
    (0..count)
        .map(|i| match fixed.get(i) {
            Some(stop) => stop.to_string(),
            None => format!("the {} stop {i}", ["lazy", "dog", "fox", "step"][i % 4]),
        })
        .collect()
}

fn detokenize_and_scan(c: &mut Criterion) {
    let pieces = token_pieces(&sample_text());
    let mut group = c.benchmark_group("detokenize_scan");
    group.throughput(Throughput::Elements(pieces.len() as u64));
    for count in [1, 4, 16, 64] {
        let stops = stops(count);
        // The stream's shape: one fresh String per event.
        // Building the automaton is per stream, not per token: it stays out of the timing.
        let fresh = || (IncrementalDecoder::new(), StopScanner::new(&stops, false));
        group.bench_function(BenchmarkId::new("event_string", count), |b| {
            b.iter_batched_ref(
                fresh,
                |(decoder, scanner)| {
                    let mut decoded = String::new();
                    let mut released = 0;
                    for piece in &pieces {
                        decoded.clear();
                        decoder.push(piece, &mut decoded);
                        let mut text = String::new();
                        scanner.push(&decoded, &mut text);
                        released += black_box(text).len();
                    }
                    released
                },
                BatchSize::SmallInput,
            )
        });
        // The scanning work alone, with the output buffer reused.
        group.bench_function(BenchmarkId::new("reused_buffer", count), |b| {
            b.iter_batched_ref(
                fresh,
                |(decoder, scanner)| {
                    let mut decoded = String::new();
                    let mut text = String::new();
                    for piece in &pieces {
                        decoded.clear();
                        decoder.push(piece, &mut decoded);
                        text.clear();
                        scanner.push(&decoded, &mut text);
                        black_box(&text);
                    }
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

fn stream_config(token_count: usize) -> StreamConfig {
    StreamConfig {
        max_tokens: token_count + 1,
        buffer_size: 64,
        timeout_ms: 0,
        stop_sequences: stops(4),
        ..StreamConfig::default()
    }
}

fn channel_round_trip(c: &mut Criterion) {
    let pieces = token_pieces(&sample_text());
    let token_count = pieces.len();
    let table = Arc::new(PieceTable::new(pieces));
    let mut group = c.benchmark_group("channel");
    group.throughput(Throughput::Elements(token_count as u64));

    group.bench_function("push_next_one_thread", |b| {
        b.iter(|| {
            let (producer, consumer) =
                token_stream(&stream_config(token_count), table.clone()).unwrap();
            for token in 0..token_count as u32 {
                producer.push(token, None, Vec::new()).unwrap();
                black_box(consumer.next().unwrap());
            }
            producer.finish(FinishReason::Stop, None);
        })
    });

    group.bench_function("push_next_two_threads", |b| {
        b.iter_custom(|iterations| {
            let mut total = Duration::ZERO;
            for _ in 0..iterations {
                let (producer, consumer) =
                    token_stream(&stream_config(token_count), table.clone()).unwrap();
                let start = Instant::now();
                let producing = thread::spawn(move || {
                    for token in 0..token_count as u32 {
                        if producer.push(token, None, Vec::new()).unwrap() != PushOutcome::Continue
                        {
                            break;
                        }
                    }
                    producer.finish(FinishReason::Stop, None);
                });
                while let Some(event) = consumer.next().unwrap() {
                    black_box(event);
                }
                total += start.elapsed();
                producing.join().unwrap();
            }
            total
        })
    });

    group.bench_function("push_batch_two_threads", |b| {
        b.iter_custom(|iterations| {
            let mut total = Duration::ZERO;
            for _ in 0..iterations {
                let (producer, consumer) =
                    token_stream(&stream_config(token_count), table.clone()).unwrap();
                let start = Instant::now();
                let producing = thread::spawn(move || {
                    for token in 0..token_count as u32 {
                        if producer.push(token, None, Vec::new()).unwrap() != PushOutcome::Continue
                        {
                            break;
                        }
                    }
                    producer.finish(FinishReason::Stop, None);
                });
                while let Some(events) = consumer.next_batch(64).unwrap() {
                    black_box(events);
                }
                total += start.elapsed();
                producing.join().unwrap();
            }
            total
        })
    });
    group.finish();
}

fn short_runs() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
}

criterion_group! {
    name = benches;
    config = short_runs();
    targets = detokenize_and_scan, channel_round_trip
}
criterion_main!(benches);
