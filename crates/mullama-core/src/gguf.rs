//! The GGUF reader: header, key/value metadata and the tensor directory. It is the
//! project's only one: the tokenizer is built from its result, and the Python loader
//! reads tensor data (with a memory map) at the offsets it reports.
//!
//! Only the header is read (through a buffered reader, front to back); tensor data is
//! never touched, so opening a multi-hundred-MB model costs a few MB of IO. Every length
//! and count in the file is checked against the bytes that remain before anything is
//! allocated, and every tensor's data is checked to lie inside the file, so a corrupt or
//! hostile file yields `CoreError::ModelLoad`, never a huge allocation or a panic.
//!
//! Type names are the GGUF specification's ("uint32", "string", ...) for metadata values
//! and ggml's ("F32", "Q4_1", ...) for tensors; bindings show these and no others.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use crate::error::{CoreError, Result};

const MAGIC: [u8; 4] = *b"GGUF";
/// Nested arrays deeper than this are treated as corruption (real files use depth 1).
const MAX_ARRAY_DEPTH: u32 = 4;
/// GGML_MAX_DIMS: ggml tensors have 1 to 4 dimensions.
const MAX_TENSOR_DIMS: u32 = 4;
const DEFAULT_ALIGNMENT: u64 = 32;
/// The specification requires `general.alignment` to be a multiple of 8.
const ALIGNMENT_MULTIPLE: u64 = 8;

/// Element type of an array value, as coded in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgufType {
    U8,
    I8,
    U16,
    I16,
    U32,
    I32,
    F32,
    Bool,
    String,
    Array,
    U64,
    I64,
    F64,
}

impl GgufType {
    pub fn from_code(code: u32) -> Option<Self> {
        Some(match code {
            0 => Self::U8,
            1 => Self::I8,
            2 => Self::U16,
            3 => Self::I16,
            4 => Self::U32,
            5 => Self::I32,
            6 => Self::F32,
            7 => Self::Bool,
            8 => Self::String,
            9 => Self::Array,
            10 => Self::U64,
            11 => Self::I64,
            12 => Self::F64,
            _ => return None,
        })
    }

    /// The specification's name of the type ("uint8", ..., "string", "array").
    pub fn name(self) -> &'static str {
        match self {
            Self::U8 => "uint8",
            Self::I8 => "int8",
            Self::U16 => "uint16",
            Self::I16 => "int16",
            Self::U32 => "uint32",
            Self::I32 => "int32",
            Self::F32 => "float32",
            Self::Bool => "bool",
            Self::String => "string",
            Self::Array => "array",
            Self::U64 => "uint64",
            Self::I64 => "int64",
            Self::F64 => "float64",
        }
    }

    /// The fewest bytes one element of this type occupies (strings and arrays: their
    /// length prefix), used to bound counts by the bytes left in the file.
    fn min_encoded_size(self) -> u64 {
        match self {
            Self::U8 | Self::I8 | Self::Bool => 1,
            Self::U16 | Self::I16 => 2,
            Self::U32 | Self::I32 | Self::F32 => 4,
            Self::U64 | Self::I64 | Self::F64 | Self::String => 8,
            Self::Array => 12,
        }
    }
}

