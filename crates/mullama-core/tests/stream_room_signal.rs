//! `room` and `RoomSignal`: a loop feeding many streams leaves full ones out and sleeps
//! until a consumer frees room or a stream ends.

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use mullama_core::{
    token_stream, PieceTable, RoomSignal, StreamConfig, TokenConsumer, TokenProducer,
};

/// Generous bound for a wait that should end at once: a failure shows as a test error.
const WAIT_LIMIT: Duration = Duration::from_secs(20);

fn open(buffer_size: usize, timeout_ms: u64) -> (TokenProducer, TokenConsumer) {
    let config = StreamConfig {
        max_tokens: 1_000,
        buffer_size,
        timeout_ms,
        ..StreamConfig::default()
    };
    let pieces = Arc::new(PieceTable::new(vec![b"a".to_vec(), b"b".to_vec()]));
    token_stream(&config, pieces).expect("valid config")
}

fn fill(producer: &TokenProducer, n: usize) {
    for _ in 0..n {
        assert!(producer.room() > 0, "room before the buffer is full");
        producer.push(0, None, Vec::new()).expect("known token");
    }
}

#[test]
fn has_room_is_false_exactly_while_the_buffer_is_full() {
    let (producer, consumer) = open(3, 0);
    fill(&producer, 3);
    assert!(producer.room() == 0);
    consumer.next().expect("no error").expect("an event");
    assert!(producer.room() > 0);
}

#[test]
fn a_batch_read_keeps_its_held_events_counted_until_the_next_read() {
    let (producer, consumer) = open(4, 0);
    fill(&producer, 4);
    let taken = consumer.next_batch(4).expect("no error").expect("events");
    assert_eq!(taken.len(), 4);
    // The first is handed out, three are still held by the consumer's side: room for one.
    fill(&producer, 1);
    assert!(producer.room() == 0);
    let signal = Arc::new(RoomSignal::new());
    producer.set_room_signal(Arc::clone(&signal));
    let seen = signal.epoch();
    let reader = thread::spawn(move || {
        let _ = consumer.next_within(Duration::from_millis(10));
        consumer
    });
    assert_ne!(
        signal.wait_past(seen, WAIT_LIMIT),
        seen,
        "the read freed room"
    );
    assert!(producer.room() > 0);
    drop(reader.join().unwrap());
}

#[test]
fn reading_from_a_full_stream_notifies_the_signal() {
    let (producer, consumer) = open(2, 0);
    let signal = Arc::new(RoomSignal::new());
    producer.set_room_signal(Arc::clone(&signal));
    fill(&producer, 2);
    let seen = signal.epoch();
    let reader = thread::spawn(move || {
        thread::sleep(Duration::from_millis(20));
        consumer.next().expect("no error").expect("an event");
        consumer
    });
    let started = Instant::now();
    assert_ne!(signal.wait_past(seen, WAIT_LIMIT), seen);
    assert!(started.elapsed() < WAIT_LIMIT);
    assert!(producer.room() > 0);
    drop(reader.join().unwrap());
}

#[test]
fn reads_that_leave_room_do_not_notify() {
    let (producer, consumer) = open(8, 0);
    let signal = Arc::new(RoomSignal::new());
    producer.set_room_signal(Arc::clone(&signal));
    fill(&producer, 3);
    let seen = signal.epoch();
    for _ in 0..3 {
        consumer.next().expect("no error").expect("an event");
    }
    assert_eq!(signal.epoch(), seen, "the producer never waited for room");
}

#[test]
fn cancelling_a_stream_notifies_and_leaves_room_for_the_stop() {
    let (producer, consumer) = open(1, 0);
    let signal = Arc::new(RoomSignal::new());
    producer.set_room_signal(Arc::clone(&signal));
    fill(&producer, 1);
    assert!(producer.room() == 0);
    let seen = signal.epoch();
    consumer.cancel();
    assert_ne!(signal.epoch(), seen);
    // A push now returns at once with the stop, so the loop may call it.
    assert!(producer.room() > 0);
    assert!(producer.stop_reason().is_some());
}

#[test]
fn attaching_to_an_ended_stream_notifies_at_once() {
    let (producer, consumer) = open(4, 0);
    drop(consumer);
    let signal = Arc::new(RoomSignal::new());
    let seen = signal.epoch();
    producer.set_room_signal(Arc::clone(&signal));
    assert_ne!(signal.epoch(), seen);
}

#[test]
fn a_full_stream_past_its_deadline_has_room_for_the_timeout() {
    let (producer, _consumer) = open(1, 30);
    fill(&producer, 1);
    assert!(producer.room() == 0);
    thread::sleep(Duration::from_millis(60));
    assert!(producer.room() > 0);
    assert!(producer.stop_reason().is_some());
}

#[test]
fn one_signal_serves_many_streams() {
    let signal = Arc::new(RoomSignal::new());
    let streams: Vec<_> = (0..4).map(|_| open(1, 0)).collect();
    for (producer, _) in &streams {
        producer.set_room_signal(Arc::clone(&signal));
        fill(producer, 1);
    }
    let seen = signal.epoch();
    let (producer, consumer) = &streams[2];
    consumer.next().expect("no error").expect("an event");
    assert_ne!(signal.wait_past(seen, WAIT_LIMIT), seen);
    let ready: Vec<bool> = streams.iter().map(|(p, _)| p.room() > 0).collect();
    assert_eq!(ready, vec![false, false, true, false]);
    assert!(producer.room() > 0);
}
