//! The consumer-side reader both bindings use: batches handed out one at a time, the end
//! remembered, errors once after every event, and `room` for producers that must not block.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mullama_core::{
    push_ids_in_order, token_stream, Batch, CoreError, FinishReason, PieceTable, PushOutcome, Read,
    StreamConfig, StreamReader, TokenProducer,
};

fn open(pieces: &[&str], change: impl FnOnce(&mut StreamConfig)) -> (TokenProducer, StreamReader) {
    let table = PieceTable::new(pieces.iter().map(|p| p.as_bytes().to_vec()).collect());
    let mut config = StreamConfig {
        timeout_ms: 0,
        ..StreamConfig::default()
    };
    change(&mut config);
    let (producer, consumer) = token_stream(&config, Arc::new(table)).unwrap();
    (producer, StreamReader::new(consumer, config.buffer_size))
}

fn read_all(reader: &StreamReader) -> (String, Option<CoreError>) {
    let mut text = String::new();
    loop {
        match reader.read() {
            Ok(Some(event)) => text.push_str(&event.text),
            Ok(None) => return (text, None),
            Err(err) => return (text, Some(err)),
        }
    }
}

#[test]
fn reads_every_event_in_order_and_remembers_the_end() {
    let (producer, reader) = open(&["a", "b", "END", "c"], |c| {
        c.stop_sequences = vec!["END".into()];
    });
    for id in 0..4 {
        if producer.push(id, None, Vec::new()).unwrap() != PushOutcome::Continue {
            break;
        }
    }
    assert_eq!(reader.finish_reason(), None, "not read yet");
    let (text, error) = read_all(&reader);
    assert_eq!((text.as_str(), error), ("ab", None));
    assert_eq!(reader.finish_reason(), Some(FinishReason::Stop));
    assert_eq!(reader.stop_sequence().as_deref(), Some("END"));
    assert!(reader.is_done());
    assert!(matches!(reader.try_read(), Ok(Read::End)));
}

#[test]
fn an_error_comes_once_after_the_events() {
    let (producer, reader) = open(&["x", "y"], |_| {});
    producer.push(0, None, Vec::new()).unwrap();
    producer.fail_with(CoreError::EngineExited {
        message: "worker died".into(),
    });
    let (text, error) = read_all(&reader);
    assert_eq!(text, "x");
    assert_eq!(error.map(|e| e.code()), Some("ENGINE_EXITED"));
    assert!(matches!(reader.try_read(), Ok(Read::End)));
    assert_eq!(reader.finish_reason(), Some(FinishReason::Error));
}

#[test]
fn try_read_arms_the_waker_once_when_empty() {
    let (producer, reader) = open(&["x"], |_| {});
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    reader.set_waker(Arc::new(move || {
        counter.fetch_add(1, Ordering::SeqCst);
    }));
    assert!(matches!(reader.try_read(), Ok(Read::Empty)));
    producer.push(0, None, Vec::new()).unwrap();
    producer.push(0, None, Vec::new()).unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(matches!(reader.try_read(), Ok(Read::Event(_))));
}

#[test]
fn read_within_gives_up_after_the_wait() {
    let (_producer, reader) = open(&["x"], |_| {});
    let read = reader.read_within(Duration::from_millis(5)).unwrap();
    assert!(matches!(read, Read::Empty));
}

#[test]
fn room_counts_what_the_reader_has_not_freed() {
    let (producer, reader) = open(&["a", "b", "c", "d", "e"], |c| c.buffer_size = 4);
    assert_eq!(producer.room(), 4);
    for id in 0..4 {
        producer.push(id, None, Vec::new()).unwrap();
    }
    assert_eq!(producer.room(), 0);
    // One read takes the whole batch but hands out one event: the rest still hold room
    // until the reader goes back to the channel.
    assert!(matches!(reader.try_read(), Ok(Read::Event(_))));
    assert_eq!(producer.room(), 1);
    for _ in 0..3 {
        assert!(matches!(reader.try_read(), Ok(Read::Event(_))));
    }
    assert!(matches!(reader.try_read(), Ok(Read::Empty)));
    assert_eq!(producer.room(), 4);
    reader.close();
    assert_eq!(producer.room(), 4, "an ended stream never blocks a push");
    assert_eq!(
        producer.push(4, None, Vec::new()).unwrap(),
        PushOutcome::Stop(FinishReason::Cancelled)
    );
}

