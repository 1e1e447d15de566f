//! The token channel: backpressure, cancellation, deadlines, failures, wakers, stats.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use mullama_core::stream::PRODUCER_DROPPED;
use mullama_core::{
    token_stream, Batch, CoreError, FinishReason, NextWithin, PieceTable, PushOutcome,
    StreamConfig, TokenConsumer, TokenEvent, TokenProducer, TryNext,
};

/// Generous bound for "this thread finishes": a failure shows as a test error, not a hang.
const JOIN_LIMIT: Duration = Duration::from_secs(20);

fn pieces() -> Arc<PieceTable> {
    // 0:"a" 1:"b" 2:" END" 3:"E" 4:first two bytes of "é..." 5: crab emoji's first byte
    Arc::new(PieceTable::new(vec![
        b"a".to_vec(),
        b"b".to_vec(),
        b" END".to_vec(),
        b"E".to_vec(),
        vec![0xC3],
        vec![0xF0],
    ]))
}

fn config(change: impl FnOnce(&mut StreamConfig)) -> StreamConfig {
    let mut config = StreamConfig {
        max_tokens: 1_000_000,
        buffer_size: 64,
        timeout_ms: 0,
        ..StreamConfig::default()
    };
    change(&mut config);
    config
}

fn open(change: impl FnOnce(&mut StreamConfig)) -> (TokenProducer, TokenConsumer) {
    token_stream(&config(change), pieces()).expect("valid config")
}

fn push(producer: &TokenProducer, token: u32) -> PushOutcome {
    producer.push(token, None, Vec::new()).expect("known token")
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

/// Runs `f` on a thread and waits for its result, failing (not hanging) past JOIN_LIMIT.
fn spawn_bounded<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> mpsc::Receiver<T> {
    let (sender, receiver) = mpsc::channel();
    thread::spawn(move || {
        let _ = sender.send(f());
    });
    receiver
}

fn wait_until(what: &str, condition: impl Fn() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < JOIN_LIMIT, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn handles_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<TokenProducer>();
    assert_send_sync::<TokenConsumer>();
}

#[test]
fn invalid_config_is_rejected_before_streaming() {
    let error = token_stream(&config(|c| c.buffer_size = 0), pieces()).err();
    assert!(matches!(
        error,
        Some(CoreError::Config {
            field: "buffer_size",
            ..
        })
    ));
}

#[test]
fn backpressure_blocks_after_buffer_size_pushes() {
    let (producer, consumer) = open(|c| c.buffer_size = 4);
    let pushed = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&pushed);
    let done = spawn_bounded(move || loop {
        let outcome = push(&producer, 0);
        counter.fetch_add(1, Ordering::SeqCst);
        if let PushOutcome::Stop(reason) = outcome {
            return reason;
        }
    });
    wait_until("4 pushes", || pushed.load(Ordering::SeqCst) == 4);
    thread::sleep(Duration::from_millis(50));
    assert_eq!(
        pushed.load(Ordering::SeqCst),
        4,
        "push must block while the buffer is full"
    );

    assert_eq!(consumer.next().unwrap().unwrap().text, "a");
    wait_until("one more push after a read", || {
        pushed.load(Ordering::SeqCst) == 5
    });
    thread::sleep(Duration::from_millis(50));
    assert_eq!(
        pushed.load(Ordering::SeqCst),
        5,
        "one read makes room for one push"
    );

    drop(consumer);
    assert_eq!(
        done.recv_timeout(JOIN_LIMIT).unwrap(),
        FinishReason::Cancelled
    );
}

#[test]
fn a_batch_reader_never_has_more_than_buffer_size_events_waiting() {
    let (producer, consumer) = open(|c| c.buffer_size = 4);
    let pushed = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&pushed);
    let done = spawn_bounded(move || {
        for _ in 0..40 {
            if let PushOutcome::Stop(reason) = push(&producer, 0) {
                return Some(reason);
            }
            counter.fetch_add(1, Ordering::SeqCst);
        }
        producer.finish(FinishReason::Stop, None);
        None
    });
    let mut handed_out = 0;
    while let Some(batch) = consumer.next_batch(64).expect("no error") {
        for _ in batch {
            handed_out += 1;
            // A slow consumer: the producer gets every chance to run ahead.
            thread::sleep(Duration::from_millis(2));
            let waiting = pushed.load(Ordering::SeqCst).saturating_sub(handed_out);
            assert!(waiting <= 4, "{waiting} events waiting with buffer_size 4");
        }
    }
    assert_eq!(handed_out, 41, "40 token events and the closing one");
    assert_eq!(done.recv_timeout(JOIN_LIMIT).unwrap(), None);
}

