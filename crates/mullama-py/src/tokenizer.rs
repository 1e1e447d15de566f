//! `mullama._core.Tokenizer`: a thin wrapper over the core tokenizer. Loading and long
//! encodes run with the GIL released.

use std::path::PathBuf;
use std::sync::Arc;

use mullama_core::tokenizer::{PreTokenizer, Tokenizer};
use mullama_core::{CoreError, TokenPieces};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::errors::to_py_err;
use crate::gguf::PyGgufFile;

/// Texts shorter than this are encoded without releasing the GIL (releasing costs more).
const DETACH_ENCODE_BYTES: usize = 4096;

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
    /// Builds the tokenizer stored in a GGUF model: from a `GgufFile` already opened
    /// (no second parse), or from a path (reads the header only).
    #[staticmethod]
    fn from_gguf(py: Python<'_>, source: &Bound<'_, PyAny>) -> PyResult<Self> {
        let tok = if let Ok(file) = source.cast::<PyGgufFile>() {
            let meta = file.get().meta.clone();
            py.detach(|| Tokenizer::from_gguf(&meta))
        } else {
            let path: PathBuf = source.extract().map_err(|_| {
                PyTypeError::new_err(format!(
                    "Tokenizer.from_gguf() takes a path or a GgufFile, not {}",
                    source.get_type()
                ))
            })?;
            py.detach(|| Tokenizer::from_gguf_path(&path))
        }
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
    m.add_function(wrap_pyfunction!(pretokenize, m)?)?;
    Ok(())
}