#[test]
fn a_batch_read_takes_one_channel_batch_and_keeps_its_room() {
    let (producer, reader) = open(&["a", "b", "c"], |c| c.buffer_size = 3);
    for id in 0..3 {
        producer.push(id, None, Vec::new()).unwrap();
    }
    let Ok(Batch::Events(events)) = reader.try_read_batch() else {
        panic!("three events were ready");
    };
    assert_eq!(events.len(), 3);
    assert_eq!(
        producer.room(),
        1,
        "the batch holds its room until the next read"
    );
    assert!(matches!(reader.try_read_batch(), Ok(Batch::Empty)));
    assert_eq!(producer.room(), 3);
    producer.finish(FinishReason::Length, None);
    let Ok(Batch::Events(events)) = reader.try_read_batch() else {
        panic!("the closing event was ready");
    };
    assert_eq!(events[0].finish_reason, Some(FinishReason::Length));
    assert_eq!(reader.finish_reason(), Some(FinishReason::Length));
    assert!(matches!(reader.try_read_batch(), Ok(Batch::End)));
}

#[test]
fn releasing_a_handed_out_batch_frees_its_room_before_the_next_read() {
    let (producer, reader) = open(&["a", "b", "c", "d"], |c| c.buffer_size = 3);
    assert_eq!(producer.push_available(&[0, 1, 2]).unwrap().0, 3);
    let Ok(Batch::Events(events)) = reader.try_read_batch() else {
        panic!("three events were ready");
    };
    assert_eq!(producer.room(), 1, "held until released or read");
    reader.release_handed_out();
    assert_eq!(
        producer.room(),
        3,
        "a producer on the reader's thread may fill it all"
    );
    drop(events);
    assert_eq!(producer.push_available(&[3, 0, 1]).unwrap().0, 3);
    let Ok(Batch::Events(events)) = reader.try_read_batch() else {
        panic!("a whole buffer was ready");
    };
    assert_eq!(events.len(), 3);
    assert_eq!(producer.room(), 1);
}

#[test]
fn release_waits_while_the_reader_still_holds_events_of_its_batch() {
    let (producer, reader) = open(&["a", "b", "c"], |c| c.buffer_size = 3);
    for id in 0..3 {
        producer.push(id, None, Vec::new()).unwrap();
    }
    assert!(
        matches!(reader.try_read(), Ok(Read::Event(_))),
        "one of three handed out"
    );
    reader.release_handed_out();
    assert_eq!(
        producer.room(),
        1,
        "two events of the batch still wait in the reader"
    );
}

#[test]
fn a_spinning_batch_read_catches_a_running_producer_or_arms_the_waker() {
    let (producer, reader) = open(&["a"], |c| c.buffer_size = 8);
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    reader.set_waker(Arc::new(move || {
        counter.fetch_add(1, Ordering::SeqCst);
    }));
    assert!(matches!(
        reader.try_read_batch_spinning(Duration::from_micros(30)),
        Ok(Batch::Empty)
    ));
    producer.push(0, None, Vec::new()).unwrap();
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the empty read armed the waker"
    );
    producer.finish(FinishReason::Stop, None);
    let Ok(Batch::Events(events)) = reader.try_read_batch_spinning(Duration::ZERO) else {
        panic!("two events were ready");
    };
    assert_eq!(events.len(), 2);
    assert_eq!(reader.finish_reason(), Some(FinishReason::Stop));
    assert!(matches!(
        reader.try_read_batch_spinning(Duration::ZERO),
        Ok(Batch::End)
    ));
}

#[test]
fn close_from_another_thread_ends_a_blocked_read() {
    let (_producer, reader) = open(&["x"], |_| {});
    let reader = Arc::new(reader);
    let closer = Arc::clone(&reader);
    let handle = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        closer.close();
    });
    assert!(matches!(reader.read(), Ok(None)));
    handle.join().unwrap();
}