#[test]
fn cancel_stops_the_next_push() {
    let (producer, consumer) = open(|_| {});
    assert_eq!(push(&producer, 0), PushOutcome::Continue);
    consumer.cancel();
    assert_eq!(
        push(&producer, 0),
        PushOutcome::Stop(FinishReason::Cancelled)
    );
    assert_eq!(producer.stop_reason(), Some(FinishReason::Cancelled));
    assert_eq!(consumer.finish_reason(), Some(FinishReason::Cancelled));
    assert!(
        consumer.next().unwrap().is_none(),
        "cancel discards buffered events"
    );
}

#[test]
fn cancel_wakes_a_blocked_push() {
    let (producer, consumer) = open(|c| c.buffer_size = 1);
    let producer = Arc::new(producer);
    assert_eq!(push(&producer, 0), PushOutcome::Continue);
    let blocked = Arc::clone(&producer);
    let outcome = spawn_bounded(move || push(&blocked, 0));
    thread::sleep(Duration::from_millis(20));
    consumer.cancel();
    assert_eq!(
        outcome.recv_timeout(JOIN_LIMIT).unwrap(),
        PushOutcome::Stop(FinishReason::Cancelled)
    );
}

#[test]
fn dropping_many_unfinished_streams_ends_every_producer() {
    let mut threads = Vec::new();
    let mut consumers = Vec::new();
    for _ in 0..1000 {
        let (producer, consumer) = open(|c| c.buffer_size = 2);
        threads.push(thread::spawn(move || {
            while push(&producer, 1) == PushOutcome::Continue {}
            producer.stop_reason()
        }));
        consumers.push(consumer);
    }
    drop(consumers);
    for thread in threads {
        assert_eq!(thread.join().unwrap(), Some(FinishReason::Cancelled));
    }
}

#[test]
fn stop_sequence_ends_the_stream_with_its_event() {
    let (producer, consumer) = open(|c| c.stop_sequences = vec!["END".into(), "zz".into()]);
    assert_eq!(push(&producer, 0), PushOutcome::Continue);
    assert_eq!(push(&producer, 3), PushOutcome::Continue); // "E" is withheld
    assert_eq!(push(&producer, 2), PushOutcome::Stop(FinishReason::Stop));
    assert_eq!(push(&producer, 0), PushOutcome::Stop(FinishReason::Stop));
    producer.finish(FinishReason::Stop, None); // no-op after the end
    let events = drain(&consumer);
    let texts: Vec<&str> = events.iter().map(|event| event.text.as_str()).collect();
    assert_eq!(texts, ["a", "", "E "]);
    let last = events.last().unwrap();
    assert_eq!(last.finish_reason, Some(FinishReason::Stop));
    assert_eq!(last.stop_sequence.as_deref(), Some("END"));
    assert_eq!(consumer.finish_reason(), Some(FinishReason::Stop));
}

#[test]
fn max_tokens_ends_with_length_and_flushes_withheld_text() {
    let (producer, consumer) = open(|c| {
        c.max_tokens = 3;
        c.stop_sequences = vec!["EN".into()];
    });
    assert_eq!(push(&producer, 0), PushOutcome::Continue);
    assert_eq!(push(&producer, 3), PushOutcome::Continue);
    assert_eq!(push(&producer, 4), PushOutcome::Stop(FinishReason::Length));
    assert_eq!(push(&producer, 0), PushOutcome::Stop(FinishReason::Length));
    let events = drain(&consumer);
    assert_eq!(events.len(), 3);
    // The unfinished character at the cut is dropped (and counted), not shown as U+FFFD.
    assert_eq!(events[2].text, "E");
    assert_eq!(events[2].finish_reason, Some(FinishReason::Length));
    assert_eq!(events[2].stats.generation_tokens, 3);
    assert_eq!(events[2].stats.incomplete_bytes_dropped, 1);
}