/// A typed array value. Strings that are not valid UTF-8 are decoded lossily.
#[derive(Debug, Clone, PartialEq)]
pub enum GgufArray {
    U8(Vec<u8>),
    I8(Vec<i8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    U32(Vec<u32>),
    I32(Vec<i32>),
    F32(Vec<f32>),
    Bool(Vec<bool>),
    String(Vec<String>),
    U64(Vec<u64>),
    I64(Vec<i64>),
    F64(Vec<f64>),
    Array(Vec<GgufArray>),
}

impl GgufArray {
    pub fn len(&self) -> usize {
        match self {
            Self::U8(v) => v.len(),
            Self::I8(v) => v.len(),
            Self::U16(v) => v.len(),
            Self::I16(v) => v.len(),
            Self::U32(v) => v.len(),
            Self::I32(v) => v.len(),
            Self::F32(v) => v.len(),
            Self::Bool(v) => v.len(),
            Self::String(v) => v.len(),
            Self::U64(v) => v.len(),
            Self::I64(v) => v.len(),
            Self::F64(v) => v.len(),
            Self::Array(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The type of the elements.
    pub fn element_type(&self) -> GgufType {
        match self {
            Self::U8(_) => GgufType::U8,
            Self::I8(_) => GgufType::I8,
            Self::U16(_) => GgufType::U16,
            Self::I16(_) => GgufType::I16,
            Self::U32(_) => GgufType::U32,
            Self::I32(_) => GgufType::I32,
            Self::F32(_) => GgufType::F32,
            Self::Bool(_) => GgufType::Bool,
            Self::String(_) => GgufType::String,
            Self::U64(_) => GgufType::U64,
            Self::I64(_) => GgufType::I64,
            Self::F64(_) => GgufType::F64,
            Self::Array(_) => GgufType::Array,
        }
    }

    /// The elements as i64 when they are integers of any width (bools count as 0/1).
    pub fn to_i64_vec(&self) -> Option<Vec<i64>> {
        Some(match self {
            Self::U8(v) => v.iter().map(|&x| i64::from(x)).collect(),
            Self::I8(v) => v.iter().map(|&x| i64::from(x)).collect(),
            Self::U16(v) => v.iter().map(|&x| i64::from(x)).collect(),
            Self::I16(v) => v.iter().map(|&x| i64::from(x)).collect(),
            Self::U32(v) => v.iter().map(|&x| i64::from(x)).collect(),
            Self::I32(v) => v.iter().map(|&x| i64::from(x)).collect(),
            Self::U64(v) => v.iter().map(|&x| x as i64).collect(),
            Self::I64(v) => v.clone(),
            Self::Bool(v) => v.iter().map(|&x| i64::from(x)).collect(),
            _ => return None,
        })
    }

    /// The elements as f32 when they are floats (f64 is narrowed).
    pub fn to_f32_vec(&self) -> Option<Vec<f32>> {
        match self {
            Self::F32(v) => Some(v.clone()),
            Self::F64(v) => Some(v.iter().map(|&x| x as f32).collect()),
            _ => None,
        }
    }
}

/// One metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum GgufValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(GgufArray),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl GgufValue {
    /// The type of the value.
    pub fn value_type(&self) -> GgufType {
        match self {
            Self::U8(_) => GgufType::U8,
            Self::I8(_) => GgufType::I8,
            Self::U16(_) => GgufType::U16,
            Self::I16(_) => GgufType::I16,
            Self::U32(_) => GgufType::U32,
            Self::I32(_) => GgufType::I32,
            Self::F32(_) => GgufType::F32,
            Self::Bool(_) => GgufType::Bool,
            Self::String(_) => GgufType::String,
            Self::Array(_) => GgufType::Array,
            Self::U64(_) => GgufType::U64,
            Self::I64(_) => GgufType::I64,
            Self::F64(_) => GgufType::F64,
        }
    }

    /// Any integer value (including bool) widened to i128 so every width fits.
    fn as_integer(&self) -> Option<i128> {
        Some(match *self {
            Self::U8(x) => x.into(),
            Self::I8(x) => x.into(),
            Self::U16(x) => x.into(),
            Self::I16(x) => x.into(),
            Self::U32(x) => x.into(),
            Self::I32(x) => x.into(),
            Self::U64(x) => x.into(),
            Self::I64(x) => x.into(),
            Self::Bool(x) => i128::from(x),
            _ => return None,
        })
    }
}

/// A ggml tensor type: its code in the file, its name and its block layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GgmlType {
    code: u32,
    name: &'static str,
    block_size: u64,
    block_bytes: u64,
}

/// (code, name, elements per block, bytes per block), from ggml's type traits. Codes
/// missing here (4, 5, 31-33, 36-38) were removed from ggml and are rejected.
const GGML_TYPES: &[(u32, &str, u64, u64)] = &[
    (0, "F32", 1, 4),
    (1, "F16", 1, 2),
    (2, "Q4_0", 32, 18),
    (3, "Q4_1", 32, 20),
    (6, "Q5_0", 32, 22),
    (7, "Q5_1", 32, 24),
    (8, "Q8_0", 32, 34),
    (9, "Q8_1", 32, 40),
    (10, "Q2_K", 256, 84),
    (11, "Q3_K", 256, 110),
    (12, "Q4_K", 256, 144),
    (13, "Q5_K", 256, 176),
    (14, "Q6_K", 256, 210),
    (15, "Q8_K", 256, 292),
    (16, "IQ2_XXS", 256, 66),
    (17, "IQ2_XS", 256, 74),
    (18, "IQ3_XXS", 256, 98),
    (19, "IQ1_S", 256, 50),
    (20, "IQ4_NL", 32, 18),
    (21, "IQ3_S", 256, 110),
    (22, "IQ2_S", 256, 82),
    (23, "IQ4_XS", 256, 136),
    (24, "I8", 1, 1),
    (25, "I16", 1, 2),
    (26, "I32", 1, 4),
    (27, "I64", 1, 8),
    (28, "F64", 1, 8),
    (29, "IQ1_M", 256, 56),
    (30, "BF16", 1, 2),
    (34, "TQ1_0", 256, 54),
    (35, "TQ2_0", 256, 66),
    (39, "MXFP4", 32, 17),
    (40, "NVFP4", 64, 36),
    (41, "Q1_0", 128, 18),
];

impl GgmlType {
    pub fn from_code(code: u32) -> Option<Self> {
        GGML_TYPES
            .iter()
            .find(|t| t.0 == code)
            .map(|&(code, name, block_size, block_bytes)| Self {
                code,
                name,
                block_size,
                block_bytes,
            })
    }

