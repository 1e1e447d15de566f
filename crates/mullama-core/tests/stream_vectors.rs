//! The shared stream vectors (testdata/stream_vectors.jsonl), which the Python and Node tests
//! read too: every binding must give the same text, byte for byte, and the same ending.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use mullama_core::config::{field, FieldValue};
use mullama_core::{push_ids_in_order, token_stream, PieceTable, StreamConfig, StreamReader};
use serde_json::Value;

fn vectors() -> Vec<Value> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/stream_vectors.jsonl");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).expect("a JSON object per line"))
        .collect()
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex bytes"))
        .collect()
}

fn config(fields: &Value) -> StreamConfig {
    let mut config = StreamConfig::default();
    for (name, value) in fields.as_object().expect("config is an object") {
        let spec = field(name).unwrap_or_else(|| panic!("no field {name}"));
        let value = match value {
            Value::Bool(b) => FieldValue::Bool(*b),
            Value::Number(n) => FieldValue::Int(n.as_u64().expect("integer fields only")),
            Value::Array(items) => FieldValue::Strings(
                items
                    .iter()
                    .map(|s| s.as_str().expect("strings").to_owned())
                    .collect(),
            ),
            other => panic!("unexpected config value {other}"),
        };
        config.set(spec, value).expect("a valid config");
    }
    config
}

#[test]
fn every_vector_streams_to_its_text_and_ending() {
    let vectors = vectors();
    assert!(vectors.len() >= 10);
    for vector in &vectors {
        let name = vector["name"].as_str().unwrap();
        let pieces: Vec<Vec<u8>> = vector["pieces_hex"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| hex(p.as_str().unwrap()))
            .collect();
        let count = pieces.len() as u32;
        let config = config(&vector["config"]);
        let (producer, consumer) =
            token_stream(&config, Arc::new(PieceTable::new(pieces))).unwrap();
        let reader = StreamReader::new(consumer, config.buffer_size);
        let feeder =
            std::thread::spawn(move || push_ids_in_order(&producer, count, Duration::ZERO));
        let mut text = String::new();
        while let Some(event) = reader.read().unwrap() {
            text.push_str(&event.text);
        }
        feeder.join().unwrap();
        assert_eq!(text, vector["text"].as_str().unwrap(), "{name}");
        let reason = reader.finish_reason().map(|r| r.as_str());
        assert_eq!(reason, vector["finish_reason"].as_str(), "{name}");
        assert_eq!(
            reader.stop_sequence().as_deref(),
            vector["stop_sequence"].as_str(),
            "{name}"
        );
    }
}