#[test]
fn finish_flushes_and_carries_the_eos_token() {
    let (producer, consumer) = open(|c| c.stop_sequences = vec!["Ex".into()]);
    assert_eq!(push(&producer, 3), PushOutcome::Continue);
    assert_eq!(push(&producer, 5), PushOutcome::Continue);
    producer.finish(FinishReason::Stop, Some(1));
    let events = drain(&consumer);
    assert_eq!(text_of(&events), "E");
    let last = events.last().unwrap();
    assert_eq!(last.token, Some(1));
    assert_eq!(last.text, "E");
    assert_eq!(last.stats.incomplete_bytes_dropped, 1);
    assert_eq!(last.finish_reason, Some(FinishReason::Stop));
    assert_eq!(last.stop_sequence, None);
    assert_eq!(last.stats.generation_tokens, 3);
}

#[test]
fn finish_never_blocks_on_a_full_buffer() {
    let (producer, consumer) = open(|c| c.buffer_size = 1);
    assert_eq!(push(&producer, 0), PushOutcome::Continue);
    producer.finish(FinishReason::Length, None);
    let events = drain(&consumer);
    assert_eq!(events.len(), 2);
    assert_eq!(events[1].finish_reason, Some(FinishReason::Length));
}

#[test]
fn timeout_delivers_earlier_events_then_the_error() {
    let before_creation = Instant::now();
    let (producer, consumer) = open(|c| c.timeout_ms = 200);
    assert_eq!(push(&producer, 0), PushOutcome::Continue);
    assert_eq!(push(&producer, 1), PushOutcome::Continue);
    assert_eq!(consumer.next().unwrap().unwrap().text, "a");
    assert_eq!(consumer.next().unwrap().unwrap().text, "b");

    // The producer stalls: the consumer's wait ends at the deadline.
    let result = consumer.next();
    let waited = before_creation.elapsed();
    assert_eq!(result, Err(CoreError::StreamTimeout { timeout_ms: 200 }));
    assert!(
        waited >= Duration::from_millis(200),
        "returned early: {waited:?}"
    );
    assert!(
        waited <= Duration::from_millis(300),
        "returned late: {waited:?}"
    );

    assert_eq!(push(&producer, 0), PushOutcome::Stop(FinishReason::Timeout));
    assert_eq!(consumer.finish_reason(), Some(FinishReason::Timeout));
    assert!(
        consumer.next().unwrap().is_none(),
        "the error is reported once"
    );
}

#[test]
fn events_buffered_before_the_deadline_come_first() {
    let (producer, consumer) = open(|c| c.timeout_ms = 50);
    assert_eq!(push(&producer, 0), PushOutcome::Continue);
    assert_eq!(push(&producer, 1), PushOutcome::Continue);
    assert_eq!(
        producer.wait_for(Duration::from_secs(10)),
        Some(FinishReason::Timeout)
    );
    assert_eq!(push(&producer, 0), PushOutcome::Stop(FinishReason::Timeout));
    assert_eq!(consumer.next().unwrap().unwrap().text, "a");
    assert_eq!(consumer.next().unwrap().unwrap().text, "b");
    assert_eq!(
        consumer.next(),
        Err(CoreError::StreamTimeout { timeout_ms: 50 })
    );
}

#[test]
fn blocked_push_returns_at_the_deadline() {
    let (producer, consumer) = open(|c| {
        c.timeout_ms = 100;
        c.buffer_size = 1;
    });
    assert_eq!(push(&producer, 0), PushOutcome::Continue);
    let outcome = spawn_bounded(move || push(&producer, 0));
    assert_eq!(
        outcome.recv_timeout(JOIN_LIMIT).unwrap(),
        PushOutcome::Stop(FinishReason::Timeout)
    );
    assert_eq!(consumer.next().unwrap().unwrap().text, "a");
    assert_eq!(
        consumer.next(),
        Err(CoreError::StreamTimeout { timeout_ms: 100 })
    );
}

#[test]
fn producer_failure_comes_after_buffered_events() {
    let (producer, consumer) = open(|_| {});
    push(&producer, 0);
    push(&producer, 1);
    producer.fail("model exploded".into());
    assert_eq!(push(&producer, 0), PushOutcome::Stop(FinishReason::Error));
    assert_eq!(consumer.next().unwrap().unwrap().text, "a");
    assert_eq!(consumer.next().unwrap().unwrap().text, "b");
    assert_eq!(
        consumer.next(),
        Err(CoreError::Generation {
            message: "model exploded".into()
        })
    );
    assert!(consumer.next().unwrap().is_none());
    assert_eq!(consumer.finish_reason(), Some(FinishReason::Error));
}

