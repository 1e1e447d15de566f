//! `mullama._core.GgufFile`, `GgufTensor` and `gguf_metadata`: the core's GGUF reader as
//! Python objects. A model load opens the file once; the loader reads the tensor
//! directory from the `GgufFile` and the tokenizer is built from the same object.

use std::path::PathBuf;
use std::sync::Arc;

use mullama_core::gguf::{GgufArray, GgufMetadata, GgufValue, TensorInfo};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};
use pyo3::IntoPyObjectExt;

use crate::errors::to_py_err;

/// `metadata` and `gguf_metadata` summarise arrays longer than this (vocabularies,
/// merges): converting 50k strings to Python objects costs more than the whole parse.
const MAX_LISTED_ARRAY: usize = 1000;

/// The header of a GGUF file: key/value metadata and the tensor directory.
#[pyclass(name = "GgufFile", module = "mullama._core", frozen)]
pub struct PyGgufFile {
    /// Shared with the tokenizer thread that `Tokenizer.from_gguf` builds on.
    pub(crate) meta: Arc<GgufMetadata>,
}

/// One tensor directory entry: where its data lies in the file and how it is encoded.
#[pyclass(name = "GgufTensor", module = "mullama._core", frozen)]
pub struct PyGgufTensor {
    #[pyo3(get)]
    name: String,
    /// The ggml type name, e.g. "Q4_1" or "F32".
    #[pyo3(get, name = "type")]
    ggml_type: &'static str,
    shape: Vec<u64>,
    /// Absolute offset of the data in the file.
    #[pyo3(get)]
    offset: u64,
    #[pyo3(get)]
    nbytes: u64,
}

impl PyGgufTensor {
    fn new(info: &TensorInfo) -> Self {
        Self {
            name: info.name.clone(),
            ggml_type: info.ggml_type.name(),
            shape: info.row_major_shape(),
            offset: info.file_offset,
            nbytes: info.nbytes,
        }
    }
}

#[pymethods]
impl PyGgufTensor {
    /// The dimensions outermost first (numpy's order; GGUF's ne[] reversed).
    #[getter]
    fn shape<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, &self.shape)
    }

    fn __repr__(&self) -> String {
        let dims: Vec<String> = self.shape.iter().map(u64::to_string).collect();
        let shape = match dims.as_slice() {
            [one] => format!("({one},)"),
            _ => format!("({})", dims.join(", ")),
        };
        format!(
            "GgufTensor(name={:?}, type={:?}, shape={shape}, offset={}, nbytes={})",
            self.name, self.ggml_type, self.offset, self.nbytes
        )
    }
}

#[pymethods]
impl PyGgufFile {
    /// Reads and checks the header of the GGUF file at `path` (not its tensor data).
    /// Raises ModelLoadError naming the file and the problem.
    #[staticmethod]
    fn open(py: Python<'_>, path: PathBuf) -> PyResult<Self> {
        let meta = py
            .detach(|| GgufMetadata::from_path(&path))
            .map_err(to_py_err)?;
        Ok(Self {
            meta: Arc::new(meta),
        })
    }

    #[getter]
    fn path(&self) -> PathBuf {
        // Always set: a GgufFile is only made by `open`, which reads a file.
        self.meta.path.clone().unwrap_or_default()
    }

    #[getter]
    fn version(&self) -> u32 {
        self.meta.version
    }

    #[getter]
    fn alignment(&self) -> u64 {
        self.meta.alignment
    }

    /// Absolute offset where tensor data starts.
    #[getter]
    fn data_offset(&self) -> u64 {
        self.meta.data_offset
    }

    #[getter]
    fn file_size(&self) -> u64 {
        self.meta.file_size
    }

    /// `general.architecture`, e.g. "llama".
    #[getter]
    fn architecture(&self) -> Option<&str> {
        self.meta.architecture()
    }

    /// The key/value metadata as a new dict; arrays over 1000 elements are summarised as
    /// {"type": "array", "element_type": ..., "length": N} (`get` returns them whole).
    #[getter]
    fn metadata<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        metadata_dict(py, &self.meta, false)
    }

    /// The whole value of metadata `key` (arrays as lists), or `default`.
    #[pyo3(signature = (key, default = None))]
    fn get<'py>(
        &self,
        py: Python<'py>,
        key: &str,
        default: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        match self.meta.get(key) {
            Some(value) => value_to_py(py, value, true),
            None => Ok(default.unwrap_or_else(|| py.None().into_bound(py))),
        }
    }

    /// The tensor directory in file order.
    #[getter]
    fn tensors(&self) -> Vec<PyGgufTensor> {
        self.meta.tensors.iter().map(PyGgufTensor::new).collect()
    }

    /// The tensor named `name`, or None.
    fn tensor(&self, name: &str) -> Option<PyGgufTensor> {
        self.meta.tensor(name).map(PyGgufTensor::new)
    }

    fn __repr__(&self) -> String {
        let quoted = |s: Option<String>| s.map_or("None".to_owned(), |s| format!("{s:?}"));
        format!(
            "GgufFile(path={:?}, version={}, architecture={}, keys={}, tensors={})",
            self.path().display().to_string(),
            self.meta.version,
            quoted(self.meta.architecture().map(str::to_owned)),
            self.meta.kv.len(),
            self.meta.tensors.len()
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
    metadata_dict(py, &meta, full_arrays)
}

fn metadata_dict<'py>(
    py: Python<'py>,
    meta: &GgufMetadata,
    full_arrays: bool,
) -> PyResult<Bound<'py, PyDict>> {
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
        summary.set_item("element_type", array.element_type().name())?;
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

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyGgufFile>()?;
    m.add_class::<PyGgufTensor>()?;
    m.add_function(wrap_pyfunction!(gguf_metadata, m)?)?;
    Ok(())
}
