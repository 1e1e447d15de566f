//! The text-delta producer (remote backends): the channel's guarantees hold for text as for
//! token ids: backpressure, cancellation, the deadline, max_tokens and statistics.

use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use mullama_core::{
    text_stream, CoreError, FinishReason, PushOutcome, StreamConfig, TextProducer, TokenConsumer,
    TokenEvent,
};

/// Generous bound for "this thread finishes": a failure shows as a test error, not a hang.
const JOIN_LIMIT: Duration = Duration::from_secs(20);

fn open(change: impl FnOnce(&mut StreamConfig)) -> (TextProducer, TokenConsumer) {
    let mut config = StreamConfig {
        max_tokens: 1_000_000,
        timeout_ms: 0,
        ..StreamConfig::default()
    };
    change(&mut config);
    text_stream(&config).expect("valid config")
}

fn drain(consumer: &TokenConsumer) -> Vec<TokenEvent> {
    let mut events = Vec::new();
    while let Some(event) = consumer.next().expect("no error") {
        events.push(event);
    }
    events
}

fn text_of(events: &[TokenEvent]) -> String {
    events.iter().map(|event| event.text.as_str()).collect()
}

#[test]
fn invalid_config_is_refused() {
    let config = StreamConfig {
        buffer_size: 0,
        ..StreamConfig::default()
    };
    assert!(matches!(
        text_stream(&config),
        Err(CoreError::Config {
            field: "buffer_size",
            ..
        })
    ));
}

#[test]
fn characters_split_across_deltas_arrive_whole() {
    let (producer, consumer) = open(|_| {});
    let wave = "🌊".as_bytes();
    assert_eq!(producer.push_text(b"caf\xc3", 1), PushOutcome::Continue);
    assert_eq!(producer.push_text(b"\xa9 ", 1), PushOutcome::Continue);
    assert_eq!(producer.push_text(&wave[..2], 1), PushOutcome::Continue);
    assert_eq!(producer.push_text(&wave[2..], 1), PushOutcome::Continue);
    producer.finish(FinishReason::Stop);
    let events = drain(&consumer);
    let texts: Vec<&str> = events.iter().map(|e| e.text.as_str()).collect();
    assert_eq!(texts, ["caf", "é ", "", "🌊", ""]);
    assert!(events.iter().all(|e| e.token.is_none()));
    assert_eq!(
        events.last().unwrap().finish_reason,
        Some(FinishReason::Stop)
    );
}

#[test]
fn a_stop_split_across_deltas_is_cut_and_reported() {
    let (producer, consumer) = open(|c| c.stop_sequences = vec!["END".into()]);
    assert_eq!(
        producer.push_text(b"The answer E", 1),
        PushOutcome::Continue
    );
    assert_eq!(producer.push_text(b"N", 1), PushOutcome::Continue);
    assert_eq!(
        producer.push_text(b"D and more", 1),
        PushOutcome::Stop(FinishReason::Stop)
    );
    // The stream is over: a later delta is refused.
    assert_eq!(
        producer.push_text(b"ignored", 1),
        PushOutcome::Stop(FinishReason::Stop)
    );
    let events = drain(&consumer);
    assert_eq!(text_of(&events), "The answer ");
    let last = events.last().unwrap();
    assert_eq!(last.stop_sequence.as_deref(), Some("END"));
    assert_eq!(consumer.finish_reason(), Some(FinishReason::Stop));
}

#[test]
fn max_tokens_counts_the_tokens_each_delta_stands_for() {
    let (producer, consumer) = open(|c| c.max_tokens = 5);
    assert_eq!(producer.push_text(b"two ", 2), PushOutcome::Continue);
    assert_eq!(producer.push_text(b"uncounted ", 0), PushOutcome::Continue);
    assert_eq!(
        producer.push_text(b"three", 3),
        PushOutcome::Stop(FinishReason::Length)
    );
    let events = drain(&consumer);
    assert_eq!(text_of(&events), "two uncounted three");
    assert_eq!(events.last().unwrap().stats.generation_tokens, 5);
    assert_eq!(consumer.finish_reason(), Some(FinishReason::Length));
}

