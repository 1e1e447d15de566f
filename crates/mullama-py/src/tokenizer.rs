//! `mullama._core.Tokenizer` and `gguf_metadata`: thin wrappers over the core tokenizer
//! and GGUF reader. Loading and long encodes run with the GIL released.

use std::path::PathBuf;
use std::sync::Arc;

use mullama_core::gguf::{GgufArray, GgufMetadata, GgufValue};
use mullama_core::tokenizer::{PreTokenizer, Tokenizer};
use mullama_core::{CoreError, TokenPieces};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};
use pyo3::IntoPyObjectExt;

use crate::errors::to_py_err;

/// Texts shorter than this are encoded without releasing the GIL (releasing costs more).
const DETACH_ENCODE_BYTES: usize = 4096;
/// `gguf_metadata` summarises arrays longer than this unless asked for everything.
const MAX_LISTED_ARRAY: usize = 1000;

/// A llama.cpp-exact tokenizer loaded from a GGUF model or a Hugging Face tokenizer.json.
#[pyclass(name = "Tokenizer", module = "mullama._core", frozen)]
pub struct PyTokenizer {
    pub(crate) inner: Arc<Tokenizer>,
}

impl PyTokenizer {
    /// The token pieces a stream detokenizes with (control tokens render as nothing).
    pub fn pieces(&self) -> Arc<dyn TokenPieces> {
        self.inner.clone()
    }
}

fn out_of_vocab(id: u32, size: usize) -> PyErr {
    to_py_err(CoreError::Tokenizer {
        message: format!("token id {id} is outside the vocabulary of {size}"),
    })
}

#[pymethods]
impl PyTokenizer {
    /// Loads the tokenizer stored in a GGUF model file (reads metadata only).
    #[staticmethod]
    fn from_gguf(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let tok = py
            .detach(|| Tokenizer::from_gguf_path(&path))
            .map_err(to_py_err)?;
        Ok(Self {
            inner: Arc::new(tok),
        })
    }

    /// Loads a Hugging Face tokenizer.json (or a folder holding one and, optionally,
    /// tokenizer_config.json and generation_config.json); it encodes and decodes as the
    /// `tokenizers` package does for that file.
    #[staticmethod]
    fn from_json(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let tok = py
            .detach(|| Tokenizer::from_hf_json(&path))
            .map_err(to_py_err)?;
        Ok(Self {
            inner: Arc::new(tok),
        })
    }

    /// Token ids of `text`. `special`: parse control-token texts (e.g. "<|im_end|>") as
    /// single tokens (llama.cpp's parse_special). `add_bos`: prepend BOS when the model
    /// asks for it (`add_bos` property).
    #[pyo3(signature = (text, special = true, add_bos = false))]
    fn encode(
        &self,
        py: Python<'_>,
        text: &str,
        special: bool,
        add_bos: bool,
    ) -> PyResult<Vec<u32>> {
        if text.len() < DETACH_ENCODE_BYTES {
            self.inner.try_encode(text, add_bos, special)
        } else {
            py.detach(|| self.inner.try_encode(text, add_bos, special))
        }
        .map_err(to_py_err)
    }

    /// The text of `ids` (invalid UTF-8 becomes U+FFFD). Control tokens appear as their
    /// text unless `skip_special`.
    #[pyo3(signature = (ids, skip_special = false))]
    fn decode(&self, ids: Vec<u32>, skip_special: bool) -> PyResult<String> {
        self.inner.decode(&ids, !skip_special).map_err(to_py_err)
    }

    /// The raw bytes of token `id`, as llama.cpp's token_to_piece: control tokens are
    /// empty unless `special`.
    #[pyo3(signature = (id, special = false))]
    fn token_bytes<'py>(
        &self,
        py: Python<'py>,
        id: u32,
        special: bool,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let piece = if special {
            self.inner.piece_with_special(id)
        } else {
            self.inner.piece(id)
        };
        piece
            .map(|p| PyBytes::new(py, p))
            .ok_or_else(|| out_of_vocab(id, self.inner.vocab_size()))
    }

    /// Whether generating `id` should end the turn (EOS, EOT, EOM, ...).
    fn is_end_of_generation(&self, id: u32) -> bool {
        self.inner.is_end_of_generation(id)
    }

    /// Whether `id` is a control token (token type 3), e.g. "<|im_start|>".
    fn is_control(&self, id: u32) -> bool {
        self.inner.is_control(id)
    }

    #[getter]
    fn vocab_size(&self) -> usize {
        self.inner.vocab_size()
    }

    #[getter]
    fn bos_token_id(&self) -> Option<u32> {
        self.inner.bos_token_id()
    }

    #[getter]
    fn eos_token_id(&self) -> Option<u32> {
        self.inner.eos_token_id()
    }

    #[getter]
    fn eot_token_id(&self) -> Option<u32> {
        self.inner.eot_token_id()
    }

    /// Whether the model wants BOS prepended to prompts.
    #[getter]
    fn add_bos(&self) -> bool {
        self.inner.add_bos()
    }

    #[getter]
    fn chat_template(&self) -> Option<String> {
        self.inner.chat_template().map(str::to_owned)
    }

    /// Sorted ids that end generation.
    #[getter]
    fn end_of_generation_ids(&self) -> Vec<u32> {
        self.inner.end_of_generation_ids().to_vec()
    }

    #[getter]
    fn control_token_ids(&self) -> Vec<u32> {
        self.inner.control_token_ids()
    }

    /// The llama.cpp pre-tokenizer this tokenizer follows (e.g. "smollm").
    #[getter]
    fn pre_tokenizer(&self) -> String {
        self.inner.pre_tokenizer_name().to_owned()
    }

    fn __len__(&self) -> usize {
        self.inner.vocab_size()
    }

    fn __repr__(&self) -> String {
        format!(
            "Tokenizer(vocab_size={}, pre={:?}, bos={:?}, eos={:?}, eot={:?})",
            self.inner.vocab_size(),
            self.inner.pre_tokenizer_name(),
            self.inner.bos_token_id(),
            self.inner.eos_token_id(),
            self.inner.eot_token_id()
        )
    }
}