#[test]
fn dropping_the_producer_fails_the_stream() {
    let (producer, consumer) = open(|_| {});
    push(&producer, 0);
    let reader = spawn_bounded(move || {
        let first = consumer.next();
        (first, consumer.next(), consumer.finish_reason())
    });
    drop(producer);
    let (first, second, reason) = reader.recv_timeout(JOIN_LIMIT).unwrap();
    assert_eq!(first.unwrap().unwrap().text, "a");
    assert_eq!(
        second,
        Err(CoreError::Generation {
            message: PRODUCER_DROPPED.into()
        })
    );
    assert_eq!(reason, Some(FinishReason::Error));
}

#[test]
fn unknown_token_fails_push_and_stream() {
    let (producer, consumer) = open(|_| {});
    push(&producer, 0);
    let error = producer.push(99, None, Vec::new()).unwrap_err();
    let CoreError::Generation { message } = &error else {
        panic!("expected a Generation error, got {error:?}");
    };
    assert!(message.contains("99"), "{message}");
    assert_eq!(consumer.next().unwrap().unwrap().text, "a");
    assert_eq!(consumer.next(), Err(error));
}

fn counting_waker(consumer: &TokenConsumer) -> Arc<AtomicUsize> {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    consumer.set_waker(Arc::new(move || {
        counter.fetch_add(1, Ordering::SeqCst);
    }));
    calls
}