    pub fn from_name(name: &str) -> Option<Self> {
        let code = GGML_TYPES.iter().find(|t| t.1 == name)?.0;
        Self::from_code(code)
    }

    /// Every known type, in code order.
    pub fn all() -> impl Iterator<Item = Self> {
        GGML_TYPES.iter().filter_map(|t| Self::from_code(t.0))
    }

    pub fn code(self) -> u32 {
        self.code
    }

    /// ggml's name, e.g. "Q4_1".
    pub fn name(self) -> &'static str {
        self.name
    }

    /// Elements per block (1 for plain types).
    pub fn block_size(self) -> u64 {
        self.block_size
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> u64 {
        self.block_bytes
    }
}

/// One entry of the tensor directory; the data itself is not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    /// GGUF's ne[]: the innermost (contiguous) dimension first.
    pub dims: Vec<u64>,
    pub ggml_type: GgmlType,
    /// Offset of the tensor's data relative to the start of the data section.
    pub offset: u64,
    /// Absolute offset of the tensor's data in the file.
    pub file_offset: u64,
    /// Size of the tensor's data in bytes.
    pub nbytes: u64,
}

impl TensorInfo {
    /// The dimensions outermost first (ne[] reversed), the order numpy and MLX use.
    pub fn row_major_shape(&self) -> Vec<u64> {
        self.dims.iter().rev().copied().collect()
    }
}

/// Everything in a GGUF file except tensor data.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufMetadata {
    pub version: u32,
    /// Key/value pairs in file order.
    pub kv: Vec<(String, GgufValue)>,
    /// The tensor directory in file order.
    pub tensors: Vec<TensorInfo>,
    /// `general.alignment`, or 32 when the file does not set it.
    pub alignment: u64,
    /// Where tensor data starts (after the metadata, aligned to `alignment`).
    pub data_offset: u64,
    /// The length of the file (or image) the header was read from.
    pub file_size: u64,
    /// The file it was read from (None for an in-memory image); errors name it.
    pub path: Option<PathBuf>,
    index: BTreeMap<String, usize>,
    tensor_index: BTreeMap<String, usize>,
}

