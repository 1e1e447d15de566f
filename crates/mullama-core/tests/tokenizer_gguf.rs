//! GGUF metadata parsing on hand-built files: every value type, tensor infos, and every
//! way a file can be broken (truncation at each byte, bad magic, bad version, absurd
//! counts and lengths) must give `CoreError::ModelLoad`, never a panic or a huge
//! allocation. The tensor directory: sizes, absolute offsets, and data that must lie
//! inside the file. Also a tokenizer built from a tiny in-memory vocabulary.

use mullama_core::gguf::{GgmlType, GgufArray, GgufMetadata, GgufType, GgufValue};
use mullama_core::tokenizer::Tokenizer;
use mullama_core::{CoreError, TokenPieces};

/// Little-endian GGUF writer for tests.
#[derive(Default)]
struct Builder {
    kv: Vec<u8>,
    kv_count: u64,
    tensors: Vec<u8>,
    tensor_count: u64,
    /// Bytes of (zero) tensor data written after the header, padded to 32.
    data_len: u64,
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

impl Builder {
    fn key(&mut self, key: &str, ty: u32) -> &mut Vec<u8> {
        self.kv_count += 1;
        put_str(&mut self.kv, key);
        self.kv.extend(ty.to_le_bytes());
        &mut self.kv
    }
    fn u32(&mut self, key: &str, v: u32) -> &mut Self {
        self.key(key, 4).extend(v.to_le_bytes());
        self
    }
    fn string(&mut self, key: &str, v: &str) -> &mut Self {
        put_str(self.key(key, 8), v);
        self
    }
    fn bool(&mut self, key: &str, v: bool) -> &mut Self {
        self.key(key, 7).push(u8::from(v));
        self
    }
    fn strings(&mut self, key: &str, items: &[&str]) -> &mut Self {
        let out = self.key(key, 9);
        out.extend(8u32.to_le_bytes());
        out.extend((items.len() as u64).to_le_bytes());
        for s in items {
            put_str(out, s);
        }
        self
    }
    fn i32s(&mut self, key: &str, items: &[i32]) -> &mut Self {
        let out = self.key(key, 9);
        out.extend(5u32.to_le_bytes());
        out.extend((items.len() as u64).to_le_bytes());
        for v in items {
            out.extend(v.to_le_bytes());
        }
        self
    }
    fn raw(&mut self, key: &str, ty: u32, bytes: &[u8]) -> &mut Self {
        self.key(key, ty).extend(bytes);
        self
    }
    fn tensor(&mut self, name: &str, dims: &[u64], ggml_type: u32, offset: u64) -> &mut Self {
        self.tensor_count += 1;
        put_str(&mut self.tensors, name);
        self.tensors.extend((dims.len() as u32).to_le_bytes());
        for d in dims {
            self.tensors.extend(d.to_le_bytes());
        }
        self.tensors.extend(ggml_type.to_le_bytes());
        self.tensors.extend(offset.to_le_bytes());
        self
    }
    fn build(&self) -> Vec<u8> {
        let mut out = b"GGUF".to_vec();
        out.extend(3u32.to_le_bytes());
        out.extend(self.tensor_count.to_le_bytes());
        out.extend(self.kv_count.to_le_bytes());
        out.extend(&self.kv);
        out.extend(&self.tensors);
        if self.data_len > 0 {
            out.resize(out.len().div_ceil(32) * 32 + self.data_len as usize, 0);
        }
        out
    }
}

fn every_type_file() -> Vec<u8> {
    let mut b = Builder::default();
    b.raw("u8", 0, &[200])
        .raw("i8", 1, &[0xFF])
        .raw("u16", 2, &60000u16.to_le_bytes())
        .raw("i16", 3, &(-2i16).to_le_bytes())
        .u32("u32", 4_000_000_000)
        .raw("i32", 5, &(-7i32).to_le_bytes())
        .raw("f32", 6, &1.5f32.to_le_bytes())
        .bool("bool", true)
        .string("general.architecture", "llama")
        .raw("u64", 10, &u64::MAX.to_le_bytes())
        .raw("i64", 11, &i64::MIN.to_le_bytes())
        .raw("f64", 12, &0.25f64.to_le_bytes())
        .strings("names", &["a", "bé", ""])
        .i32s("types", &[1, 3, -1]);
    // An array of two u8 arrays.
    let mut nested = Vec::new();
    nested.extend(9u32.to_le_bytes());
    nested.extend(2u64.to_le_bytes());
    for inner in [&[1u8, 2][..], &[3u8][..]] {
        nested.extend(0u32.to_le_bytes());
        nested.extend((inner.len() as u64).to_le_bytes());
        nested.extend(inner);
    }
    b.raw("nested", 9, &nested);
    // Q4_1: 3 rows of 2 blocks of 20 bytes; F32: 64 x 4 bytes, at the next 32-byte step.
    b.tensor("tok_embd.weight", &[64, 3], 3, 0)
        .tensor("norm.weight", &[64], 0, 128);
    b.data_len = 128 + 256;
    b.build()
}

fn load_error(bytes: &[u8]) -> String {
    match GgufMetadata::from_bytes(bytes) {
        Err(CoreError::ModelLoad { message }) => message,
        other => panic!("expected ModelLoad error, got {other:?}"),
    }
}

#[test]
fn parses_every_value_type_and_tensor_infos() {
    let meta = GgufMetadata::from_bytes(&every_type_file()).unwrap();
    assert_eq!(meta.version, 3);
    assert_eq!(meta.get("u8"), Some(&GgufValue::U8(200)));
    assert_eq!(meta.get("i8"), Some(&GgufValue::I8(-1)));
    assert_eq!(meta.get("u16"), Some(&GgufValue::U16(60000)));
    assert_eq!(meta.get("i16"), Some(&GgufValue::I16(-2)));
    assert_eq!(meta.get_u32("u32"), Some(4_000_000_000));
    assert_eq!(meta.get_i64("i32"), Some(-7));
    assert_eq!(meta.get_f64("f32"), Some(1.5));
    assert_eq!(meta.get_bool("bool"), Some(true));
    assert_eq!(meta.architecture(), Some("llama"));
    assert_eq!(meta.get_u64("u64"), Some(u64::MAX));
    assert_eq!(meta.get_i64("i64"), Some(i64::MIN));
    assert_eq!(meta.get_f64("f64"), Some(0.25));
    assert_eq!(meta.get_string_array("names").unwrap(), ["a", "bé", ""]);
    assert_eq!(
        meta.get_array("types").unwrap().to_i64_vec().unwrap(),
        [1, 3, -1]
    );
    assert_eq!(
        meta.get_array("nested"),
        Some(&GgufArray::Array(vec![
            GgufArray::U8(vec![1, 2]),
            GgufArray::U8(vec![3])
        ]))
    );
    assert_eq!(meta.get_u32("u64"), None, "too large for u32");
    assert_eq!(meta.get_str("u8"), None, "wrong type");
    assert_eq!(meta.kv.len(), 15);
    assert_eq!(meta.tensors.len(), 2);
    assert_eq!(meta.tensors[0].name, "tok_embd.weight");
    assert_eq!(meta.tensors[0].dims, [64, 3]);
    assert_eq!(meta.tensors[0].row_major_shape(), [3, 64]);
    assert_eq!(meta.tensors[0].ggml_type.name(), "Q4_1");
    assert_eq!(meta.tensors[0].nbytes, 3 * 2 * 20);
    assert_eq!(meta.tensors[1].ggml_type.name(), "F32");
    assert_eq!(meta.tensors[1].offset, 128);
    assert_eq!(meta.tensors[1].nbytes, 256);
    assert_eq!(meta.alignment, 32);
    assert_eq!(meta.data_offset % 32, 0);
    let len = every_type_file().len() as u64;
    assert_eq!(meta.file_size, len);
    assert_eq!(meta.data_offset + 128 + 256, len);
    assert_eq!(meta.tensors[0].file_offset, meta.data_offset);
    assert_eq!(meta.tensors[1].file_offset, meta.data_offset + 128);
    assert_eq!(meta.tensor("norm.weight"), Some(&meta.tensors[1]));
    assert_eq!(meta.tensor("nope"), None);
    assert_eq!(meta.path, None);
}

#[test]
fn value_types_have_the_specification_names() {
    let meta = GgufMetadata::from_bytes(&every_type_file()).unwrap();
    let names: Vec<_> = meta.kv.iter().map(|(_, v)| v.value_type().name()).collect();
    assert_eq!(
        names,
        [
            "uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "bool", "string",
            "uint64", "int64", "float64", "array", "array", "array"
        ]
    );
    let names = meta.get_array("names").unwrap().element_type();
    assert_eq!((names, names.name()), (GgufType::String, "string"));
    assert_eq!(
        meta.get_array("nested").unwrap().element_type().name(),
        "array"
    );
}

/// A file with one tensor of `dims`, `ggml_type` at `offset`, and `data_len` data bytes.
fn one_tensor(dims: &[u64], ggml_type: u32, offset: u64, data_len: u64) -> Vec<u8> {
    let mut b = Builder::default();
    b.string("general.architecture", "llama")
        .tensor("blk.0.w", dims, ggml_type, offset);
    b.data_len = data_len;
    b.build()
}

#[test]
fn tensor_sizes_follow_the_block_layout_of_each_type() {
    // 512 elements per row: a whole number of blocks of every type (blocks of 1 to 256).
    for ty in GgmlType::all() {
        let per_row = 512 / ty.block_size() * ty.block_bytes();
        let meta = GgufMetadata::from_bytes(&one_tensor(&[512, 3], ty.code(), 0, 3 * per_row))
            .unwrap_or_else(|e| panic!("{}: {e}", ty.name()));
        let t = &meta.tensors[0];
        assert_eq!((t.ggml_type, t.nbytes), (ty, 3 * per_row), "{}", ty.name());
    }
    assert_eq!(GgmlType::from_name("Q4_K").map(GgmlType::code), Some(12));
    assert_eq!(GgmlType::from_name("q4_k"), None);
}

#[test]
fn broken_tensor_directories_are_named() {
    let f32_row = 32 * 4;
    assert!(load_error(&one_tensor(&[32], 999, 0, f32_row))
        .contains("tensor blk.0.w has unknown tensor type id 999"));
    assert!(load_error(&one_tensor(&[32], 4, 0, f32_row)).contains("unknown tensor type id 4"));
    assert!(load_error(&one_tensor(&[32], 0, 16, 256)).contains("not a multiple of the alignment"));
    let short = load_error(&one_tensor(&[32], 0, 0, f32_row - 1));
    assert!(
        short.contains("truncated or corrupt")
            && short.contains("tensor blk.0.w (128 bytes at offset")
            && short.contains("lies outside the file"),
        "{short}"
    );
    assert!(load_error(&one_tensor(&[32], 0, u64::MAX - 31, f32_row)).contains("lies outside"));
    assert!(load_error(&one_tensor(&[48], 2, 0, 64))
        .contains("not a multiple of the Q4_0 block size 32"));
    assert!(load_error(&one_tensor(&[1 << 40, 1 << 40], 0, 0, 64)).contains("overflow"));
    assert!(load_error(&one_tensor(&[], 0, 0, 64)).contains("0 dimensions"));
    assert!(load_error(&one_tensor(&[1; 5], 0, 0, 64)).contains("5 dimensions"));

    let mut b = Builder::default();
    b.tensor("t", &[8], 0, 0).tensor("t", &[8], 0, 32);
    b.data_len = 64;
    assert!(load_error(&b.build()).contains("tensor t appears twice"));

    for bad in [0u32, 12] {
        let mut b = Builder::default();
        b.u32("general.alignment", bad);
        assert!(
            load_error(&b.build()).contains("general.alignment"),
            "alignment {bad}"
        );
    }
    let mut b = Builder::default();
    b.u32("general.alignment", 64).tensor("t", &[8], 0, 0);
    let file = {
        let mut f = b.build();
        f.resize(f.len().div_ceil(64) * 64 + 32, 0);
        f
    };
    let meta = GgufMetadata::from_bytes(&file).unwrap();
    assert_eq!((meta.alignment, meta.data_offset % 64), (64, 0));
}

#[test]
fn every_truncation_is_a_load_error() {
    let file = every_type_file();
    for cut in 0..file.len() {
        let message = load_error(&file[..cut]);
        assert!(
            message.contains("truncated")
                || (cut < 4 && message.contains("not a GGUF file"))
                || message.contains("impossible")
                || message.contains("exceeds"),
            "cut at {cut}: {message}"
        );
    }
}

#[test]
fn bad_magic_and_versions_are_named() {
    let mut file = every_type_file();
    file[..4].copy_from_slice(b"GGML");
    assert!(load_error(&file).contains("not a GGUF file (magic 47 47 4d 4c"));
    let mut v1 = every_type_file();
    v1[4..8].copy_from_slice(&1u32.to_le_bytes());
    assert!(load_error(&v1).contains("unsupported version 1 of the GGUF format"));
    let mut big_endian = every_type_file();
    big_endian[4..8].copy_from_slice(&3u32.to_be_bytes());
    assert!(load_error(&big_endian).contains("big-endian"));
}

#[test]
fn absurd_counts_and_lengths_fail_before_allocating() {
    let header = |tensors: u64, kvs: u64| {
        let mut out = b"GGUF".to_vec();
        out.extend(3u32.to_le_bytes());
        out.extend(tensors.to_le_bytes());
        out.extend(kvs.to_le_bytes());
        out
    };
    assert!(load_error(&header(0, u64::MAX)).contains("metadata key count"));
    assert!(load_error(&header(u64::MAX, 0)).contains("tensor count"));

    let mut huge_key = header(0, 1);
    huge_key.extend(u64::MAX.to_le_bytes());
    huge_key.extend([0u8; 64]);
    assert!(load_error(&huge_key).contains("exceeds"));

    let mut b = Builder::default();
    let mut huge_array = Vec::new();
    huge_array.extend(8u32.to_le_bytes());
    huge_array.extend((u64::MAX / 2).to_le_bytes());
    b.raw("tokens", 9, &huge_array);
    assert!(load_error(&b.build()).contains("impossible"));

    let mut b = Builder::default();
    b.raw("bad", 99, &[0; 16]);
    assert!(load_error(&b.build()).contains("unknown value type 99"));

    let mut b = Builder::default();
    b.tensor("t", &[1; 40], 0, 0);
    assert!(load_error(&b.build()).contains("dimensions"));

    let mut deep = Vec::new();
    for _ in 0..10 {
        deep.extend(9u32.to_le_bytes());
        deep.extend(1u64.to_le_bytes());
    }
    let mut b = Builder::default();
    b.raw("deep", 9, &deep);
    assert!(load_error(&b.build()).contains("nested"));
}

#[test]
fn missing_file_is_a_load_error_naming_the_path() {
    let err = GgufMetadata::from_path("/definitely/not/here.gguf").unwrap_err();
    assert!(
        matches!(&err, CoreError::ModelLoad { message } if message.contains("/definitely/not/here.gguf"))
    );
}

fn tiny_tokenizer_file(pre: &str) -> Vec<u8> {
    // Byte-level spelling: 'Ġ' is a space.
    let tokens = ["<|end|>", "h", "i", "Ġ", "hi", "Ġhi", "1", "2", "12", "Ġ1"];
    let mut b = Builder::default();
    b.string("tokenizer.ggml.model", "gpt2")
        .string("tokenizer.ggml.pre", pre)
        .strings("tokenizer.ggml.tokens", &tokens)
        .i32s("tokenizer.ggml.token_type", &[3, 1, 1, 1, 1, 1, 1, 1, 1, 1])
        .strings("tokenizer.ggml.merges", &["h i", "Ġ hi", "1 2", "Ġ 1"])
        .u32("tokenizer.ggml.eos_token_id", 0)
        .bool("tokenizer.ggml.add_bos_token", false);
    b.build()
}

#[test]
fn tiny_vocabulary_tokenizes_with_its_pre_tokenizer() {
    let meta = GgufMetadata::from_bytes(&tiny_tokenizer_file("gpt-2")).unwrap();
    let gpt2 = Tokenizer::from_gguf(&meta).unwrap();
    assert_eq!(gpt2.encode("hi hi<|end|>", false, true), [4, 5, 0]);
    // One word " 12": the lower-ranked merge "1 2" wins over "Ġ 1".
    assert_eq!(gpt2.encode("hi 12", false, true), [4, 3, 8]);
    assert_eq!(gpt2.piece(5), Some(&b" hi"[..]));
    assert_eq!(gpt2.end_of_generation_ids(), [0]);

    let meta = GgufMetadata::from_bytes(&tiny_tokenizer_file("smollm")).unwrap();
    let smollm = Tokenizer::from_gguf(&meta).unwrap();
    assert_eq!(
        smollm.encode("hi 12", false, true),
        [4, 3, 6, 7],
        "smollm isolates digits"
    );
}

#[test]
fn unsupported_tokenizers_are_tokenizer_errors() {
    let meta = GgufMetadata::from_bytes(&tiny_tokenizer_file("chatglm-bpe")).unwrap();
    let err = Tokenizer::from_gguf(&meta).unwrap_err();
    assert!(
        matches!(&err, CoreError::Tokenizer { message } if message.contains("chatglm-bpe")),
        "{err:?}"
    );
    let meta = GgufMetadata::from_bytes(&Builder::default().build()).unwrap();
    let err = Tokenizer::from_gguf(&meta).unwrap_err();
    assert!(
        matches!(&err, CoreError::Tokenizer { message } if message.contains("tokenizer.ggml.model"))
    );
}