/// The key/value metadata of a GGUF file as a dict. Arrays longer than 1000 elements are
/// summarised as {"type": "array", "element_type": ..., "length": N} unless
/// `full_arrays` is true.
#[pyfunction]
#[pyo3(signature = (path, full_arrays = false))]
fn gguf_metadata<'py>(
    py: Python<'py>,
    path: PathBuf,
    full_arrays: bool,
) -> PyResult<Bound<'py, PyDict>> {
    let meta = py
        .detach(|| GgufMetadata::from_path(&path))
        .map_err(to_py_err)?;
    let dict = PyDict::new(py);
    for (key, value) in &meta.kv {
        dict.set_item(key, value_to_py(py, value, full_arrays)?)?;
    }
    Ok(dict)
}

fn value_to_py<'py>(
    py: Python<'py>,
    value: &GgufValue,
    full_arrays: bool,
) -> PyResult<Bound<'py, PyAny>> {
    match value {
        GgufValue::U8(x) => x.into_bound_py_any(py),
        GgufValue::I8(x) => x.into_bound_py_any(py),
        GgufValue::U16(x) => x.into_bound_py_any(py),
        GgufValue::I16(x) => x.into_bound_py_any(py),
        GgufValue::U32(x) => x.into_bound_py_any(py),
        GgufValue::I32(x) => x.into_bound_py_any(py),
        GgufValue::U64(x) => x.into_bound_py_any(py),
        GgufValue::I64(x) => x.into_bound_py_any(py),
        GgufValue::F32(x) => x.into_bound_py_any(py),
        GgufValue::F64(x) => x.into_bound_py_any(py),
        GgufValue::Bool(x) => x.into_bound_py_any(py),
        GgufValue::String(s) => s.into_bound_py_any(py),
        GgufValue::Array(a) => array_to_py(py, a, full_arrays),
    }
}

fn array_to_py<'py>(
    py: Python<'py>,
    array: &GgufArray,
    full_arrays: bool,
) -> PyResult<Bound<'py, PyAny>> {
    if !full_arrays && array.len() > MAX_LISTED_ARRAY {
        let summary = PyDict::new(py);
        summary.set_item("type", "array")?;
        summary.set_item("element_type", element_type_name(array))?;
        summary.set_item("length", array.len())?;
        return Ok(summary.into_any());
    }
    Ok(match array {
        GgufArray::U8(v) => PyList::new(py, v)?.into_any(),
        GgufArray::I8(v) => PyList::new(py, v)?.into_any(),
        GgufArray::U16(v) => PyList::new(py, v)?.into_any(),
        GgufArray::I16(v) => PyList::new(py, v)?.into_any(),
        GgufArray::U32(v) => PyList::new(py, v)?.into_any(),
        GgufArray::I32(v) => PyList::new(py, v)?.into_any(),
        GgufArray::U64(v) => PyList::new(py, v)?.into_any(),
        GgufArray::I64(v) => PyList::new(py, v)?.into_any(),
        GgufArray::F32(v) => PyList::new(py, v)?.into_any(),
        GgufArray::F64(v) => PyList::new(py, v)?.into_any(),
        GgufArray::Bool(v) => PyList::new(py, v)?.into_any(),
        GgufArray::String(v) => PyList::new(py, v)?.into_any(),
        GgufArray::Array(v) => {
            let items = v
                .iter()
                .map(|inner| array_to_py(py, inner, full_arrays))
                .collect::<PyResult<Vec<_>>>()?;
            PyList::new(py, items)?.into_any()
        }
    })
}

fn element_type_name(array: &GgufArray) -> &'static str {
    match array {
        GgufArray::U8(_) => "uint8",
        GgufArray::I8(_) => "int8",
        GgufArray::U16(_) => "uint16",
        GgufArray::I16(_) => "int16",
        GgufArray::U32(_) => "uint32",
        GgufArray::I32(_) => "int32",
        GgufArray::U64(_) => "uint64",
        GgufArray::I64(_) => "int64",
        GgufArray::F32(_) => "float32",
        GgufArray::F64(_) => "float64",
        GgufArray::Bool(_) => "bool",
        GgufArray::String(_) => "string",
        GgufArray::Array(_) => "array",
    }
}

/// The words the pre-tokenizer named `kind` (a `tokenizer.ggml.pre` value such as
/// "llama-bpe" or "qwen2") cuts `text` into, before byte-level spelling and merges.
#[pyfunction]
fn pretokenize(kind: &str, text: &str) -> PyResult<Vec<String>> {
    let pre = PreTokenizer::from_gguf_name(kind).ok_or_else(|| {
        to_py_err(CoreError::Tokenizer {
            message: format!("pre-tokenizer {kind:?} is not supported"),
        })
    })?;
    Ok(pre
        .split(text)
        .into_iter()
        .map(|word| text[word].to_owned())
        .collect())
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyTokenizer>()?;
    m.add_function(wrap_pyfunction!(gguf_metadata, m)?)?;
    m.add_function(wrap_pyfunction!(pretokenize, m)?)?;
    Ok(())
}