impl GgufMetadata {
    /// Reads the metadata of the GGUF file at `path`.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = File::open(path)
            .map_err(|e| load_error(format!("cannot open {}: {e}", path.display())))?;
        let len = file
            .metadata()
            .map_err(|e| load_error(format!("cannot stat {}: {e}", path.display())))?
            .len();
        let mut meta = Self::from_reader(BufReader::with_capacity(1 << 16, file), len)
            .map_err(|e| load_error(format!("{}: {}", path.display(), message_of(e))))?;
        meta.path = Some(path.to_path_buf());
        Ok(meta)
    }

    /// Parses metadata from an in-memory GGUF image (the whole file or its prefix).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        Self::from_reader(bytes, bytes.len() as u64)
    }

    /// Parses metadata from `reader`, which yields a file of `len` bytes.
    pub fn from_reader(reader: impl Read, len: u64) -> Result<Self> {
        let mut r = Reader {
            inner: reader,
            pos: 0,
            len,
        };
        if len < MAGIC.len() as u64 {
            return Err(load_error(format!(
                "not a GGUF file: only {len} bytes, too short for the magic \"GGUF\""
            )));
        }
        let magic: [u8; 4] = r.array("magic")?;
        if magic != MAGIC {
            return Err(load_error(format!(
                "not a GGUF file (magic {:02x} {:02x} {:02x} {:02x}, expected \"GGUF\")",
                magic[0], magic[1], magic[2], magic[3]
            )));
        }
        let version = r.u32("version")?;
        if version != 2 && version != 3 {
            let hint = if version.swap_bytes() == 2 || version.swap_bytes() == 3 {
                " (a big-endian GGUF; only little-endian files are supported)"
            } else {
                ""
            };
            return Err(load_error(format!(
                "unsupported version {version} of the GGUF format{hint}; versions 2 and 3 are supported"
            )));
        }
        let tensor_count = r.u64("tensor count")?;
        let kv_count = r.u64("metadata key count")?;
        // A key/value pair takes at least 8 (key length) + 4 (type) + 1 bytes.
        r.check_count(kv_count, 13, "metadata key count")?;

        let mut kv = Vec::with_capacity(kv_count as usize);
        let mut index = BTreeMap::new();
        for _ in 0..kv_count {
            let key = r.string("metadata key")?;
            let code = r.u32("value type")?;
            let value = r.value(code, &key, 0)?;
            index.insert(key.clone(), kv.len());
            kv.push((key, value));
        }

        let alignment = match index.get("general.alignment").map(|&i| &kv[i].1) {
            None => DEFAULT_ALIGNMENT,
            Some(value) => match value.as_integer() {
                Some(a) if a > 0 && a % i128::from(ALIGNMENT_MULTIPLE) == 0 => a as u64,
                _ => {
                    return Err(load_error(format!(
                        "general.alignment {value:?} is not a positive multiple of {ALIGNMENT_MULTIPLE} (corrupt file?)"
                    )))
                }
            },
        };

        // name length (8) + n_dims (4) + type (4) + offset (8)
        r.check_count(tensor_count, 24, "tensor count")?;
        let mut entries = Vec::with_capacity(tensor_count as usize);
        for _ in 0..tensor_count {
            let name = r.string("tensor name")?;
            let n_dims = r.u32("tensor dimension count")?;
            if n_dims == 0 || n_dims > MAX_TENSOR_DIMS {
                return Err(load_error(format!(
                    "tensor {name} has {n_dims} dimensions; ggml tensors have 1 to {MAX_TENSOR_DIMS} (corrupt file?)"
                )));
            }
            let dims = (0..n_dims)
                .map(|_| r.u64("tensor dimension"))
                .collect::<Result<Vec<_>>>()?;
            let code = r.u32("tensor type")?;
            let ggml_type = GgmlType::from_code(code).ok_or_else(|| {
                load_error(format!("tensor {name} has unknown tensor type id {code}"))
            })?;
            let offset = r.u64("tensor offset")?;
            entries.push((name, dims, ggml_type, offset));
        }

        let data_offset = r.pos.div_ceil(alignment).saturating_mul(alignment);
        let mut tensors = Vec::with_capacity(entries.len());
        let mut tensor_index = BTreeMap::new();
        for (name, dims, ggml_type, offset) in entries {
            let nbytes = tensor_nbytes(&name, &dims, ggml_type)?;
            if !offset.is_multiple_of(alignment) {
                return Err(load_error(format!(
                    "corrupt GGUF file: tensor {name} data offset {offset} is not a multiple of the alignment {alignment}"
                )));
            }
            let file_offset = data_offset.checked_add(offset);
            let end = file_offset.and_then(|start| start.checked_add(nbytes));
            if end.is_none_or(|end| end > len) {
                return Err(load_error(format!(
                    "truncated or corrupt GGUF file: tensor {name} ({nbytes} bytes at offset {}) lies outside the file of {len} bytes",
                    data_offset.saturating_add(offset)
                )));
            }
            if tensor_index.insert(name.clone(), tensors.len()).is_some() {
                return Err(load_error(format!(
                    "corrupt GGUF file: tensor {name} appears twice"
                )));
            }
            tensors.push(TensorInfo {
                name,
                dims,
                ggml_type,
                offset,
                file_offset: data_offset + offset,
                nbytes,
            });
        }

        Ok(Self {
            version,
            kv,
            tensors,
            alignment,
            data_offset,
            file_size: len,
            path: None,
            index,
            tensor_index,
        })
    }

    /// The tensor directory entry named `name`.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.index.get(key).map(|&i| &self.kv[i].1)
    }

    pub fn contains(&self, key: &str) -> bool {
        self.index.contains_key(key)
    }

    pub fn get_str(&self, key: &str) -> Option<&str> {
        match self.get(key)? {
            GgufValue::String(s) => Some(s),
            _ => None,
        }
    }

    /// An integer value of any width that fits in u64.
    pub fn get_u64(&self, key: &str) -> Option<u64> {
        self.get(key)?
            .as_integer()
            .and_then(|v| u64::try_from(v).ok())
    }

    /// An integer value of any width that fits in u32 (token ids, counts).
    pub fn get_u32(&self, key: &str) -> Option<u32> {
        self.get(key)?
            .as_integer()
            .and_then(|v| u32::try_from(v).ok())
    }

    pub fn get_i64(&self, key: &str) -> Option<i64> {
        self.get(key)?
            .as_integer()
            .and_then(|v| i64::try_from(v).ok())
    }

    pub fn get_f64(&self, key: &str) -> Option<f64> {
        match *self.get(key)? {
            GgufValue::F32(x) => Some(f64::from(x)),
            GgufValue::F64(x) => Some(x),
            _ => None,
        }
    }

    pub fn get_bool(&self, key: &str) -> Option<bool> {
        match *self.get(key)? {
            GgufValue::Bool(b) => Some(b),
            _ => None,
        }
    }

    pub fn get_array(&self, key: &str) -> Option<&GgufArray> {
        match self.get(key)? {
            GgufValue::Array(a) => Some(a),
            _ => None,
        }
    }

    pub fn get_string_array(&self, key: &str) -> Option<&[String]> {
        match self.get_array(key)? {
            GgufArray::String(v) => Some(v),
            _ => None,
        }
    }

    /// `general.architecture`, e.g. "llama" or "gemma3".
    pub fn architecture(&self) -> Option<&str> {
        self.get_str("general.architecture")
    }
}