#[test]
fn statistics_take_the_servers_counts() {
    let (producer, consumer) = open(|_| {});
    producer.push_text(b"a", 1);
    producer.push_text(b"b", 1);
    producer.set_prompt_tokens(7);
    producer.set_generation_tokens(4);
    producer.finish(FinishReason::Stop);
    let events = drain(&consumer);
    assert_eq!(events[0].stats.generation_tokens, 1);
    assert!(events[0].stats.time_to_first_token_s.is_some());
    let last = events.last().unwrap();
    assert_eq!(last.stats.prompt_tokens, 7);
    assert_eq!(last.stats.generation_tokens, 4);
    assert_eq!(consumer.stats().generation_tokens, 4);
}

#[test]
fn a_full_buffer_blocks_the_producer_until_the_consumer_reads() {
    let (producer, consumer) = open(|c| c.buffer_size = 2);
    let (pushed, pushes) = mpsc::channel();
    let worker = thread::spawn(move || {
        for i in 0..5u8 {
            let outcome = producer.push_text(&[b'a' + i], 1);
            pushed.send(outcome).unwrap();
        }
        producer.finish(FinishReason::Stop);
    });
    // Two fit; the third push waits for room.
    for _ in 0..2 {
        assert_eq!(pushes.recv_timeout(JOIN_LIMIT), Ok(PushOutcome::Continue));
    }
    assert!(pushes.recv_timeout(Duration::from_millis(200)).is_err());
    let first = consumer.next().unwrap().unwrap();
    assert_eq!(first.text, "a");
    assert_eq!(pushes.recv_timeout(JOIN_LIMIT), Ok(PushOutcome::Continue));
    let rest = drain(&consumer);
    assert_eq!(text_of(&rest), "bcde");
    worker.join().unwrap();
}

#[test]
fn cancelling_wakes_a_blocked_push_with_cancelled() {
    let (producer, consumer) = open(|c| c.buffer_size = 1);
    assert_eq!(producer.push_text(b"a", 1), PushOutcome::Continue);
    let (done, outcome) = mpsc::channel();
    let worker = thread::spawn(move || {
        done.send(producer.push_text(b"b", 1)).unwrap();
    });
    thread::sleep(Duration::from_millis(50));
    drop(consumer);
    assert_eq!(
        outcome.recv_timeout(JOIN_LIMIT),
        Ok(PushOutcome::Stop(FinishReason::Cancelled))
    );
    worker.join().unwrap();
}

#[test]
fn the_deadline_ends_a_stalled_text_stream() {
    let (producer, consumer) = open(|c| c.timeout_ms = 100);
    assert_eq!(producer.push_text(b"a", 1), PushOutcome::Continue);
    let started = Instant::now();
    // wait_for wakes at the deadline, not after the whole sleep.
    assert_eq!(
        producer.wait_for(Duration::from_secs(30)),
        Some(FinishReason::Timeout)
    );
    assert!(started.elapsed() < JOIN_LIMIT);
    assert_eq!(
        producer.push_text(b"late", 1),
        PushOutcome::Stop(FinishReason::Timeout)
    );
    assert_eq!(consumer.next().unwrap().unwrap().text, "a");
    assert!(matches!(
        consumer.next(),
        Err(CoreError::StreamTimeout { timeout_ms: 100 })
    ));
}

#[test]
fn failing_reaches_the_consumer_after_the_buffered_text() {
    let (producer, consumer) = open(|_| {});
    producer.push_text(b"partial", 1);
    producer.fail("malformed stream line 'data: {'".into());
    assert_eq!(consumer.next().unwrap().unwrap().text, "partial");
    match consumer.next() {
        Err(CoreError::Generation { message }) => assert!(message.contains("data: {")),
        other => panic!("expected a generation error, got {other:?}"),
    }
}

#[test]
fn dropping_the_producer_fails_the_stream() {
    let (producer, consumer) = open(|_| {});
    producer.push_text(b"x", 1);
    drop(producer);
    assert_eq!(consumer.next().unwrap().unwrap().text, "x");
    assert!(matches!(consumer.next(), Err(CoreError::Generation { .. })));
}