#[test]
fn waker_fires_once_per_empty_try_next() {
    let (producer, consumer) = open(|_| {});
    let calls = counting_waker(&consumer);
    push(&producer, 0);
    assert_eq!(calls.load(Ordering::SeqCst), 0, "not armed yet");
    assert!(matches!(consumer.try_next().unwrap(), TryNext::Event(_)));
    assert!(matches!(consumer.try_next().unwrap(), TryNext::Empty));
    push(&producer, 1);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    push(&producer, 1);
    assert_eq!(calls.load(Ordering::SeqCst), 1, "one call per arming");
    assert!(matches!(consumer.try_next().unwrap(), TryNext::Event(_)));
    assert!(matches!(consumer.try_next().unwrap(), TryNext::Event(_)));
    assert!(matches!(consumer.try_next().unwrap(), TryNext::Empty));
    producer.finish(FinishReason::Stop, None);
    assert_eq!(calls.load(Ordering::SeqCst), 2, "the end wakes too");
    assert!(matches!(consumer.try_next().unwrap(), TryNext::Event(_)));
    assert!(matches!(consumer.try_next().unwrap(), TryNext::End));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[test]
fn waker_fires_on_failure_and_on_producer_drop() {
    let (producer, consumer) = open(|_| {});
    let calls = counting_waker(&consumer);
    assert!(matches!(consumer.try_next().unwrap(), TryNext::Empty));
    producer.fail("x".into());
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(consumer.try_next().is_err());

    let (producer, consumer) = open(|_| {});
    let calls = counting_waker(&consumer);
    assert!(matches!(consumer.try_next().unwrap(), TryNext::Empty));
    drop(producer);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[test]
fn waker_set_after_arming_fires_if_something_is_ready() {
    let (producer, consumer) = open(|_| {});
    assert!(matches!(consumer.try_next().unwrap(), TryNext::Empty));
    push(&producer, 0);
    let calls = counting_waker(&consumer);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[test]
fn waker_is_called_from_another_thread_without_the_lock() {
    let (producer, consumer) = open(|_| {});
    let consumer = Arc::new(consumer);
    let (sender, receiver) = mpsc::channel();
    let inner = Arc::clone(&consumer);
    consumer.set_waker(Arc::new(move || {
        // Re-entering the consumer from the waker would deadlock if a lock were held.
        let _ = sender.send(matches!(inner.try_next(), Ok(TryNext::Event(_))));
    }));
    assert!(matches!(consumer.try_next().unwrap(), TryNext::Empty));
    let pushed = spawn_bounded(move || push(&producer, 0));
    assert!(receiver.recv_timeout(JOIN_LIMIT).unwrap());
    assert_eq!(
        pushed.recv_timeout(JOIN_LIMIT).unwrap(),
        PushOutcome::Continue
    );
}

#[test]
fn next_within_reports_pending_then_events_then_end() {
    let (producer, consumer) = open(|_| {});
    assert!(matches!(
        consumer.next_within(Duration::from_millis(5)).unwrap(),
        NextWithin::Pending
    ));
    push(&producer, 0);
    assert!(matches!(
        consumer.next_within(Duration::from_millis(5)).unwrap(),
        NextWithin::Event(event) if event.text == "a"
    ));
    producer.finish(FinishReason::Stop, None);
    assert!(matches!(
        consumer.next_within(Duration::ZERO).unwrap(),
        NextWithin::Event(_)
    ));
    assert!(matches!(
        consumer.next_within(Duration::ZERO).unwrap(),
        NextWithin::End
    ));
}

#[test]
fn batches_take_every_ready_event_up_to_max() {
    let (producer, consumer) = open(|_| {});
    for _ in 0..5 {
        push(&producer, 0);
    }
    let batch = consumer.next_batch(3).unwrap().unwrap();
    assert_eq!(batch.len(), 3);
    assert!(
        matches!(consumer.try_next_batch(10).unwrap(), Batch::Events(events) if events.len() == 2)
    );
    assert!(matches!(consumer.try_next_batch(10).unwrap(), Batch::Empty));
    assert!(matches!(
        consumer
            .next_batch_within(Duration::from_millis(1), 10)
            .unwrap(),
        Batch::Empty
    ));
    producer.finish(FinishReason::Stop, None);
    assert_eq!(consumer.next_batch(10).unwrap().unwrap().len(), 1);
    assert!(consumer.next_batch(10).unwrap().is_none());
}

#[test]
fn wait_for_wakes_when_the_consumer_leaves() {
    let (producer, consumer) = open(|_| {});
    let waited = spawn_bounded(move || producer.wait_for(Duration::from_secs(3600)));
    thread::sleep(Duration::from_millis(20));
    drop(consumer);
    assert_eq!(
        waited.recv_timeout(JOIN_LIMIT).unwrap(),
        Some(FinishReason::Cancelled)
    );
}

#[test]
fn wait_for_sleeps_while_the_stream_runs() {
    let (producer, _consumer) = open(|_| {});
    assert_eq!(producer.wait_for(Duration::from_millis(1)), None);
}

#[test]
fn stats_count_tokens_and_carry_producer_reports() {
    let (producer, consumer) = open(|_| {});
    producer.set_prompt_tokens(12);
    let initial = consumer.stats();
    assert_eq!(initial.generation_tokens, 0);
    assert_eq!(initial.time_to_first_token_s, None);
    assert_eq!(initial.generation_tps, 0.0);

    push(&producer, 0);
    producer.set_peak_memory(4096);
    push(&producer, 1);
    let events = [
        consumer.next().unwrap().unwrap(),
        consumer.next().unwrap().unwrap(),
    ];
    assert_eq!(events[0].stats.generation_tokens, 1);
    assert_eq!(events[0].stats.peak_memory_bytes, 0);
    assert_eq!(events[1].stats.generation_tokens, 2);
    assert_eq!(events[1].stats.peak_memory_bytes, 4096);
    let ttft = events[0].stats.time_to_first_token_s.unwrap();
    assert!(ttft > 0.0);
    assert_eq!(events[0].stats.prompt_tokens, 12);
    assert!((events[0].stats.prompt_tps - 12.0 / ttft).abs() < 1e-6 * (12.0 / ttft));
    assert_eq!(
        events[0].stats.generation_tps, 0.0,
        "undefined for one token"
    );

    producer.finish(FinishReason::Stop, None);
    let frozen = consumer.stats();
    assert_eq!(frozen.generation_tokens, 2);
    assert!(frozen.generation_tps > 0.0);
    assert!(frozen.elapsed_s >= ttft);
    let expected_tps = 1.0 / (frozen.elapsed_s - ttft);
    assert!((frozen.generation_tps - expected_tps).abs() <= 1e-6 * expected_tps);
    assert_eq!(
        consumer.stats(),
        frozen,
        "stats freeze once the stream ended"
    );
}