/// Bytes of a tensor's data; its rows must hold whole blocks.
fn tensor_nbytes(name: &str, dims: &[u64], ty: GgmlType) -> Result<u64> {
    let row = dims[0];
    if !row.is_multiple_of(ty.block_size()) {
        return Err(load_error(format!(
            "corrupt GGUF file: tensor {name} row of {row} elements is not a multiple of the {} block size {}",
            ty.name(),
            ty.block_size()
        )));
    }
    dims.iter()
        .try_fold(1u64, |n, &d| n.checked_mul(d))
        .and_then(|n| (n / ty.block_size()).checked_mul(ty.block_bytes()))
        .ok_or_else(|| {
            load_error(format!(
                "corrupt GGUF file: tensor {name} dimensions {dims:?} overflow"
            ))
        })
}

fn load_error(message: String) -> CoreError {
    CoreError::ModelLoad { message }
}

fn message_of(err: CoreError) -> String {
    match err {
        CoreError::ModelLoad { message } => message,
        other => other.to_string(),
    }
}

/// A reader that knows its position and the file length, so every read can be checked
/// against what remains before allocating.
struct Reader<R> {
    inner: R,
    pos: u64,
    len: u64,
}

impl<R: Read> Reader<R> {
    fn remaining(&self) -> u64 {
        self.len.saturating_sub(self.pos)
    }