#[test]
fn push_ids_in_order_feeds_the_whole_table_then_stops() {
    let (producer, reader) = open(&["he", "llo", " wor", "ld"], |_| {});
    let handle = std::thread::spawn(move || push_ids_in_order(&producer, 4, Duration::ZERO));
    let (text, error) = read_all(&reader);
    handle.join().unwrap();
    assert_eq!((text.as_str(), error), ("hello world", None));
    assert_eq!(reader.finish_reason(), Some(FinishReason::Stop));
}

/// Every event's text and the end, as one string per event (the stats aside).
fn events_of(reader: &StreamReader) -> (Vec<String>, Option<FinishReason>, Option<String>) {
    let mut texts = Vec::new();
    while let Ok(Some(event)) = reader.read() {
        texts.push(event.text.to_string());
    }
    (texts, reader.finish_reason(), reader.stop_sequence())
}

#[test]
fn push_available_gives_the_events_of_pushes_one_by_one() {
    // Stops across pieces, a character split over two pieces, and max_tokens.
    let pieces = ["He", "llo", " <", "|e", "nd|", "> ", "\u{1F642}", "x"];
    let mut split: Vec<Vec<u8>> = pieces.iter().map(|p| p.as_bytes().to_vec()).collect();
    let smile = split.remove(6);
    split.insert(6, smile[2..].to_vec());
    split.insert(6, smile[..2].to_vec());
    let ids: Vec<u32> = (0..split.len() as u32).collect();
    let table = Arc::new(PieceTable::new(split));
    for (stops, max_tokens) in [
        (vec![], 100),
        (vec!["<|end|>".to_owned()], 100),
        (vec![], 4),
    ] {
        let config = StreamConfig {
            timeout_ms: 0,
            buffer_size: 64,
            stop_sequences: stops.clone(),
            max_tokens,
            ..StreamConfig::default()
        };
        let (one, one_consumer) = token_stream(&config, table.clone()).unwrap();
        for &id in &ids {
            if one.push(id, None, Vec::new()).unwrap() != PushOutcome::Continue {
                break;
            }
        }
        one.finish(FinishReason::Stop, None);
        let (all, all_consumer) = token_stream(&config, table.clone()).unwrap();
        let (pushed, outcome) = all.push_available(&ids).unwrap();
        if outcome == PushOutcome::Continue {
            assert_eq!(pushed, ids.len());
            all.finish(FinishReason::Stop, None);
        }
        let expected = events_of(&StreamReader::new(one_consumer, 64));
        let got = events_of(&StreamReader::new(all_consumer, 64));
        assert_eq!(got, expected, "stops {stops:?}, max_tokens {max_tokens}");
    }
}

#[test]
fn push_available_never_takes_more_than_the_room() {
    let (producer, reader) = open(&["a", "b", "c", "d", "e"], |c| c.buffer_size = 3);
    assert_eq!(
        producer.push_available(&[0, 1, 2, 3, 4]).unwrap(),
        (3, PushOutcome::Continue)
    );
    assert_eq!(producer.room(), 0);
    assert_eq!(
        producer.push_available(&[3, 4]).unwrap(),
        (0, PushOutcome::Continue)
    );
    let mut text = String::new();
    while let Ok(Read::Event(event)) = reader.try_read() {
        text.push_str(&event.text);
    }
    assert_eq!(text, "abc");
    reader.close();
    assert_eq!(
        producer.push_available(&[3]).unwrap(),
        (0, PushOutcome::Stop(FinishReason::Cancelled))
    );
}

#[test]
fn push_available_sends_what_came_before_an_id_outside_the_vocabulary() {
    let (producer, reader) = open(&["a", "b"], |_| {});
    let err = producer.push_available(&[0, 1, 7, 0]).unwrap_err();
    assert!(err
        .to_string()
        .contains("token id 7 is outside the vocabulary (size 2)"));
    let (text, error) = read_all(&reader);
    assert_eq!(text, "ab");
    assert_eq!(error.map(|e| e.code()), Some("GENERATION_ERROR"));
}
