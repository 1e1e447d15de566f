//! Vocabularies a stream can detokenize with: an explicit `PieceTable` (tests, synthetic
//! producers) or the tokenizer.

use std::sync::Arc;

use mullama_core::{PieceTable, TokenPieces};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes};

/// Token id i -> pieces[i].
#[pyclass(name = "PieceTable", module = "mullama._core", frozen)]
pub struct PyPieceTable {
    pub pieces: Arc<PieceTable>,
}

impl PyPieceTable {
    pub fn from_pieces(pieces: &Bound<'_, PyAny>) -> PyResult<Arc<PieceTable>> {
        let not_a_list = |_| {
            PyTypeError::new_err(format!(
                "pieces must be a list of bytes, not {}",
                type_name(pieces)
            ))
        };
        if pieces.is_instance_of::<PyBytes>() || pieces.is_instance_of::<PyByteArray>() {
            return Err(not_a_list(()));
        }
        let mut out = Vec::new();
        for (i, item) in pieces.try_iter().map_err(|_| not_a_list(()))?.enumerate() {
            let item = item?;
            let bytes = if let Ok(b) = item.cast::<PyBytes>() {
                b.as_bytes().to_vec()
            } else if let Ok(b) = item.cast::<PyByteArray>() {
                b.to_vec()
            } else {
                return Err(PyTypeError::new_err(format!(
                    "pieces[{i}] must be bytes, not {}",
                    type_name(&item)
                )));
            };
            out.push(bytes);
        }
        if u32::try_from(out.len()).is_err() {
            return Err(PyTypeError::new_err("too many pieces for 32-bit token ids"));
        }
        Ok(Arc::new(PieceTable::new(out)))
    }
}

#[pymethods]
impl PyPieceTable {
    #[new]
    fn new(pieces: &Bound<'_, PyAny>) -> PyResult<Self> {
        Ok(Self {
            pieces: Self::from_pieces(pieces)?,
        })
    }

    fn __len__(&self) -> usize {
        self.pieces.vocab_size()
    }

    /// The bytes of token `id`, or None outside the table.
    fn piece<'py>(&self, py: Python<'py>, id: u32) -> Option<Bound<'py, PyBytes>> {
        self.pieces.piece(id).map(|b| PyBytes::new(py, b))
    }

    fn __repr__(&self) -> String {
        format!("PieceTable(<{} pieces>)", self.pieces.vocab_size())
    }
}

/// The pieces behind `vocab`: a `PieceTable`, or the tokenizer.
pub fn vocab_pieces(vocab: &Bound<'_, PyAny>) -> PyResult<Arc<dyn TokenPieces>> {
    if let Ok(table) = vocab.cast::<PyPieceTable>() {
        return Ok(table.get().pieces.clone());
    }
    if let Ok(tokenizer) = vocab.cast::<crate::tokenizer::PyTokenizer>() {
        return Ok(tokenizer.borrow().pieces());
    }
    Err(PyTypeError::new_err(format!(
        "vocab must be a PieceTable or a Tokenizer, not {}",
        type_name(vocab)
    )))
}

pub fn type_name(v: &Bound<'_, PyAny>) -> String {
    v.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".to_owned())
}