    fn truncated(&self, what: &str, need: u64) -> CoreError {
        load_error(format!(
            "truncated GGUF file: {what} needs {need} bytes at offset {} but the file has {} bytes",
            self.pos, self.len
        ))
    }

    fn fill(&mut self, buf: &mut [u8], what: &str) -> Result<()> {
        let need = buf.len() as u64;
        if need > self.remaining() {
            return Err(self.truncated(what, need));
        }
        self.inner.read_exact(buf).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                self.truncated(what, need)
            } else {
                load_error(format!("read error at offset {} ({what}): {e}", self.pos))
            }
        })?;
        self.pos += need;
        Ok(())
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let mut buf = [0u8; N];
        self.fill(&mut buf, what)?;
        Ok(buf)
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        self.array(what).map(u64::from_le_bytes)
    }

    /// Rejects a count whose elements cannot possibly fit in the rest of the file.
    fn check_count(&self, count: u64, min_element_size: u64, what: &str) -> Result<()> {
        if count.saturating_mul(min_element_size) > self.remaining() {
            return Err(load_error(format!(
                "{what} {count} at offset {} is impossible: only {} bytes remain (truncated or corrupt file)",
                self.pos,
                self.remaining()
            )));
        }
        Ok(())
    }

    fn string(&mut self, what: &str) -> Result<String> {
        let len = self.u64(what)?;
        if len > self.remaining() {
            return Err(load_error(format!(
                "{what} length {len} at offset {} exceeds the {} bytes left in the file (truncated or corrupt file)",
                self.pos,
                self.remaining()
            )));
        }
        let mut bytes = vec![0u8; len as usize];
        self.fill(&mut bytes, what)?;
        Ok(match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        })
    }

    fn value(&mut self, code: u32, key: &str, depth: u32) -> Result<GgufValue> {
        let ty = GgufType::from_code(code)
            .ok_or_else(|| load_error(format!("key {key:?} has unknown value type {code}")))?;
        Ok(match ty {
            GgufType::U8 => GgufValue::U8(self.array::<1>(key)?[0]),
            GgufType::I8 => GgufValue::I8(self.array::<1>(key)?[0] as i8),
            GgufType::U16 => GgufValue::U16(u16::from_le_bytes(self.array(key)?)),
            GgufType::I16 => GgufValue::I16(i16::from_le_bytes(self.array(key)?)),
            GgufType::U32 => GgufValue::U32(self.u32(key)?),
            GgufType::I32 => GgufValue::I32(i32::from_le_bytes(self.array(key)?)),
            GgufType::F32 => GgufValue::F32(f32::from_le_bytes(self.array(key)?)),
            GgufType::Bool => GgufValue::Bool(self.array::<1>(key)?[0] != 0),
            GgufType::String => GgufValue::String(self.string(key)?),
            GgufType::U64 => GgufValue::U64(self.u64(key)?),
            GgufType::I64 => GgufValue::I64(i64::from_le_bytes(self.array(key)?)),
            GgufType::F64 => GgufValue::F64(f64::from_le_bytes(self.array(key)?)),
            GgufType::Array => GgufValue::Array(self.array_value(key, depth)?),
        })
    }

    fn array_value(&mut self, key: &str, depth: u32) -> Result<GgufArray> {
        if depth >= MAX_ARRAY_DEPTH {
            return Err(load_error(format!(
                "key {key:?}: arrays nested deeper than {MAX_ARRAY_DEPTH}"
            )));
        }
        let code = self.u32(key)?;
        let ty = GgufType::from_code(code)
            .ok_or_else(|| load_error(format!("key {key:?} is an array of unknown type {code}")))?;
        let count = self.u64(key)?;
        self.check_count(
            count,
            ty.min_encoded_size(),
            &format!("array length of {key:?}"),
        )?;
        let n = count as usize;
        macro_rules! fixed {
            ($variant:ident, $t:ty) => {{
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(<$t>::from_le_bytes(self.array(key)?));
                }
                GgufArray::$variant(v)
            }};
        }
        Ok(match ty {
            GgufType::U8 => {
                let mut v = vec![0u8; n];
                self.fill(&mut v, key)?;
                GgufArray::U8(v)
            }
            GgufType::I8 => fixed!(I8, i8),
            GgufType::U16 => fixed!(U16, u16),
            GgufType::I16 => fixed!(I16, i16),
            GgufType::U32 => fixed!(U32, u32),
            GgufType::I32 => fixed!(I32, i32),
            GgufType::F32 => fixed!(F32, f32),
            GgufType::U64 => fixed!(U64, u64),
            GgufType::I64 => fixed!(I64, i64),
            GgufType::F64 => fixed!(F64, f64),
            GgufType::Bool => {
                let mut raw = vec![0u8; n];
                self.fill(&mut raw, key)?;
                GgufArray::Bool(raw.into_iter().map(|b| b != 0).collect())
            }
            GgufType::String => {
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(self.string(key)?);
                }
                GgufArray::String(v)
            }
            GgufType::Array => {
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(self.array_value(key, depth + 1)?);
                }
                GgufArray::Array(v)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ggml_type_codes_and_names_are_unique_and_round_trip() {
        let types: Vec<_> = GgmlType::all().collect();
        assert_eq!(types.len(), GGML_TYPES.len());
        for (i, a) in types.iter().enumerate() {
            assert_eq!(GgmlType::from_name(a.name()), Some(*a));
            assert_eq!(GgmlType::from_code(a.code()), Some(*a));
            assert!(a.block_size() > 0 && a.block_bytes() > 0, "{}", a.name());
            for b in &types[i + 1..] {
                assert!(a.code() != b.code() && a.name() != b.name(), "{a:?} {b:?}");
            }
        }
        for removed in [4, 5, 31, 32, 33, 36, 37, 38] {
            assert_eq!(GgmlType::from_code(removed), None, "code {removed}");
        }
    }

    #[test]
    fn value_type_names_round_trip_through_codes() {
        let names: Vec<_> = (0..13)
            .map(|c| GgufType::from_code(c).unwrap().name())
            .collect();
        assert_eq!(
            names,
            [
                "uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "bool", "string",
                "array", "uint64", "int64", "float64"
            ]
        );
        assert_eq!(GgufType::from_code(13), None);
    }
}
